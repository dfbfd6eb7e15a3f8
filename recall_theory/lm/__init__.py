"""Transformer track (filled in below as modules land)."""
