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

# ------------------------------------------------------------------ issue 24: hostile input
# Each case: (id, argv builder given a folder of prepared bad inputs, needles of the one line).
# The builders make the files they need, so every case runs in isolation.
def _long_out(d):
  return ["sweep", "--resolution", "4", "--no-figures", "--out", str(d / ("x" * 300) / "o")]


def _collapse_truncated(d):
  folder = _collapse_inputs(d)
  lines = (folder / "mog_results.csv").read_text().splitlines()
  lines[2] = ",".join(lines[2].split(",")[:3])          # the second row cut after 3 fields
  (folder / "mog_results.csv").write_text("\n".join(lines) + "\n")
  return ["collapse", "--inputs", str(folder), "--out", str(d / "out")]


def _collapse_not_utf8(d):
  folder = _collapse_inputs(d, rows=200)
  path = folder / "mog_results.csv"
  data = path.read_bytes()
  assert len(data) > 8192                               # the bad byte lies past the header sniff
  path.write_bytes(data + b"mog,\xff\xfe,bad\n")
  return ["collapse", "--inputs", str(folder), "--out", str(d / "out")]


def _collapse_inputs(d, rows=4):
  from test_collapse import _write   # the collapse tests' writer: a valid results CSV
  folder = d / "mog"
  _write(folder, "mog_results.csv", "mog", "exact", "K-A", [1e-3] * rows, 4.0, 0.0, 0)
  return folder


def _readme(d, make):
  (d / "figures").mkdir()
  target = d / "README.md"
  if make:
    target.mkdir()
  return ["reproduce", "--readme-only", "--figures", str(d / "figures"), "--readme", str(target)]


def _model(d, kind):
  if kind == "gguf":
    path = d / "bad.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
  elif kind == "text":
    path = d / "notes.txt"
    path.write_text("hello")
  else:
    path = d / "model"
    path.mkdir()
    if kind == "config":
      (path / "config.json").write_text("{not json")
  return ["generate", "--model", str(path), "--prompt", "hi"]


def _cache_file(d, command):
  (d / "afile").write_text("x")
  tail = ["--prompt", "hi"] if command == "generate" else ["--out", str(d / "out")]
  return [command, "--cache-dir", str(d / "afile"), *tail]


def _smollm2_devices(d):
  (d / "cache").mkdir()
  return ["smollm2", "--n-devices", "0", "--cache-dir", str(d / "cache"), "--out", str(d / "out")]


def _out(*argv):
  return lambda d: [*argv, "--out", str(d / "out")]


