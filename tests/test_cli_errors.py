"""Cross-track command-line failures: one stderr line, a distinct exit code, nothing written."""

import pytest

from recall_theory.cli import main as cli_main
from recall_theory.errors import TrainingDivergedError


def _one_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err
  return err[0]


@pytest.mark.parametrize("seeds", ["99999999999999999999", "0", "10001", "-2", "a"])
def test_lm_seed_counts_are_bounded(seeds, capsys, tmp_path):
  assert cli_main.main(["lm", "--seeds", seeds, "--out", str(tmp_path / "out")]) == 2
  assert "--seeds" in _one_line(capsys)
  assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("command", ["lm", "smollm2"])
def test_checkpoint_dir_that_is_a_file(command, capsys, tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  rc = cli_main.main([command, "--checkpoint-dir", str(a_file), "--out", str(tmp_path / "out")])
  assert rc == 2
  assert "--checkpoint-dir" in _one_line(capsys)
  assert a_file.read_text() == "x"


def test_checkpoint_dir_that_cannot_be_created(capsys, tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  rc = cli_main.main(["lm", "--preset", "cpu-tiny", "--checkpoint-dir", str(a_file / "sub"),
                      "--out", str(tmp_path / "out")])
  assert rc == 2
  assert "--checkpoint-dir" in _one_line(capsys)


def test_generate_rejects_infinite_temperature(capsys):
  assert cli_main.main(["generate", "--prompt", "hi", "--temperature", "inf"]) == 2
  assert "--temperature" in _one_line(capsys)


def test_diverged_training_is_one_line_with_exit_code_3(monkeypatch, capsys):
  def diverge(args):
    raise TrainingDivergedError("stage teacher, step 7: loss is nan")

  parser = cli_main.build_parser()
  args = parser.parse_args(["verify"])
  monkeypatch.setattr(cli_main, "build_parser", lambda: _Fixed(args, diverge))
  assert cli_main.main(["verify"]) == 3
  assert "step 7" in _one_line(capsys)


class _Fixed:
  def __init__(self, args, func):
    self.args, self.func = args, func

  def parse_args(self, argv):
    self.args.func = self.func
    return self.args


@pytest.mark.parametrize("command", ["lm", "smollm2"])
def test_multi_process_flags_are_checked_before_anything_runs(command, tmp_path, capsys):
  out = tmp_path / "out"
  code = cli_main.main([command, "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "5",
               "--out", str(out)])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and "--process-id" in err[0]
  assert not out.exists()


def test_resume_with_another_configuration_names_the_differing_field(tmp_path):
  from recall_theory.errors import InputError
  from recall_theory.lm.checkpoint import Checkpointer
  ckpt = Checkpointer(tmp_path / "ck")
  ckpt.check_or_write_fingerprint({"config": {"tau": 0.6, "beta": 1.8}, "seeds": [0]}, resume=False)
  (tmp_path / "ck" / "teacher").mkdir()          # the folder now holds a run
  with pytest.raises(InputError) as err:
    ckpt.check_or_write_fingerprint({"config": {"tau": 0.8, "beta": 1.8}, "seeds": [0]}, resume=True)
  assert str(err.value).endswith("configuration: config.tau = 0.6 there, 0.8 now")


@pytest.mark.parametrize("command", [["lm", "--preset", "test"], ["mog", "--quick"],
                                     ["gap", "--track", "lm", "--preset", "test"], ["gap", "--track", "mog"]])
@pytest.mark.parametrize("flag, value, shown", [
    ("--max-steps", "0", "--max-steps"), ("--max-steps", "-5", "--max-steps"),
    ("--max-steps", "1.5", "--max-steps"), ("--max-steps", "nan", "--max-steps"),
    ("--max-steps", "lots", "--max-steps"), ("--first-check", "0", "--first-check"),
    ("--first-check", "inf", "--first-check"), ("--plateau-tolerance", "0", "--plateau-tolerance"),
    ("--plateau-tolerance", "-1e-3", "--plateau-tolerance"), ("--plateau-tolerance", "nan", "--plateau-tolerance"),
    ("--plateau-tolerance", "inf", "--plateau-tolerance")])
def test_plateau_flags_are_checked_before_training(command, flag, value, shown, capsys, tmp_path):
  out = tmp_path / "out"
  assert cli_main.main(command + [f"{flag}={value}", "--out", str(out)]) == 2
  line = _one_line(capsys)
  assert shown in line and ("integer" in line or "finite number > 0" in line)
  assert not out.exists() or not any(out.iterdir())


def test_first_check_beyond_the_budget_names_the_flag(capsys, tmp_path):
  rc = cli_main.main(["lm", "--preset", "test", "--max-steps", "8", "--first-check", "16",
                      "--out", str(tmp_path / "out")])
  assert rc == 2
  assert "--first-check" in _one_line(capsys)


@pytest.mark.parametrize("argv, shown", [
    (["gap", "--track", "lm", "--algorithms", "simpo"], "covers dpo,rloo"),
    (["gap", "--track", "mog", "--algorithms", "rloo"], "covers pg,dpo"),
    (["gap", "--track", "lm", "--preset", "gpu"], "covers cpu-tiny, test"),
    (["gap", "--track", "lm", "--betas", "0.3"], "--betas applies to --track mog only"),
    (["gap", "--track", "mog", "--betas", "0,1"], "--betas must be"),
    (["gap", "--track", "mog", "--preset", "test"], "--preset applies to --track lm only"),
])
def test_gap_names_what_it_covers(argv, shown, capsys, tmp_path):
  assert cli_main.main(argv + ["--out", str(tmp_path / "out")]) == 2
  assert shown in _one_line(capsys)


def test_gap_track_outside_the_choices(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli_main.main(["gap", "--track", "smollm2"])
  assert exit_info.value.code == 2
  assert "--track" in _one_line(capsys)


def _levels_file(folder):
  """A small gap_levels.csv as a run writes it (two pipelines, three seeds)."""
  from recall_theory import decomposition as dec
  from recall_theory import gap_report
  rows = []
  for seed in range(3):
    for pipeline, masses in (("K-A", (0.3, 0.2, 0.1, 0.01 + 0.001 * seed)), ("A", (0.8, 0.7, 0.6, 0.5))):
      for level, mass in zip(dec.LEVELS, masses):
        rows.append({"track": "lm", "setting": "preset=test", "pipeline": pipeline, "algorithm": "dpo",
                     "seed": seed, "level": level, "aligned_mass": mass,
                     "n_eval": 0 if level == "law" else 1000,
                     "plateau": "exact" if level == "law" else "reached"})
  folder.mkdir()
  gap_report.write_gap(folder, rows, track="lm", description="d.", elapsed=1.0, options="o")
  return folder / gap_report.LEVEL_CSV


def test_gap_from_levels_rebuilds_the_outputs_without_training(tmp_path, capsys):
  levels = _levels_file(tmp_path / "run")
  out = tmp_path / "rebuilt"
  assert cli_main.main(["gap", "--track", "lm", "--preset", "test", "--from-levels", str(levels),
                        "--out", str(out), "--quiet"]) == 0
  assert (out / "gap_levels.csv").read_bytes() == levels.read_bytes()
  caption = (out / "gap_caption.md").read_text()
  assert "Levels as written by an earlier run" in caption and "Wall time" not in caption
  assert "- lm DPO (preset test): sampling" in caption
  assert (out / "gap.png").is_file() and (out / "gap_decomposition.csv").is_file()


@pytest.mark.parametrize("argv_tail, shown", [
    (["--from-levels", "MISSING"], "--from-levels: 'MISSING' is not a file"),
    (["--track", "mog", "--from-levels", "LEVELS"], "not --track mog"),
    (["--from-levels", "NOT_LEVELS"], "is not a gap_levels.csv"),
])
def test_gap_from_levels_refuses_what_it_cannot_use(argv_tail, shown, tmp_path, capsys):
  levels = _levels_file(tmp_path / "run")
  other = tmp_path / "other.csv"
  other.write_text("a,b\n1,2\n")
  argv = [{"LEVELS": str(levels), "NOT_LEVELS": str(other)}.get(a, a) for a in argv_tail]
  capsys.readouterr()
  assert cli_main.main(["gap"] + argv + ["--out", str(tmp_path / "out")]) == 2
  assert shown in _one_line(capsys)
  assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
