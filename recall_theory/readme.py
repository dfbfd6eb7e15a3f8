"""The README's generated blocks: every number in them comes from a file under ``figures/``.

A block is the text between ``<!-- generated:KEY -->`` and ``<!-- /generated:KEY -->``.
``KEY`` is either ``include PATH`` (the Markdown file ``figures/PATH``, written by the run
that made the numbers: summaries, captions, verdicts) or ``timings`` (a table built from
``figures/timings.json``, which ``recall-theory reproduce`` writes). ``reproduce`` rewrites
every block; ``reproduce --check`` re-renders them from a rerun and reports those that
changed. The timings block is volatile (wall times differ on every run) and not checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from recall_theory.errors import InputError

BLOCK = re.compile(r"(<!-- generated:(?P<key>[^>]+?) -->\n)(?P<body>.*?)(<!-- /generated:(?P=key) -->)",
                   re.DOTALL)
VOLATILE_BLOCKS = ("timings",)


def timings_table(root: Path) -> str:
  path = root / "timings.json"
  if not path.exists():
    return "_No timings recorded yet: run `recall-theory reproduce`._\n"
  steps = json.loads(path.read_text())["steps"]
  lines = ["| run | command | wall time | machine | date |", "|---|---|---|---|---|"]
  for name, entry in steps.items():
    wall = entry["wall_s"]
    shown = f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.1f} min"
    lines.append(f"| {name} | `{entry['command']}` | {shown} | {entry['machine']} | {entry['date']} |")
  return "\n".join(lines) + "\n"


def render_block(key: str, root: Path) -> str:
  if key == "timings":
    return timings_table(root)
  if key.startswith("include "):
    path = root / key[len("include "):].strip()
    if not path.exists():
      raise InputError(f"README block {key!r}: {path} does not exist (run `recall-theory reproduce`)")
    text = path.read_text().strip("\n")
    return text + "\n"
  raise InputError(f"README block {key!r}: unknown generator (use 'include PATH' or 'timings')")


def render_readme(text: str, root: Path, figures_label: str | None = None) -> str:
  """``text`` with every generated block re-rendered from the files under ``root``."""
  def replace(match: re.Match) -> str:
    return match.group(1) + render_block(match.group("key"), Path(root)) + match.group(4)
  return BLOCK.sub(replace, text)


def blocks(text: str) -> dict[str, str]:
  return {m.group("key"): m.group("body") for m in BLOCK.finditer(text)}


def changed_blocks(old: str, new: str) -> list[str]:
  a, b = blocks(old), blocks(new)
  return [key for key in a if a[key] != b.get(key)]
