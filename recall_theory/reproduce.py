"""Reproduce the committed results: rerun every default run, regenerate the README's numbers.

``recall-theory reproduce`` is the only command that writes into ``figures/``. It runs each
:data:`STEPS` entry as its own process (``recall-theory ...``, or ``python3 -m pytest -q``
for the test suite), so each gets a fresh JAX and its wall time is honest, records the
times in ``figures/timings.json`` (command, wall time, the load average at its start and
end, machine), and rewrites the README blocks between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` from the data (:mod:`recall_theory.readme`).

``--check`` reruns into a temporary copy instead and reports every committed number that
no longer matches, by one of two rules per file (:func:`file_rule`, named in the output):

* **exact** (closed forms, exact tilts, quadrature): cell by cell, numbers to a relative
  tolerance, text exactly (columns of wall times skipped);
* **statistical** (trained and sampled rows: a different CPU or thread count reorders
  floating-point sums, and a trained run moves under that as much as under a fresh draw of
  noise): per group of seeds, each metric's mean may move by at most a Bonferroni-corrected
  Student-t multiple of the standard error of the difference (:func:`compare_statistical`);
  exact rows inside such a file are still compared cell by cell.

Each README block is re-rendered from the rerun and compared with the README's text; a block
generated from a statistically compared folder may change its text and is listed, not failed.
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
  # True: run with an empty JAX compilation cache of its own (a fresh clone's first run)
  cold_cache: bool = False


STEPS = (
    Step("tests", (), "", "the default test suite (what .ci/run runs), warm compilation cache; "
         "not rerun by --check unless named in --only", runner="pytest"),
    Step("tests-first-run", (), "", "the default test suite with an empty compilation cache, as "
         "on a fresh clone (the SmolLM2 weights already fetched); only when named in --only",
         runner="pytest", cold_cache=True),
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
    return ("RECALL_THEORY_COMPILE_CACHE=<empty folder> " if step.cold_cache else "") + \
        "python3 -m pytest -q"
  return "recall-theory " + " ".join(cmd[3:])


# XLA:CPU compiles for the instruction set it finds: the same run on an AVX-512 machine and on an
# AVX2-only one differs in the last bits (the cpu-tiny test preset's KLs moved by up to 7e-4
# relative between SSE4.2 and AVX2 code on one machine; thread count 1 vs 2 changed nothing).
# Every step of reproduce compiles for AVX2 on x86-64, so x86-64 machines with AVX2 or more agree;
# kernels of libraries XLA calls (YNNPACK) still choose theirs at run time.
PINNED_ISA = "AVX2"
PIN_ISA_ENV = "RECALL_THEORY_PIN_ISA"   # "off": compile for this machine's own instruction set


def pinned_env(base: dict | None = None) -> dict[str, str]:
  """``base`` (default: this process's environment) with XLA:CPU pinned to :data:`PINNED_ISA`
  on x86-64 (unless ``RECALL_THEORY_PIN_ISA=off`` or ``XLA_FLAGS`` names an ISA already)."""
  env = dict(os.environ if base is None else base)
  flags = env.get("XLA_FLAGS", "")
  if (platform.machine().lower() in ("x86_64", "amd64") and env.get(PIN_ISA_ENV, "").lower() != "off"
      and "xla_cpu_max_isa" not in flags):
    env["XLA_FLAGS"] = (flags + f" --xla_cpu_max_isa={PINNED_ISA}").strip()
  return env


def cold_cache_env(folder: str) -> dict[str, str]:
  """This process's environment with an empty compilation cache in ``folder`` for the step
  and every process it starts (the variables the suite and the command line read)."""
  return {**os.environ, "RECALL_THEORY_COMPILE_CACHE": folder, "JAX_COMPILATION_CACHE_DIR": folder}


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
      with tempfile.TemporaryDirectory(prefix="recall-theory-cold-cache-") as cold:
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=repo if step.runner == "pytest" else root.resolve().parent,
                              env=pinned_env(cold_cache_env(cold) if step.cold_cache else None))
        wall = time.perf_counter() - start
      times[step.name] = {"command": shown, "wall_s": round(wall, 1), "exit_code": done.returncode,
                          "load_start": load_start, "load_end": load_average(),
                          "compile_cache": "empty" if step.cold_cache else "shared",
                          "xla_flags": pinned_env().get("XLA_FLAGS", "")}
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


def _load_csv(path: Path) -> list[list[str]]:
  with open(path, newline="") as fh:
    return list(csv.reader(fh))


def _shape_mismatch(committed: Path, a: list, b: list) -> str | None:
  """Why two loaded CSVs cannot be compared row by row (None when they can)."""
  if not a or not b or a[0] != b[0]:
    return f"{committed}: columns differ from the rerun's"
  if len(a) != len(b):
    return f"{committed}: {len(a) - 1} rows committed, {len(b) - 1} in the rerun"
  return None


def _cells_differ(name: str, x: str, y: str, rtol: float, atol: float) -> bool:
  """Whether two cells differ beyond rtol/atol (numbers) or at all (text)."""
  if x == y:
    return False
  try:
    fx, fy = float(x), float(y)
  except ValueError:
    return True
  if math.isnan(fx) and math.isnan(fy):
    return False
  return not math.isclose(fx, fy, rel_tol=rtol, abs_tol=atol)


# The statistical rule (trained and sampled rows, see file_rule): rows that share these
# columns (those a file has) and differ only in the seed form one group; each metric's mean over
# the group's seeds may move by at most K standard errors of the difference of two independent
# draws, K the Student-t quantile at a file-wide (Bonferroni) 5% false-alarm rate.
GROUP_COLUMNS = ("track", "pipeline", "algorithm", "setting", "student", "beta", "tau",
                 "ladder_scale", "level", "teacher_target_weight")
FALSE_ALARM = 0.05
# Outcome text columns compared as rates over seeds (1 = the first value), not exactly.
OUTCOME_TEXT = {"plateau": "reached"}


def _is_exact_row(row: dict) -> bool:
  return row.get("plateau") == "exact" or row.get("algorithm") == "exact"


def file_rule(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """``"exact"`` (every cell to rtol/atol) or ``"statistical"`` (trained/sampled rows by the
  group rule; exact rows inside such a file still cell by cell).

  A file is statistical when it has a ``seed`` column and a row that is not an exact tilt
  (``plateau`` or ``algorithm`` = exact): seeds exist only where something is drawn or trained.
  """
  if "seed" not in header:
    return "exact"
  named = [dict(zip(header, r)) for r in rows]
  return "statistical" if any(not _is_exact_row(r) for r in named) else "exact"


def compare_csv(committed: Path, rerun: Path, rtol: float, atol: float) -> list[str]:
  """Cell-by-cell differences between two CSVs (numbers to rtol/atol, text exactly)."""
  a, b = _load_csv(committed), _load_csv(rerun)
  mismatch = _shape_mismatch(committed, a, b)
  if mismatch:
    return [mismatch]
  header, problems = a[0], []
  for r, (row_a, row_b) in enumerate(zip(a[1:], b[1:]), start=2):
    for name, x, y in zip(header, row_a, row_b):
      if _is_time_column(name) or not _cells_differ(name, x, y, rtol, atol):
        continue
      problems.append(f"{committed}:{r} {name}: committed {x!r}, rerun {y!r}"
                      if _not_number(x) or _not_number(y) else
                      f"{committed}:{r} {name}: committed {x}, rerun {y}")
  return problems


def _not_number(text: str) -> bool:
  try:
    float(text)
    return False
  except ValueError:
    return True


def _metric_value(name: str, text: str) -> float | None:
  """A cell as a number for the group rule (None: a text column compared exactly)."""
  if name in OUTCOME_TEXT:
    return float(text == OUTCOME_TEXT[name])
  try:
    return float(text)
  except ValueError:
    return None


def compare_statistical(committed: Path, rerun: Path, rtol: float, atol: float) -> list[str]:
  """Differences beyond seed-to-seed noise between two runs of a trained/sampled CSV.

  Exact rows are compared cell by cell. The other rows are grouped (:data:`GROUP_COLUMNS`, seed
  left out); within a group every text column must agree row by row, and each numeric column's
  mean over seeds may move by at most ``K * sqrt(var_committed + var_rerun) / sqrt(n)`` (sample
  variances over the n seeds), ``K`` the two-sided Student-t quantile with ``2 (n - 1)`` degrees
  of freedom at ``FALSE_ALARM / m`` for m comparisons in the file. Where that standard error is 0
  or there is one seed, the means are held to rtol/atol.
  """
  import numpy as np

  from recall_theory import stats

  a, b = _load_csv(committed), _load_csv(rerun)
  mismatch = _shape_mismatch(committed, a, b)
  if mismatch:
    return [mismatch]
  header, problems = a[0], []
  keys = [c for c in GROUP_COLUMNS if c in header]
  groups: dict[tuple, list[tuple[int, list[str], list[str]]]] = {}
  for r, (row_a, row_b) in enumerate(zip(a[1:], b[1:]), start=2):
    named_a = dict(zip(header, row_a))
    if _is_exact_row(named_a):
      for name, x, y in zip(header, row_a, row_b):
        if not _is_time_column(name) and _cells_differ(name, x, y, rtol, atol):
          problems.append(f"{committed}:{r} {name} (exact row): committed {x!r}, rerun {y!r}")
      continue
    key = tuple(named_a[c] for c in keys)
    groups.setdefault(key, []).append((r, row_a, row_b))
  metrics = [c for c in header if c not in keys and c != "seed" and not _is_time_column(c)]
  m = max(1, len(groups) * len(metrics))
  for key, members in groups.items():
    label = ", ".join(f"{c}={v}" for c, v in zip(keys, key) if v != "")
    n = len(members)
    for col in metrics:
      i = header.index(col)
      xs = [_metric_value(col, row_a[i]) for _, row_a, _ in members]
      ys = [_metric_value(col, row_b[i]) for _, _, row_b in members]
      if any(v is None for v in xs + ys):  # text: row by row, exactly
        for (r, row_a, row_b) in members:
          if row_a[i] != row_b[i]:
            problems.append(f"{committed}:{r} {col}: committed {row_a[i]!r}, rerun {row_b[i]!r}")
        continue
      x, y = np.asarray(xs), np.asarray(ys)
      if np.array_equal(np.isnan(x), np.isnan(y)) and np.all(np.isnan(x)):
        continue
      if not np.array_equal(np.isnan(x), np.isnan(y)):
        problems.append(f"{committed} [{label}] {col}: NaN in {int(np.isnan(x).sum())} committed "
                        f"and {int(np.isnan(y).sum())} rerun seeds")
        continue
      mx, my = float(np.nanmean(x)), float(np.nanmean(y))
      if not (math.isfinite(mx) and math.isfinite(my)):
        if mx != my:
          problems.append(f"{committed} [{label}] {col}: mean {mx} committed, {my} rerun")
        continue
      se = (math.sqrt(float(np.var(x, ddof=1) + np.var(y, ddof=1)) / n) if n > 1 else 0.0)
      if se > 0:
        limit = stats._student_t_quantile(1.0 - FALSE_ALARM / m, 2 * (n - 1)) * se
        if abs(my - mx) > limit:
          problems.append(f"{committed} [{label}] {col}: mean over {n} seeds moved "
                          f"{mx:.6g} -> {my:.6g}, {abs(my - mx) / se:.1f} standard errors "
                          f"(limit {limit / se:.1f})")
      elif not math.isclose(mx, my, rel_tol=rtol, abs_tol=atol):
        problems.append(f"{committed} [{label}] {col}: mean over {n} seed(s) {mx:.9g} committed, "
                        f"{my:.9g} rerun (no spread over seeds: held to the tolerance)")
  return problems


def compare_folders(committed_root: Path, rerun_root: Path, steps: Sequence[Step], rtol: float,
                    atol: float, rules: dict | None = None) -> list[str]:
  """Every rerun CSV against its committed copy, by its :func:`file_rule`; ``rules`` (filled
  in, optional) maps each committed path to the rule applied."""
  problems = []
  for folder in sorted({s.folder for s in steps if s.runner != "pytest"}):
    for rerun_csv in sorted((rerun_root / folder).glob("*.csv")):
      committed = committed_root / folder / rerun_csv.name
      if not committed.exists():
        problems.append(f"{committed}: not committed (the rerun writes it)")
        continue
      table = _load_csv(committed)
      rule = file_rule(table[0], table[1:]) if table else "exact"
      if rules is not None:
        rules[committed] = rule
      compare = compare_statistical if rule == "statistical" else compare_csv
      problems += compare(committed, rerun_csv, rtol, atol)
  return problems


def _block_folder(name: str) -> str | None:
  """The results folder a README block is generated from (None: none named)."""
  for token in name.replace("::", " ").split():
    if "/" in token or token.endswith((".csv", ".md", ".txt", ".json")):
      return str(Path(token).parent)
  return None


def reproduce(figures: Path, readme: Path, steps: Sequence[Step], *, check: bool, rtol: float,
              atol: float, rules: dict | None = None) -> list[str]:
  """Rerun ``steps``; write into ``figures`` and ``readme``, or (check) report mismatches.

  ``rules`` (check; filled in, optional): the rule applied to each file, ``exact`` or
  ``statistical`` (:func:`compare_folders`); a README block generated from a folder whose
  files were compared statistically may differ in its text (its numbers moved within the
  noise the files were allowed) and is recorded there as ``statistical (README block)``.
  """
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
    rules = {} if rules is None else rules
    problems = compare_folders(figures, scratch, steps, rtol, atol, rules)
    statistical = {str(p.parent.relative_to(figures)) for p, r in rules.items() if r == "statistical"}
    if readme.exists():
      text = readme.read_text()
      rerendered = readme_lib.render_readme(text, scratch, figures_label=str(figures))
      for name in readme_lib.changed_blocks(text, rerendered):
        if readme_lib.is_volatile(name):
          continue
        if _block_folder(name) in statistical:
          rules[f"{readme} block {name!r}"] = "statistical (README block)"
          continue
        problems.append(f"{readme}: generated block {name!r} differs from the rerun")
  return problems
