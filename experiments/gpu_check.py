"""One GPU check: the GPU-relevant tests, the MFU benchmark and both GPU presets, in <= 9 min.

Run on a machine with a GPU and the GPU image's packages, from the repository root::

  experiments/gpu_weights.sh join        # once, if the SmolLM2 weights came as parts
  python experiments/gpu_check.py        # ~9 minutes; prints one summary table

Steps, each under its own time budget. The benchmark runs alone (its timings must not
share the GPU); then the tests and both presets run side by side on the same GPU (JAX
does not preallocate: ``XLA_PYTHON_CLIENT_PREALLOCATE=false``), so the wall budget is
170 + 370 = 540 s. A step that runs out is stopped and reported as TIMEOUT, the rest
still run:

=========  =====================================================================  ======
step       command                                                                budget
=========  =====================================================================  ======
bench      bench_lm.py --config smollm2-135m --deterministic: tokens/s, MFU,       170 s
           XLA-attention baseline, deterministic-ops cost (in a fresh process)
tests      pytest, GPU-relevant only: model vs float64 (highest precision), cache   200 s
           and sampling paths, attention cuDNN vs XLA vs einsum, losses, killed-
           and-resumed run bit-identical (deterministic mode, in a subprocess)
lm         recall-theory lm --preset gpu (3 seeds, DPO + RLOO)                     300 s
smollm2    recall-theory smollm2 --preset smollm2-gpu --seeds 3                    370 s
=========  =====================================================================  ======

Last measured on one H200: bench 99 s without the deterministic run, lm --preset gpu
207 s and smollm2 374 s side by side, the old test selection not done in 100 s.
Without the SmolLM2 weights (``experiments/gpu_weights.sh join``) the smollm2 step is
skipped with that reason, unless asked for with ``--only``. Steps can run in separate
calls into the same ``--out`` (``--only bench,tests,lm``, later ``--only smollm2``): the
summary keeps the earlier call's steps that were not rerun.

Outputs go under ``--out`` (default ``results/gpu_check``): each step's log, the
benchmark's JSON, the two presets' result folders, and ``gpu_check_summary.{md,json}``.

Other modes::

  python experiments/gpu_check.py --dry-run      # print the plan and prerequisites only
  python experiments/gpu_check.py --cpu-smoke    # the same steps, CPU-sized (no GPU needed)

Without a GPU (and without --cpu-smoke / --dry-run): one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLI = [PY, "-m", "recall_theory.cli.main"]

GPU_TESTS = ["tests/lm/test_lm_model.py", "tests/lm/test_lm_attention.py",
             "tests/lm/test_lm_losses.py",
             "tests/lm/test_lm_pipeline.py::test_killed_run_resumes_to_identical_metrics"]
# Left out on the GPU (each compiles on the device and says nothing GPU-specific): bad
# input refusals, parameter layout, XLA:CPU memory calibration, the bench subprocess.
GPU_TESTS_SKIP = ("bad_loss_arguments or bad_config or too_long_inputs or parameter_layout "
                  "or eos_sticks or filter_logits or enable_deterministic or memory_estimate "
                  "or bench_refuses")
# Steps of one group run side by side; groups run one after the other.
GROUPS = (("bench",), ("tests", "lm", "smollm2"))


def plan(out: Path, cpu_smoke: bool) -> list[dict]:
  """The steps: name, argv, budget in seconds (in the order of GROUPS)."""
  if cpu_smoke:
    return [
        {"name": "bench", "budget": 150,
         "argv": [PY, "experiments/bench_lm.py", "--config", "smollm2-135m", "--batch", "1",
                  "--seq-len", "32", "--layers", "1", "--train-steps", "1", "--repeats", "1",
                  "--deterministic", "--json", str(out / "bench.json")]},
        {"name": "tests", "budget": 200,
         "argv": [PY, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                  "tests/lm/test_lm_attention.py", "-k", "chunked or decode or bench"]},
        {"name": "lm", "budget": 200,
         "argv": CLI + ["lm", "--preset", "test", "--seeds", "1", "--algorithms", "dpo",
                        "--quiet", "--out", str(out / "lm")]},
    ]
  return [
      {"name": "bench", "budget": 170,
       "argv": [PY, "experiments/bench_lm.py", "--config", "smollm2-135m", "--deterministic",
                "--train-steps", "5", "--repeats", "2", "--json", str(out / "bench.json")]},
      {"name": "tests", "budget": 200,
       "argv": [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *GPU_TESTS,
                "-k", f"not ({GPU_TESTS_SKIP})"]},
      {"name": "lm", "budget": 300,
       "argv": CLI + ["lm", "--preset", "gpu", "--quiet", "--out", str(out / "lm")]},
      {"name": "smollm2", "budget": 370,
       "argv": CLI + ["smollm2", "--preset", "smollm2-gpu", "--seeds", "3", "--quiet",
                      "--out", str(out / "smollm2")]},
  ]


def groups(steps: list[dict]) -> list[list[dict]]:
  """``steps`` split into GROUPS (side by side within one), empty groups dropped."""
  return [g for g in ([s for s in steps if s["name"] in names] for names in GROUPS) if g]


def wall_budget(steps: list[dict]) -> int:
  """Seconds the plan may take: per group its longest budget, groups one after another."""
  return sum(max(s["budget"] for s in g) for g in groups(steps))


def probe_device(env: dict) -> tuple[str, str]:
  """(backend, device kind) from a short subprocess (this process never touches the GPU)."""
  code = "import jax; d = jax.devices()[0]; print(jax.default_backend()); print(d.device_kind)"
  proc = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                        cwd=ROOT)
  if proc.returncode != 0:
    return "none", proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "jax failed"
  backend, kind = (proc.stdout.strip().splitlines() + ["", ""])[:2]
  return backend, kind


def summarize(name: str, log: str) -> str:
  """The numbers worth a table cell, parsed from a step's output."""
  if name == "tests":
    hits = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in ([\d.]+)s", log, re.M)
    return hits[-1][0] if hits else "no pytest summary"
  if name == "bench":
    cells = []
    for m in re.finditer(r"^train \[(.+?)\]: ([\d,]+) tokens/s .*?(MFU [^;]+);", log, re.M):
      cells.append(f"{m.group(1)}: {m.group(2)} tok/s, {m.group(3)}")
    cells += [f"{m.group(1)}: not measured ({m.group(2)[:100]})"
              for m in re.finditer(r"^train \[(.+?)\]: not measured: (.*)$", log, re.M)]
    cells += [m.group(0) for m in re.finditer(r"^ratio .*$", log, re.M)]
    oom = re.search(r"needs about .*", log)
    return " | ".join(cells) if cells else (oom.group(0) if oom else "no numbers")
  last = [line for line in log.strip().splitlines() if line.strip()]
  return last[-1][:160] if last else ""


