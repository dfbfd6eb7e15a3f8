"""The benchmark record format (recall_theory.bench) and bench_all's gathering of scripts."""

import importlib.util
import json
from pathlib import Path

import pytest

from recall_theory import bench

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_all():
  spec = importlib.util.spec_from_file_location("bench_all_under_test",
                                                ROOT / "experiments" / "bench_all.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_entry_ratio_says_how_many_times_better():
  fast = bench.entry("t", 2.0, "s", baseline="old", baseline_value=6.0)
  assert fast["ratio"] == pytest.approx(3.0)           # lower is better: 6 s / 2 s
  tps = bench.entry("r", 300.0, "tokens/s", baseline="b", baseline_value=100.0,
                    higher_is_better=True, compile_s=1.5, run_s=0.2, mfu=None)
  assert tps["ratio"] == pytest.approx(3.0) and tps["compile_s"] == 1.5 and "mfu" in tps
  assert bench.entry("x", 1.0, "s")["ratio"] is None   # no baseline, no ratio


def test_report_has_machine_load_and_extras(tmp_path):
  path = tmp_path / "r.json"
  bench.write_report(path, "demo", [bench.entry("t", 1.0, "s")], wall_s=3.0)
  report = json.loads(path.read_text())
  assert report["benchmark"] == "demo" and report["wall_s"] == 3.0
  assert report["machine"]["cpus"] >= 1 and len(report["load_average"]) == 3


def test_markdown_shows_skipped_and_failed_steps(bench_all):
  report = {"machine": {"system": "Linux", "cpus": 2, "jax": "0"}, "date": "d",
            "load_average_before": [1.0, 1.0, 1.0], "load_average_after": [2.0, 1.0, 1.0],
            "wall_s": 120.0,
            "entries": [bench.entry("a", 2.0, "s", baseline="b", baseline_value=4.0, compile_s=1.0,
                                    run_s=2.0),
                        {"name": "mog: skipped: bench_mog.py has no --json"},
                        {"name": "lm: not measured (exit 1)", "error": "boom | bad"}]}
  text = bench_all.markdown(report)
  assert "load average 1.0 before, 2.0 after; 2.0 min in all" in text
  assert "| a | 2 s | b: 4 s | 2.00x | 1.0 s | 2 s |" in text
  assert "| mog: skipped: bench_mog.py has no --json | – |" in text
  assert "boom / bad" in text                           # a pipe would break the table
  old = dict(report, entries=report["entries"][:1])
  del old["load_average_before"]                        # reports written before it
  assert "load average" not in bench_all.markdown(old)


def test_script_without_json_option_is_recorded_as_skipped(bench_all, tmp_path, monkeypatch):
  (tmp_path / "old_bench.py").write_text(
      "import argparse\nargparse.ArgumentParser().parse_args()\n")
  (tmp_path / "broken_bench.py").write_text(
      "import argparse, sys\np = argparse.ArgumentParser()\np.add_argument('--json')\n"
      "p.parse_args()\nprint('it broke')\nsys.exit(3)\n")
  monkeypatch.setattr(bench_all, "HERE", tmp_path)
  skipped = bench_all.script("old", ["old_bench.py"])
  assert skipped == [{"name": "old: skipped: old_bench.py has no --json", "benchmark": "old",
                      "command": "python3 experiments/old_bench.py"}]
  failed = bench_all.script("broken", ["broken_bench.py"])
  assert len(failed) == 1 and failed[0]["error"] == "it broke"
  assert failed[0]["name"] == "broken: not measured (exit 3)"
