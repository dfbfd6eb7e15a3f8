"""`recall-theory verify`: every identity check passes; JSON, table, failure and bad-input paths."""

import json

import pytest

from recall_theory import verify
from recall_theory.cli.main import main


def _params():
  for name in verify.CHECKS:
    yield pytest.param(name, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_check_passes(name):
  (result,) = verify.run_checks([name], seed=0)
  assert result.name == name and result.instances > 0
  assert result.passed, (name, result.max_error, result.tolerance)


def test_checks_cover_theory_items():
  assert {c.item for c in verify.CHECKS.values()} >= {"1", "2", "3", "4", "5", "8", "9", "10", "11"}
  assert len(verify.CHECKS) >= 18


def test_cli_json_single_check(capsys):
  rc = main(["verify", "--check", "required_gap", "--json"])
  payload = json.loads(capsys.readouterr().out)
  assert rc == 0
  assert payload["passed"] is True
  (check,) = payload["checks"]
  assert check["name"] == "required_gap" and check["passed"] is True
  assert check["max_error"] <= check["tolerance"]


def test_cli_list(capsys):
  assert main(["verify", "--list"]) == 0
  out = capsys.readouterr().out
  for name in verify.CHECKS:
    assert name in out


def test_failing_check_exit_1_and_fail_in_table(monkeypatch, capsys):
  broken = verify.Check("always_wrong", "0", "a check whose error exceeds its tolerance", 0.0,
                        lambda key: (1, 0.5))
  monkeypatch.setitem(verify.CHECKS, "always_wrong", broken)
  rc = main(["verify", "--check", "always_wrong"])
  out = capsys.readouterr().out
  assert rc == 1
  row = [line for line in out.splitlines() if line.startswith("always_wrong")]
  assert len(row) == 1 and row[0].rstrip().endswith("FAIL")
  assert "0 passed, 1 failed" in out
  # a NaN error never passes either
  nan_check = verify.Check("nan_error", "0", "NaN", 1.0, lambda key: (1, float("nan")))
  monkeypatch.setitem(verify.CHECKS, "nan_error", nan_check)
  assert main(["verify", "--check", "nan_error", "--json"]) == 1
  assert json.loads(capsys.readouterr().out)["passed"] is False


@pytest.mark.parametrize("args", [["--check", "no_such_check"], ["--seed", "-1"]])
def test_cli_bad_input_exit_2_one_line(capsys, args):
  rc = main(["verify", *args])
  captured = capsys.readouterr()
  assert rc == 2
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("recall-theory verify: error:"), captured.err
  assert captured.out == ""


def test_cli_unknown_option(capsys):
  with pytest.raises(SystemExit) as exc:
    main(["verify", "--bogus"])
  assert exc.value.code == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_progress_one_stage_per_check(capsys):
  from recall_theory import progress
  import io
  stream = io.StringIO()
  names = ["required_gap", "kl_ceiling_inverse"]
  original = progress.Stage.__init__

  def to_stream(self, name, total=None, *, enabled=None, stream_arg=None, **kw):
    original(self, name, total, unit=kw.get("unit", ""), enabled=True, stream=stream)

  import pytest as _pytest
  with _pytest.MonkeyPatch.context() as mp:
    mp.setattr(progress.Stage, "__init__", to_stream)
    was = progress.is_enabled()
    progress.set_enabled(True)
    try:
      verify.run_checks(names)
    finally:
      progress.set_enabled(was)
  # one stage counted in checks (issue 21: a stage per check printed "1/1" for every check)
  lines = stream.getvalue().splitlines()
  line = lines[-1]
  assert all(earlier == "verify: started (2 checks)" for earlier in lines[:-1]), lines
  assert line.startswith("verify: 2/2 checks in ") and "failed=0" in line, line


def test_jitted_checks_report_python_numbers():
  # checks run as one compiled program each; results are plain int / float
  (result,) = verify.run_checks(["set_mass_law_two_level"])
  assert type(result.instances) is int and type(result.max_error) is float
  assert verify.CHECKS["set_mass_law_two_level"].jit and not verify.CHECKS["best_of_n_enumeration"].jit
