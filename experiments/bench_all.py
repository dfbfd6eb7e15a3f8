"""Every benchmark in one report: figures, same-run baselines, ratios, compile vs run time.

1. Cold vs warm start of the command line (JAX's persistent compilation cache): each
   command runs twice with a fresh, empty cache folder; the first run compiles and fills
   it, the second reads it. Ratio = cold / warm wall time. Commands: ``verify``,
   ``sweep --no-figures``, ``mog --quick``, the default ``mog`` run and ``lm --preset
   cpu-tiny`` (one seed, DPO), to keep the whole report within about 10 minutes on 2 cores.
2. The track benchmarks (``bench_theory.py``, ``bench_mog.py`` twice: the grid at the quick
   config and the default grid's stages, each against its same-run baseline; ``bench_lm.py`` twice:
   the cpu-tiny preset and a 2-layer SmolLM2-135M-shaped step with its deterministic-ops
   cost, ``bench_smollm2.py``), each run with ``--json`` at CPU sizes and gathered; a
   script without ``--json`` is recorded as skipped, one that fails as not measured
   (with its last line), and the report is written either way.

Usage:  python3 experiments/bench_all.py [--out results/bench_all.json] [--skip smollm2,lm-cli]
Writes one JSON (with the machine, the load average before and after, each step's wall
time) and prints a table (the README's performance table is generated from it:
``python3 experiments/bench_all.py --markdown results/bench_all.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from recall_theory import bench  # noqa: E402

CLI_RUNS = {
    "verify": ["verify"],
    "sweep": ["sweep", "--no-figures"],
    "mog-quick": ["mog", "--quick"],
    "mog-cli": ["mog"],
    "lm-cli": ["lm", "--preset", "cpu-tiny", "--seeds", "1", "--algorithms", "dpo", "--quiet"],
}
# CPU-sized runs of each script (name -> one or more command lines)
SCRIPTS = {
    "theory": [["bench_theory.py", "--resolution", "200"]],
    "mog": [["bench_mog.py", "--config", "quick", "--repeats", "1"],
            ["bench_mog.py", "--stages", "--config", "default", "--repeats", "2"]],
    "lm": [["bench_lm.py", "--preset", "cpu-tiny", "--batch", "8", "--seq-len", "64",
            "--train-steps", "5", "--repeats", "2"],
           ["bench_lm.py", "--config", "smollm2-135m", "--batch", "1", "--seq-len", "64",
            "--layers", "2", "--train-steps", "2", "--repeats", "2", "--deterministic"]],
    "smollm2": [["bench_smollm2.py", "--batches", "1,8", "--new-tokens", "8", "--repeats", "2"]],
}


def _env() -> dict:
  """The children find the package from the repository root (no install needed)."""
  root = str(HERE.parent)
  path = os.environ.get("PYTHONPATH")
  return dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))


def _run(cmd, env=None) -> tuple[float, subprocess.CompletedProcess]:
  start = time.perf_counter()
  done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        env=env or _env())
  return time.perf_counter() - start, done


def cold_warm(name: str, args: list[str]) -> dict:
  with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache, \
       tempfile.TemporaryDirectory(prefix="bench-out-") as out:
    cmd = [sys.executable, "-m", "recall_theory", "--compile-cache", cache, *args, "--out", out]
    if args[0] == "verify":
      cmd = cmd[:-2]
    cold, first = _run(cmd)
    warm, second = _run(cmd)
  if first.returncode or second.returncode:
    bad = first if first.returncode else second
    last = bad.stdout.strip().splitlines()[-1:] or ["no output"]
    return {"name": f"cli {name}: not measured (exit {bad.returncode})",
            "command": "recall-theory " + " ".join(args), "error": last[0][:300]}
  return bench.entry(f"cli {name}: warm start (compilation cache filled)", warm, "s",
                     baseline="cold start (empty cache)", baseline_value=cold, run_s=warm,
                     command="recall-theory " + " ".join(args))


def has_json_option(argv: list[str]) -> bool:
  """Whether the script's ``--help`` offers ``--json`` (older scripts lack it)."""
  _, done = _run([sys.executable, str(HERE / argv[0]), "--help"])
  return done.returncode == 0 and "--json" in done.stdout