def _stop(proc: subprocess.Popen) -> None:
  """Stop a step's own process group (started by run_group), politely first."""
  os.killpg(proc.pid, 15)
  try:
    proc.wait(timeout=10)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, 9)
    proc.wait()


def run_group(group: list[dict], out: Path, env: dict, remaining: float) -> list[dict]:
  """Run the steps of one group side by side, each under min(its budget, ``remaining``)."""
  running, rows = [], {}
  try:  # an interrupted check stops its steps (they run in their own sessions, out of
    # reach of Ctrl-C) instead of leaving them on the GPU
    for step in group:
      budget = min(step["budget"], max(remaining, 0))
      if budget < 5:
        rows[step["name"]] = {**step, "status": "SKIPPED (no time left)", "seconds": 0.0,
                              "result": ""}
        continue
      log_path = out / f"{step['name']}.log"
      log = open(log_path, "w")
      log.write("$ " + shlex.join(step["argv"]) + "\n")
      log.flush()
      try:
        proc = subprocess.Popen(step["argv"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
      except BaseException:
        log.close()
        raise
      running.append((step, budget, log, log_path, proc, time.monotonic()))
    while running:
      time.sleep(0.5)
      for item in list(running):
        step, budget, log, log_path, proc, start = item
        rc = proc.poll()
        over = time.monotonic() - start > budget
        if rc is None and not over:
          continue
        if rc is None:
          _stop(proc)
          status = f"TIMEOUT ({budget:.0f} s)"
        else:
          status = "ok" if rc == 0 else f"FAIL (exit {rc})"
        log.close()
        running.remove(item)
        text = log_path.read_text(errors="replace")
        rows[step["name"]] = {**step, "budget": budget, "status": status,
                              "seconds": time.monotonic() - start,
                              "result": summarize(step["name"], text), "log": str(log_path)}
  finally:
    for step, budget, log, log_path, proc, start in running:
      if proc.poll() is None:
        _stop(proc)
      log.close()
  return [rows[s["name"]] for s in group]


def merge_earlier(out: Path, rows: list[dict], total: float, order: list[str]):
  """Keep the steps of an earlier run in the same folder that this run did not redo.

  The weights reach a GPU machine in several commands, so the steps run in more than one
  call (`--only bench,tests,lm`, later `--only smollm2`); the summary covers them all.
  """
  earlier_path = out / "gpu_check_summary.json"
  if not earlier_path.exists():
    return rows, total
  done = {r["name"] for r in rows if not r["status"].startswith("SKIPPED")}
  try:
    earlier = json.loads(earlier_path.read_text())
    kept = [dict(r, argv=shlex.split(r["command"])) for r in earlier.get("steps", [])
            if r["name"] not in done]
    earlier_total = float(earlier["total_seconds"])
  except (ValueError, KeyError, TypeError, AttributeError) as err:
    print(f"gpu_check: ignoring the earlier summary {earlier_path} ({type(err).__name__}: {err})",
          file=sys.stderr)
    return rows, total
  kept_names = {r["name"] for r in kept}
  rows = [r for r in rows if r["name"] not in kept_names]  # an earlier result beats a skip
  merged = sorted(kept + rows, key=lambda r: order.index(r["name"]) if r["name"] in order
                  else len(order))
  # the earlier call's wall time (its steps may have run side by side), not their sum
  return merged, total + (earlier_total if kept else 0.0)


def table(rows: list[dict], device: str, total: float) -> str:
  lines = [f"GPU check on {device}: {total:.0f} s in all", "",
           "| step | status | seconds | budget | result |", "|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['name']} | {r['status']} | {r['seconds']:.0f} | {r['budget']:.0f} | "
                 f"{r['result'].replace('|', '/')} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="results/gpu_check", help="folder for logs and results")
  parser.add_argument("--total-budget", type=float, default=540.0,
                      help="seconds for all steps together (default 540 = 9 minutes)")
  parser.add_argument("--only", default=None, help="comma list of steps to run")
  parser.add_argument("--step-budget", action="append", default=[], metavar="STEP=SECONDS",
                      help="override one step's budget (repeatable), e.g. smollm2=330")
  parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
  parser.add_argument("--cpu-smoke", action="store_true",
                      help="CPU-sized versions of the steps (no GPU needed)")
  args = parser.parse_args(argv)
  if not 10 <= args.total_budget <= 3600:
    print(f"error: --total-budget must lie in [10, 3600] seconds, got {args.total_budget:g}",
          file=sys.stderr)
    return 2
  out = (ROOT / args.out) if not Path(args.out).is_absolute() else Path(args.out)
  steps = plan(out, args.cpu_smoke)
  if args.only:
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {s["name"] for s in steps})
    if unknown:
      print(f"error: --only must name steps from {[s['name'] for s in steps]}, got {unknown}",
            file=sys.stderr)
      return 2
    steps = [s for s in steps if s["name"] in wanted]
  for item in args.step_budget:
    name, _, seconds = item.partition("=")
    step = next((s for s in steps if s["name"] == name), None)
    try:
      value = float(seconds)
    except ValueError:
      value = -1.0
    if step is None or not 5 <= value <= 3600:
      print(f"error: --step-budget {item!r} must be STEP=SECONDS with STEP one of "
            f"{[s['name'] for s in steps]} and SECONDS in [5, 3600]", file=sys.stderr)
      return 2
    step["budget"] = int(value)
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false",
             PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  if args.cpu_smoke:
    env["JAX_PLATFORMS"] = "cpu"
  if args.dry_run:
    print(f"plan ({'cpu smoke' if args.cpu_smoke else 'GPU'}), output under {out}:")
    for s in steps:
      print(f"  {s['name']:8s} {s['budget']:4d} s  {shlex.join(s['argv'])}")
    print(f"  wall budget {wall_budget(steps)} s (groups one after another, steps of a group "
          f"side by side: {' then '.join('+'.join(s['name'] for s in g) for g in groups(steps))}"
          f"); total budget {args.total_budget:.0f} s")
    return 0
  backend, device = probe_device(env)
  if backend != "gpu" and not args.cpu_smoke:
    print(f"error: gpu_check needs a GPU (JAX backend here: {backend}, {device}); "
          "use --cpu-smoke or --dry-run", file=sys.stderr)
    return 2
  skipped = []
  if any(s["name"] == "smollm2" for s in steps):
    check = subprocess.run([PY, "-c", "from recall_theory.lm.hub.fetch import smollm2_135m_path;"
                            " smollm2_135m_path(); import gguf"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    if check.returncode != 0:
      why = (check.stderr.strip().splitlines() or ["unknown"])[-1]
      if args.only:  # asked for by name: refuse
        print("error: smollm2 step needs the weights and the gguf package; run "
              f"experiments/gpu_weights.sh join first ({why})", file=sys.stderr)
        return 2
      step = next(s for s in steps if s["name"] == "smollm2")
      steps = [s for s in steps if s["name"] != "smollm2"]
      skipped.append({**step, "status": "SKIPPED (no weights: gpu_weights.sh join)",
                      "seconds": 0.0, "result": why[:160]})
  out.mkdir(parents=True, exist_ok=True)
  start = time.monotonic()
  rows = []
  for group in groups(steps):
    remaining = args.total_budget - (time.monotonic() - start)
    for row in run_group(group, out, env, remaining):
      rows.append(row)
      print(f"{row['name']}: {row['status']} in {row['seconds']:.0f} s", flush=True)
  total = time.monotonic() - start
  rows += skipped
  rows, total = merge_earlier(out, rows, total, [s["name"] for s in plan(out, args.cpu_smoke)])
  summary = table(rows, device, total)
  print(summary)
  (out / "gpu_check_summary.md").write_text(summary + "\n")
  (out / "gpu_check_summary.json").write_text(json.dumps(
      {"device": device, "backend": backend, "total_seconds": total,
       "steps": [{k: v for k, v in r.items() if k != "argv"} | {"command": shlex.join(r["argv"])}
                 for r in rows]}, indent=2))
  return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
