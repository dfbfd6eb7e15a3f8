"""Every benchmark in one report: figures, same-run baselines, ratios, compile vs run time.

1. Cold vs warm start of the command line (JAX's persistent compilation cache): each
   command runs twice with a fresh, empty cache folder; the first run compiles and fills
   it, the second reads it. Ratio = cold / warm wall time.
2. The track benchmarks (``bench_theory.py``, ``bench_mog.py``, ``bench_lm.py``,
   ``bench_smollm2.py``), each run with ``--json`` and gathered.

Usage:  python3 experiments/bench_all.py [--out results/bench_all.json] [--skip smollm2,lm-cli]
Writes one JSON and prints a table (the README's performance table is generated from it:
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
    "lm-cli": ["lm", "--preset", "cpu-tiny", "--quiet"],
}
SCRIPTS = {
    "theory": ["bench_theory.py", "--resolution", "200"],
    "mog": ["bench_mog.py"],
    "lm": ["bench_lm.py"],
    "smollm2": ["bench_smollm2.py"],
}


def _run(cmd, env=None) -> tuple[float, subprocess.CompletedProcess]:
  start = time.perf_counter()
  done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
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
    raise RuntimeError(f"{name} failed:\n{(first.stdout + second.stdout)[-2000:]}")
  return bench.entry(f"cli {name}: warm start (compilation cache filled)", warm, "s",
                     baseline="cold start (empty cache)", baseline_value=cold, run_s=warm,
                     command="recall-theory " + " ".join(args))


def script(name: str, argv: list[str]) -> list[dict]:
  with tempfile.TemporaryDirectory(prefix="bench-json-") as tmp:
    path = Path(tmp) / "r.json"
    wall, done = _run([sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(path)])
    if done.returncode or not path.exists():
      return [{"name": f"{name}: not measured", "error": done.stdout.strip().splitlines()[-1:]}]
    report = json.loads(path.read_text())
  entries = report.get("entries", [])
  for e in entries:
    e["benchmark"] = name
  return entries


def markdown(report: dict) -> str:
  m = report["machine"]
  lines = [f"Machine: {m.get('system')}, {m.get('cpus')} cpus, {m.get('device', 'cpu')}, "
           f"jax {m.get('jax')}; {report['date']} (`python3 experiments/bench_all.py`).", "",
           "| figure | value | baseline (same run) | ratio | compile |", "|---|---|---|---|---|"]
  for e in report["entries"]:
    if "value" not in e:
      lines.append(f"| {e['name']} | – | – | – | – |")
      continue
    base = "–" if e.get("baseline") is None else f"{e['baseline']}: {e['baseline_value']:.4g} {e['unit']}"
    ratio = "–" if e.get("ratio") is None else f"{e['ratio']:.2f}x"
    comp = "–" if e.get("compile_s") is None else f"{e['compile_s']:.1f} s"
    lines.append(f"| {e['name']} | {e['value']:.4g} {e['unit']} | {base} | {ratio} | {comp} |")
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
  for name, cli_args in CLI_RUNS.items():
    if name not in skip:
      print(f"bench_all: cold vs warm {name} ...", file=sys.stderr, flush=True)
      entries.append(cold_warm(name, cli_args))
  for name, argv in SCRIPTS.items():
    if name not in skip:
      print(f"bench_all: {argv[0]} ...", file=sys.stderr, flush=True)
      entries += script(name, argv)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  bench.write_report(args.out, "bench_all", entries)
  print(markdown(json.loads(Path(args.out).read_text())), end="")
  return 0


if __name__ == "__main__":
  sys.exit(main())