def script(name: str, argv: list[str]) -> list[dict]:
  """The script's own records, tagged with ``benchmark``; one record when it cannot give any."""
  command = "python3 experiments/" + " ".join(argv)
  if not has_json_option(argv):
    return [{"name": f"{name}: skipped: {argv[0]} has no --json", "benchmark": name,
             "command": command}]
  with tempfile.TemporaryDirectory(prefix="bench-json-") as tmp:
    path = Path(tmp) / "r.json"
    wall, done = _run([sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(path)])
    if done.returncode or not path.exists():
      last = done.stdout.strip().splitlines()[-1:] or ["no output"]
      return [{"name": f"{name}: not measured (exit {done.returncode})", "benchmark": name,
               "command": command, "error": last[0][:300], "wall_s": wall}]
    report = json.loads(path.read_text())
  entries = report.get("entries", [])
  for e in entries:
    e.update(benchmark=name, command=command, script_wall_s=wall)
  return entries


def markdown(report: dict) -> str:
  """The report as a Markdown table (reports written before ``load_average_before`` work too)."""
  m = report["machine"]
  load = report.get("load_average_before")
  load_text = (f"; load average {load[0]:.1f} before, {report['load_average_after'][0]:.1f} "
               f"after; {report['wall_s'] / 60:.1f} min in all"
               if load and report.get("load_average_after") and report.get("wall_s") else "")
  lines = [f"Machine: {m.get('system')}, {m.get('cpus')} cpus, {m.get('device', 'cpu')}, "
           f"jax {m.get('jax')}; {report['date']}{load_text} (`python3 experiments/bench_all.py`).",
           "", "| figure | value | baseline (same run) | ratio | compile | run |",
           "|---|---|---|---|---|---|"]
  for e in report["entries"]:
    if e.get("value") is None:
      why = e.get("error") or ""
      lines.append(f"| {e['name']} | – | {why.replace('|', '/')[:120] or '–'} | – | – | – |")
      continue
    base = "–" if e.get("baseline") is None else f"{e['baseline']}: {e['baseline_value']:.4g} {e['unit']}"
    ratio = "–" if e.get("ratio") is None else f"{e['ratio']:.2f}x"
    comp = "–" if e.get("compile_s") is None else f"{e['compile_s']:.1f} s"
    run = "–" if e.get("run_s") is None else f"{e['run_s']:.3g} s"
    name = e["name"] + (f" ({e['note']})" if e.get("note") else "")  # e.g. "timing noise"
    lines.append(f"| {name} | {e['value']:.4g} {e['unit']} | {base} | {ratio} | {comp} | {run} |")
  return "\n".join(lines) + "\n"


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="results/bench_all.json")
  parser.add_argument("--skip", default="", help=f"comma list from {','.join([*CLI_RUNS, *SCRIPTS])}")
  parser.add_argument("--markdown", default=None, metavar="JSON",
                      help="print the Markdown table of an existing report and exit")
  args = parser.parse_args()
  if args.markdown:
    print(markdown(json.loads(Path(args.markdown).read_text())), end="")
    return 0
  skip = {s.strip() for s in args.skip.split(",") if s.strip()}
  unknown = skip - set(CLI_RUNS) - set(SCRIPTS)
  if unknown:
    parser.error(f"--skip: unknown name(s) {sorted(unknown)}")
  entries = []
  load_before, start = bench.load_average(), time.perf_counter()
  for name, cli_args in CLI_RUNS.items():
    if name not in skip:
      print(f"bench_all: cold vs warm {name} ...", file=sys.stderr, flush=True)
      entries.append(cold_warm(name, cli_args))
  for name, argvs in SCRIPTS.items():
    if name not in skip:
      for argv in argvs:
        print(f"bench_all: {' '.join(argv)} ...", file=sys.stderr, flush=True)
        entries += script(name, argv)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  bench.write_report(args.out, "bench_all", entries, load_average_before=load_before,
                     load_average_after=bench.load_average(),
                     wall_s=time.perf_counter() - start)
  print(markdown(json.loads(Path(args.out).read_text())), end="")
  return 0


if __name__ == "__main__":
  sys.exit(main())
