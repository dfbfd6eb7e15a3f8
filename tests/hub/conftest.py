"""Fixtures of the SmolLM2 reader tests; the helpers live in hub_fixtures (importable by name,
unlike a conftest module, whose name other test folders share)."""

from hub_fixtures import tiny_gguf  # noqa: F401  (re-exported as a fixture)