SWEEP = ("sweep", "--resolution", "4", "--no-figures")
HOSTILE = [
    ("out-component-too-long", _long_out, ["--out", "bytes", "at most 255"]),
    ("subnormal-beta", _out(*SWEEP, "--beta", "1e-320"), ["--beta = 1e-320", "smallest normal float64"]),
    ("float32-gap-overflow", _out(*SWEEP, "--dtype", "float32", "--gap", "1e39"),
     ["--gap = 1e+39 overflows float32", "use --dtype float64"]),
    ("float32-ratio-overflow", _out(*SWEEP, "--dtype", "float32", "--ratio-max", "1e39"),
     ["--ratio-max = 1e+39 overflows float32"]),
    ("float32-gaps-of-the-grid", _out(*SWEEP, "--dtype", "float32", "--ratio-max", "1e38", "--beta", "10"),
     ["--ratio-max 1e+38 times --beta 10 exceeds the largest float32", "--ratio-max must be <= 3.40282e+37"]),
    ("float32-gaps-below-normal", _out(*SWEEP, "--dtype", "float32", "--beta", "1e-37"),
     ["--ratio-min 0.01 times --beta 1e-37 is below the smallest normal float32", "--ratio-min must be >="]),
    ("duplicate-regularizers", _out(*SWEEP, "--regularizers", "reverse_kl,reverse_kl"),
     ["--regularizers must list each entry once", "reverse_kl"]),
    ("duplicate-budgets", _out(*SWEEP, "--budgets", "1,1"), ["--budgets must list each entry once"]),
    ("float32-budget-overflow", _out(*SWEEP, "--dtype", "float32", "--budgets", "1e39"),
     ["--budgets = 1e+39 overflows float32"]),
    ("subnormal-beta-min", _out(*SWEEP, "--beta-min", "1e-320"), ["--beta-min = 1e-320", "smallest normal"]),
    ("gap-over-beta-overflow", _out(*SWEEP, "--gap", "1e308"),
     ["--gap 1e+308 over --beta-min 0.001 exceeds the largest float64", "--gap must be <= 1.79769e+305"]),
    ("gap-over-beta-below-normal", _out(*SWEEP, "--gap", "1e-306", "--beta-max", "1e3"),
     ["--gap 1e-306 over --beta-max 1000 is below the smallest normal float64", "--gap must be 0 or >="]),
    ("recall-min-zero", _out(*SWEEP, "--recall-min", "0"),
     ["--recall-min must lie in [2.2250738585072014e-308, 1)", "got 0"]),
    ("lm-n-devices-zero", _out("lm", "--preset", "test", "--n-devices", "0"),
     ["--n-devices must be an integer in [1, ", "device(s) jax sees", "got 0"]),
    ("lm-fsdp-zero", _out("lm", "--preset", "test", "--fsdp", "0"), ["--fsdp must divide", "one of 1", "got 0"]),
    ("mog-subnormal-betas", _out("mog", "--quick", "--seeds", "1", "--betas", "1e-320"),
     ["--betas = 1e-320", "smallest normal float64"]),
    # tiny but normal: the exact tilt's log-sum-exp lost every digit (masses 1 "above" the ceiling)
    ("mog-tiny-normal-betas", _out("mog", "--quick", "--seeds", "1", "--betas", "1e-305"),
     ["--betas must lie in [0.0001, 10000]", "got 1e-305"]),
    ("mog-tiny-beta-min", _out("mog", "--quick", "--beta-min", "1e-300"),
     ["--beta-min must lie in [0.0001, 10000]", "got 1e-300"]),
    ("gap-mog-tiny-betas", _out("gap", "--track", "mog", "--betas", "1e-5"),
     ["--betas must lie in [0.0001, 10000]", "got 1e-05"]),
    ("lm-seed-beyond-int64", _out("lm", "--seeds", "0,99999999999999999999"),
     ["--seeds", "[0, 2147483647]", "99999999999999999999"]),
    ("collapse-truncated-row", _collapse_truncated, ["--inputs", "line 3 has 3 fields", "the header has"]),
    ("collapse-not-utf8", _collapse_not_utf8, ["--inputs", "not UTF-8 text", "0xff"]),
    ("readme-missing", lambda d: _readme(d, make=False), ["--readme", "does not exist"]),
    ("readme-is-a-folder", lambda d: _readme(d, make=True), ["--readme", "is a folder"]),
    ("smollm2-n-devices-before-weights", _smollm2_devices, ["--n-devices must be an integer in [1, "]),
    ("generate-corrupt-gguf", lambda d: _model(d, "gguf"),
     ["--model", "bad.gguf", "cannot be read from its 15 bytes", "fetch it again"]),
    ("generate-text-file", lambda d: _model(d, "text"), ["--model", "notes.txt", "not a GGUF"]),
    ("generate-empty-folder", lambda d: _model(d, "empty"), ["--model", "config.json"]),
    ("generate-bad-config", lambda d: _model(d, "config"), ["--model", "not valid JSON"]),
    ("generate-cache-dir-file", lambda d: _cache_file(d, "generate"), ["--cache-dir", "is not a folder"]),
    ("smollm2-cache-dir-file", lambda d: _cache_file(d, "smollm2"), ["--cache-dir", "is not a folder"]),
    ("mog-match-compute-quick", _out("mog", "--match-compute", "--quick", "--time-limit", "0.001"),
     ["--quick does not apply to --match-compute", "--match-compute takes --betas with one value"]),
    ("mog-ladder-without-match-compute", _out("mog", "--quick", "--ladder", "1,2"),
     ["--ladder only applies with --match-compute", "--match-compute takes"]),
    ("mog-time-limit-too-short", _out("mog", "--match-compute", "--time-limit", "0.001"),
     ["above --time-limit 0.001 s: give --time-limit", "or more"]),
]


@pytest.mark.parametrize("build, needles", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input_is_one_line_exit_2_nothing_written(build, needles, capsys, tmp_path):
  import warnings
  inputs = tmp_path / "in"
  inputs.mkdir()
  argv = build(inputs)
  before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
  with warnings.catch_warnings():
    warnings.simplefilter("error")    # a RuntimeWarning on stderr is a second line: fail on it
    assert cli_main.main(argv) == 2
  line = _one_line(capsys)
  for needle in needles:
    assert needle in line, (needle, line)
  for internal in ("n_devices", "budget must", "weights are not in", "Error:"):  # no raw exception text
    assert internal not in line
  assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
