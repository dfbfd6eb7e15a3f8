"""The reproduce command's step list: the timed test suite and the load each time ran under."""

import json
import sys

from recall_theory import readme, reproduce


def test_suite_step_runs_pytest_from_the_checkout_and_is_shown_as_typed(tmp_path):
  step = next(s for s in reproduce.STEPS if s.name == "tests")
  cmd = reproduce.step_command(step, tmp_path / "figures")
  assert cmd[:4] == [sys.executable, "-m", "pytest", "-q"]
  assert reproduce.shown_command(step, cmd) == "python3 -m pytest -q"
  # it writes nothing, so --check has no folder of it to compare
  other = next(s for s in reproduce.STEPS if s.name == "sweep")
  assert other.runner == "recall-theory"   # the default runner
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  assert reproduce.compare_folders(tmp_path / "a", tmp_path / "b", [step], 1e-6, 0.0) == []
  assert reproduce.shown_command(other, reproduce.step_command(other, tmp_path / "figures")) \
      .startswith("recall-theory sweep --out figures")


def test_check_leaves_the_suite_out_unless_named(monkeypatch, tmp_path):
  from recall_theory.cli import main as cli

  seen = {}

  def fake(figures, readme_path, steps, *, check, rtol, atol, rules=None):
    seen["steps"] = [s.name for s in steps]
    return []

  monkeypatch.setattr(reproduce, "reproduce", fake)
  (tmp_path / "figures").mkdir()
  args = ["reproduce", "--figures", str(tmp_path / "figures"), "--readme", str(tmp_path / "R.md")]
  assert cli.main(args + ["--check"]) == 0
  assert "tests" not in seen["steps"] and "sweep" in seen["steps"]
  assert cli.main(args + ["--check", "--only", "tests"]) == 0
  assert seen["steps"] == ["tests"]
  assert cli.main(args) == 0
  assert seen["steps"][0] == "tests" and "tests-first-run" not in seen["steps"]
  assert cli.main(args + ["--only", "tests-first-run"]) == 0
  assert seen["steps"] == ["tests-first-run"]


def test_timings_record_the_load_and_the_table_shows_it(tmp_path):
  root = tmp_path / "figures"
  root.mkdir()
  times = {"probe": {"command": "recall-theory probe", "wall_s": 130.0, "exit_code": 0,
                     "load_start": 0.4, "load_end": 2.25, "compile_cache": "empty"}}
  reproduce.write_timings(root, times)
  entry = json.loads((root / "timings.json").read_text())["steps"]["probe"]
  assert entry["load_start"] == 0.4 and entry["machine"] == reproduce.machine()
  table = readme.timings_table(root)
  assert "| probe | `recall-theory probe` | 2.2 min | empty (first run) | 0.4, 2.2 |" in table
  # entries written before the load was recorded say so instead of inventing a number
  reproduce.write_timings(root, {"old": {"command": "c", "wall_s": 3.0, "exit_code": 0}})
  assert "| old | `c` | 3 s | not recorded | not recorded |" in readme.timings_table(root)


def test_first_run_suite_step_runs_with_an_empty_cache_only_when_named(tmp_path):
  step = next(s for s in reproduce.STEPS if s.name == "tests-first-run")
  assert step.cold_cache and step.runner == "pytest"
  cmd = reproduce.step_command(step, tmp_path / "figures")
  assert reproduce.shown_command(step, cmd).startswith("RECALL_THEORY_COMPILE_CACHE=<empty folder> ")
  env = reproduce.cold_cache_env(str(tmp_path / "cold"))
  assert env["RECALL_THEORY_COMPILE_CACHE"] == env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "cold")


def test_the_mog_recall_sweep_collapse_reads_is_a_step_before_collapse(tmp_path):
  """Issue 21: figures/mog/mog_recall_sweep* (sweep --model mog) is a collapse input and a
  committed figure, yet no step regenerated it."""
  names = [s.name for s in reproduce.STEPS]
  assert names.index("mog-recall") < names.index("collapse")
  step = reproduce.STEPS[names.index("mog-recall")]
  cmd = reproduce.step_command(step, tmp_path / "figures")
  assert reproduce.shown_command(step, cmd) == "recall-theory sweep --model mog --out figures/mog"


def test_steps_compile_for_one_instruction_set_on_x86(monkeypatch):
  monkeypatch.setattr(reproduce.platform, "machine", lambda: "x86_64")
  assert "--xla_cpu_max_isa=AVX2" in reproduce.pinned_env({"XLA_FLAGS": "--a"})["XLA_FLAGS"]
  assert reproduce.pinned_env({"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"})["XLA_FLAGS"] == \
      "--xla_cpu_max_isa=SSE4_2"   # the caller's choice wins
  assert "XLA_FLAGS" not in reproduce.pinned_env({reproduce.PIN_ISA_ENV: "off"})
  monkeypatch.setattr(reproduce.platform, "machine", lambda: "aarch64")
  assert "XLA_FLAGS" not in reproduce.pinned_env({})
