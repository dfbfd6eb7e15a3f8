"""Reproduce the committed results: rerun every default run, regenerate the README's numbers.

``recall-theory reproduce`` is the only command that writes into ``figures/``. It runs each
:data:`STEPS` entry as its own process (``recall-theory ...``, or ``python3 -m pytest -q``
for the test suite), so each gets a fresh JAX and its wall time is honest, records the
times in ``figures/timings.json`` (command, wall time, the load average at its start and
end, machine), and rewrites the README blocks between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` from the data (:mod:`recall_theory.readme`).

``--check`` reruns into a temporary copy instead and reports every committed number that
no longer matches: each CSV compared cell by cell (numbers to a relative tolerance, text
exactly; columns of wall times skipped), and each README block re-rendered from the rerun
and compared with the README's text.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from recall_theory import io, progress

TIMINGS = "timings.json"
# Columns that measure time (they differ on every run by nature, so --check skips them).
TIME_COLUMNS = ("wall", "seconds", "time_s")


@dataclasses.dataclass(frozen=True)
class Step:
  name: str
  args: tuple[str, ...]       # recall-theory arguments, without --out
  folder: str                 # output folder relative to the figures root
  about: str
  runner: str = "recall-theory"   # or "pytest": the default test suite, timed, no outputs


STEPS = (
    Step("tests", (), "", "the default test suite (what .ci/run runs); not rerun by --check "
         "unless named in --only", runner="pytest"),
    Step("sweep", ("sweep",), ".", "exact recall sweep and phase maps (theory track)"),
    Step("mog", ("mog",), "mog", "Mixture-of-Gaussians comparison, 8 seeds x 7 betas x 2 students"),
    Step("mog-taus", ("mog", "--taus", "0.02,0.05,0.1,0.2,0.5,1"), "mog/taus",
         "Mixture-of-Gaussians recall sweep over the distillation temperature"),
    Step("lm", ("lm", "--preset", "cpu-tiny", "--quiet"), "lm", "transformer track, cpu-tiny, DPO and RLOO"),
    Step("lm-all", ("lm", "--preset", "cpu-tiny", "--algorithms", "dpo,ipo,simpo,rloo", "--quiet"),
         "lm/all_algorithms", "transformer track, cpu-tiny, all four algorithms"),
    Step("lm-taus", ("lm", "--preset", "cpu-tiny", "--taus", "0.3,0.45,0.6,0.8,1.0", "--quiet"),
         "lm/taus", "transformer track, recall sweep over the distillation temperature"),
    Step("lm-compute", ("lm", "--preset", "cpu-tiny", "--match-compute", "--quiet"), "lm/compute",
         "compute-matched K-A vs A-K, transformer track"),
    Step("mog-phase-trained", ("mog", "--phase-map", "--max-steps", "1600"), "mog/phase_trained",
         "trained phase map: K-A and A-K over 6 taus x 6 betas x 5 seeds, PG and DPO to their plateau "
         "(budget 1600 steps) and the exact tilt, against the law's trap boundary"),
    Step("mog-compute", ("mog", "--match-compute", "--ladder", "1,4,16,64,256"), "mog/compute",
         "compute-matched K-A vs A-K, Mixture-of-Gaussians track"),
    Step("smollm2", ("smollm2", "--preset", "smollm2-cpu-smoke", "--quiet"), "smollm2",
         "SmolLM2-135M as p*, smoke preset (plumbing; needs the smollm2 extra and its weights)"),
    Step("gap-lm", ("gap", "--track", "lm", "--preset", "cpu-tiny", "--seeds", "5", "--quiet"), "gap/lm",
         "where the transformers' shortfall comes from: four levels, 5 seeds, DPO and RLOO"),
    Step("gap-mog", ("gap", "--track", "mog", "--seeds", "5", "--quiet"), "gap/mog",
         "where the Mixture-of-Gaussians shortfall comes from: four levels, 5 seeds, PG and DPO"),
    # writes figures/mog/mog_recall_sweep*, which collapse reads: a step, so it is regenerated
    Step("mog-recall", ("sweep", "--model", "mog"), "mog",
         "Mixture-of-Gaussians sweep of the reference's weight on the target (mog_recall_sweep)"),
    Step("collapse", ("collapse",), ".", "trained models at their plateau against the law"),
)
STEP_NAMES = tuple(s.name for s in STEPS)


def machine() -> str:
  return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"


def step_command(step: Step, root: Path) -> list[str]:
  """The step's command, with paths relative to ``root``'s parent (its working folder).

  Relative paths make a rerun into a scratch copy named like the original (``--check``)
  print and record the same options as the committed run.
  """
  if step.runner == "pytest":
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
  args = list(step.args)
  if step.name == "collapse":
    args += ["--inputs", root.name]
  out = Path(root.name) / step.folder
  return [sys.executable, "-m", "recall_theory", *args, "--out", out.as_posix().rstrip("/.") or root.name]


def shown_command(step: Step, cmd: list[str]) -> str:
  """The command as a user types it (``recall-theory ...`` / ``python3 -m pytest ...``)."""
  if step.runner == "pytest":
    return "python3 -m pytest -q"
  return "recall-theory " + " ".join(cmd[3:])


def load_average() -> float | None:
  """The 1-minute load average (None where the platform has none): other work on the
  machine slows a step, so its time is recorded with the load it ran under."""
  from recall_theory import bench
  loads = bench.load_average()
  return None if loads is None else round(loads[0], 1)


def run_steps(steps: Sequence[Step], root: Path, log=sys.stderr, repo: Path | None = None) -> dict:
  """Run ``steps`` into ``root``; return ``{step: {command, wall_s, exit_code, load}}``.

  ``recall-theory`` steps run from ``root``'s parent; the test suite runs from ``repo``
  (default: the same folder), the checkout whose tests it is.
  """
  times = {}
  repo = (repo or root.resolve().parent).resolve()
  with progress.stage("reproduce", total=len(steps), unit="steps") as bar:
    for step in steps:
      cmd = step_command(step, root)
      shown = shown_command(step, cmd)
      log.write(f"reproduce: {step.name}: {shown}\n")
      log.flush()
      load_start = load_average()
      start = time.perf_counter()
      done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=repo if step.runner == "pytest" else root.resolve().parent)
      wall = time.perf_counter() - start
      times[step.name] = {"command": shown, "wall_s": round(wall, 1), "exit_code": done.returncode,
                          "load_start": load_start, "load_end": load_average()}
      if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-15:])
        raise RuntimeError(f"step {step.name} failed (exit {done.returncode}):\n{tail}")
      bar.update(1, step=step.name)
  return times


def write_timings(root: Path, times: dict) -> None:
  path = root / TIMINGS
  old = {}
  if path.exists():
    old = json.loads(path.read_text()).get("steps", {})
  stamp = time.strftime("%Y-%m-%d", time.gmtime())
  for name, entry in times.items():
    old[name] = {**entry, "machine": machine(), "date": stamp}
  io.write_json(path, {"steps": old})


def _is_time_column(name: str) -> bool:
  return any(tag in name for tag in TIME_COLUMNS)


def compare_csv(committed: Path, rerun: Path, rtol: float, atol: float) -> list[str]:
  """Cell-by-cell differences between two CSVs (numbers to rtol/atol, text exactly)."""
  def load(path):
    with open(path, newline="") as fh:
      return list(csv.reader(fh))
  a, b = load(committed), load(rerun)
  if not a or not b or a[0] != b[0]:
    return [f"{committed}: columns differ from the rerun's"]
  if len(a) != len(b):
    return [f"{committed}: {len(a) - 1} rows committed, {len(b) - 1} in the rerun"]
  header, problems = a[0], []
  for r, (row_a, row_b) in enumerate(zip(a[1:], b[1:]), start=2):
    for name, x, y in zip(header, row_a, row_b):
      if x == y or _is_time_column(name):
        continue
      try:
        fx, fy = float(x), float(y)
      except ValueError:
        problems.append(f"{committed}:{r} {name}: committed {x!r}, rerun {y!r}")
        continue
      if math.isnan(fx) and math.isnan(fy):
        continue
      if not math.isclose(fx, fy, rel_tol=rtol, abs_tol=atol):
        problems.append(f"{committed}:{r} {name}: committed {x}, rerun {y}")
  return problems


def compare_folders(committed_root: Path, rerun_root: Path, steps: Sequence[Step], rtol: float,
                    atol: float) -> list[str]:
  problems = []
  for folder in sorted({s.folder for s in steps if s.runner != "pytest"}):
    for rerun_csv in sorted((rerun_root / folder).glob("*.csv")):
      committed = committed_root / folder / rerun_csv.name
      if not committed.exists():
        problems.append(f"{committed}: not committed (the rerun writes it)")
        continue
      problems += compare_csv(committed, rerun_csv, rtol, atol)
  return problems


def reproduce(figures: Path, readme: Path, steps: Sequence[Step], *, check: bool, rtol: float,
              atol: float) -> list[str]:
  """Rerun ``steps``; write into ``figures`` and ``readme``, or (check) report mismatches."""
  from recall_theory import readme as readme_lib

  if not check:
    times = run_steps(steps, figures)
    write_timings(figures, times)
    if readme.exists():
      io.write_text(readme, readme_lib.render_readme(readme.read_text(), figures))
    return []
  with tempfile.TemporaryDirectory(prefix="recall-theory-reproduce-") as tmp:
    scratch = Path(tmp) / figures.resolve().name
    shutil.copytree(figures, scratch)     # steps not rerun keep their committed outputs
    run_steps(steps, scratch, repo=figures.resolve().parent)
    problems = compare_folders(figures, scratch, steps, rtol, atol)
    if readme.exists():
      text = readme.read_text()
      rerendered = readme_lib.render_readme(text, scratch, figures_label=str(figures))
      problems += [f"{readme}: generated block {name!r} differs from the rerun"
                   for name in readme_lib.changed_blocks(text, rerendered)
                   if not readme_lib.is_volatile(name)]
  return problems
