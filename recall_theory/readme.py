"""The README's generated blocks: every number in them comes from a file under ``figures/``.

A block is the text between ``<!-- generated:KEY -->`` and ``<!-- /generated:KEY -->``.
``KEY`` is one of

* ``include PATH`` -- the text file ``figures/PATH`` written by the run that made the numbers
  (summaries, captions, verdicts);
* ``verdict PATH`` -- A-K against K-A per algorithm from the results CSV ``figures/PATH``:
  paired over seeds, with the per-seed sign count, a Student-t interval and ties below
  the estimate's resolution (:func:`verdict_table`);
* ``caption recall_phase`` / ``caption recall_ceiling`` -- the sweep figures' captions from
  their saved data;
* ``lines PATH :: PREFIX`` -- the lines of ``figures/PATH`` that start with ``PREFIX``;
* ``section PATH :: HEADING`` -- the body of the Markdown section ``HEADING`` of ``figures/PATH``;
* ``bench PATH`` -- the performance table of a ``experiments/bench_all.py`` report;
* ``timings`` -- a table built from ``figures/timings.json`` (written by ``reproduce``). ``reproduce`` rewrites
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
VOLATILE_BLOCKS = ("timings",)  # and every "bench ..." block


def timings_table(root: Path) -> str:
  path = root / "timings.json"
  if not path.exists():
    return "_No timings recorded yet: run `recall-theory reproduce`._\n"
  steps = json.loads(path.read_text())["steps"]
  lines = ["| run | command | wall time | compilation cache | load (start, end) | machine | date |",
           "|---|---|---|---|---|---|---|"]
  for name, entry in steps.items():
    wall = entry["wall_s"]
    shown = f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.1f} min"
    load = (f"{entry['load_start']:.1f}, {entry['load_end']:.1f}"
            if entry.get("load_start") is not None and entry.get("load_end") is not None
            else "not recorded")
    cache = {"empty": "empty (first run)", "shared": "the user's (warm after a first run)"}.get(
        entry.get("compile_cache"), "not recorded")
    lines.append(f"| {name} | `{entry['command']}` | {shown} | {cache} | {load} | "
                 f"{entry['machine']} | {entry['date']} |")
  note = ("\nLoad: the machine's 1-minute load average when the run started and ended (the "
          "machine has the cpus shown; a load above that count means the run shared them). "
          "Compilation cache: JAX's persistent cache of compiled programs "
          "(`RECALL_THEORY_COMPILE_CACHE`); a first run compiles everything, later runs load "
          "most programs from it.\n")
  return "\n".join(lines) + "\n" + note


def _number(value: str) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return float("nan")


def verdict_table(path: Path, first: str = "A-K", second: str = "K-A") -> str:
  """A-K vs K-A in aligned mass per (algorithm, setting), paired over seeds.

  Resolution of a Monte-Carlo estimate: the median half-width of the per-seed intervals
  of both pipelines (an exact mass has width 0 and is compared exactly); a mean difference
  below it, or an interval that contains 0, is a tie.
  """
  import csv
  import math

  import numpy as np

  from recall_theory import stats

  with open(path, newline="") as fh:
    rows = [r for r in csv.DictReader(fh) if r["pipeline"] in (first, second)]
  if not rows:
    raise InputError(f"README block 'verdict': {path} has no {first} or {second} rows")
  groups: dict[tuple[str, str], dict[str, dict[int, dict]]] = {}
  for r in rows:
    key = (r["algorithm"], r.get("setting", ""))
    groups.setdefault(key, {}).setdefault(r["pipeline"], {})[int(float(r["seed"]))] = r
  lines = [f"| algorithm | setting | {first} mass | {second} mass | {first} − {second} [95% CI] | "
           f"seeds higher / lower / tied | sign p | verdict |", "|---|---|---|---|---|---|---|---|"]
  for (algorithm, setting), by_pipe in sorted(groups.items()):
    seeds = sorted(set(by_pipe.get(first, {})) & set(by_pipe.get(second, {})))
    if not seeds:
      continue
    a = [_number(by_pipe[first][s]["aligned_mass"]) for s in seeds]
    b = [_number(by_pipe[second][s]["aligned_mass"]) for s in seeds]
    half = [(_number(r["aligned_mass_high"]) - _number(r["aligned_mass_low"])) / 2
            for pipe in (first, second) for r in (by_pipe[pipe][s] for s in seeds)]
    half = [h for h in half if math.isfinite(h)]
    resolution = float(np.median(half)) if half else 0.0
    cmp = stats.paired_comparison(a, b, resolution=resolution)
    ma, sa, _ = stats.mean_sd(a)
    mb, sb, _ = stats.mean_sd(b)
    word = {"ahead": f"{first} ahead", "behind": f"{second} ahead", "tie": "tie"}[cmp["verdict"]]
    word += f" (resolution {resolution:.2g})"
    if cmp["n_positive"] + cmp["n_negative"] < stats.min_seeds_for_sign_test():
      word += "; too few seeds to call by the sign test"
    lines.append(f"| {algorithm} | {setting} | {ma:.3g} ± {sa:.2g} | {mb:.3g} ± {sb:.2g} | "
                 f"{cmp['mean_diff']:+.3g} [{cmp['ci_low']:+.3g}, {cmp['ci_high']:+.3g}] | "
                 f"{cmp['n_positive']} / {cmp['n_negative']} / {cmp['n_tied']} | {cmp['sign_p']:.2g} | "
                 f"{word} |")
  lines.append("")
  lines.append(f"Mean ± sample sd over seeds (ddof = 1) of the measured aligned mass; the difference "
               f"is paired by seed with a Student-t 95% interval and an exact two-sided sign test "
               f"over the untied seeds (`{path.name}`); a 5% sign test needs at least "
               f"{stats.min_seeds_for_sign_test()} untied seeds, fewer are too few to call by it.")
  return "\n".join(lines) + "\n"


def _caption(name: str, root: Path) -> str:
  import numpy as np

  from recall_theory.plotting import phase

  path = root / f"{name}_data.npz"
  if not path.exists():
    raise InputError(f"README block 'caption {name}': {path} does not exist")
  with np.load(path, allow_pickle=False) as data:
    result = {k: data[k] for k in data.files}
  text = phase.phase_caption(result) if name == "recall_phase" else phase.ceiling_caption(result)
  return text.strip("\n") + "\n"


def render_block(key: str, root: Path) -> str:
  if key == "timings":
    return timings_table(root)
  if key.startswith("verdict "):
    path = root / key[len("verdict "):].strip()
    if not path.exists():
      raise InputError(f"README block {key!r}: {path} does not exist (run `recall-theory reproduce`)")
    return verdict_table(path)
  if key.startswith("lines "):
    rel, _, prefix = key[len("lines "):].partition(" :: ")
    path = root / rel.strip()
    if not path.exists():
      raise InputError(f"README block {key!r}: {path} does not exist (run `recall-theory reproduce`)")
    picked = [line for line in path.read_text().splitlines() if line.startswith(prefix)]
    if not picked:
      raise InputError(f"README block {key!r}: no line of {path} starts with {prefix!r}")
    return "\n".join(picked) + "\n"
  if key.startswith("section "):
    rel, _, heading = key[len("section "):].partition(" :: ")
    path = root / rel.strip()
    if not path.exists():
      raise InputError(f"README block {key!r}: {path} does not exist (run `recall-theory reproduce`)")
    body, inside = [], False
    for line in path.read_text().splitlines():
      if line.startswith("#"):
        if inside:
          break
        inside = line.lstrip("#").strip() == heading.strip()
        continue
      if inside:
        body.append(line)
    if not inside and not body:
      raise InputError(f"README block {key!r}: {path} has no section {heading!r}")
    return "\n".join(body).strip("\n") + "\n"
  if key.startswith("bench "):
    path = root / key[len("bench "):].strip()
    if not path.exists():
      return "_Not measured yet: run `python3 experiments/bench_all.py --out figures/bench_all.json`._\n"
    import importlib.util
    bench_all = Path(__file__).resolve().parent.parent / "experiments" / "bench_all.py"
    spec = importlib.util.spec_from_file_location("bench_all", bench_all)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.markdown(json.loads(path.read_text()))
  if key in ("caption recall_phase", "caption recall_ceiling"):
    return _caption(key.split()[1], root)
  if key.startswith("include "):
    path = root / key[len("include "):].strip()
    if not path.exists():
      raise InputError(f"README block {key!r}: {path} does not exist (run `recall-theory reproduce`)")
    text = path.read_text().strip("\n")
    return text + "\n"
  raise InputError(f"README block {key!r}: unknown generator "
                   f"(use 'include PATH', 'verdict PATH', 'caption recall_phase|recall_ceiling' or 'timings')")


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


def is_volatile(key: str) -> bool:
  """Blocks of wall times and benchmark figures differ on every run: --check skips them."""
  return key in VOLATILE_BLOCKS or key.startswith("bench ")
