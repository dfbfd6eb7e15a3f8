"""Issue 21's command-line progress and summary lines: counts in each stage's own unit,
no self-contradicting option line, and `mog --quiet`."""


from recall_theory import progress
from recall_theory.cli import main as cli_main


def test_generate_counts_the_answer_up_to_end_of_turn():
  from recall_theory.cli.generate_cmd import _until_eos
  assert _until_eos([5, 6, 7, 2, 2, 2], eos_id=2) == [5, 6, 7]  # 3 tokens, not the 6 steps run
  assert _until_eos([5, 6], eos_id=2) == [5, 6]
  assert _until_eos([5, 2], eos_id=None) == [5, 2]


def test_sweep_options_line_does_not_say_non_default_defaults():
  from recall_theory.cli.sweep_cmd import options_line
  assert options_line({}) == "options: all defaults"
  assert options_line({"--resolution": 12}) == "non-default options: --resolution 12"


def test_mog_quiet_prints_no_progress_and_no_summary(monkeypatch, tmp_path, capsys):
  from recall_theory.mog import report

  def fake_run_mog(out, config, seeds, betas, *, log=print, **kwargs):
    with progress.stage("mog grid (compile + run)", total=1, unit="runs") as bar:
      bar.update(1)
    log("summary text")
    return []

  monkeypatch.setattr(report, "run_mog", fake_run_mog)
  was = progress.is_enabled()
  progress.set_enabled(True)
  try:
    out = tmp_path / "out"
    assert cli_main.main(["mog", "--quick", "--seeds", "1", "--out", str(out)]) == 0
    loud = capsys.readouterr()
    assert "summary text" in loud.out and "mog grid" in loud.err
    assert cli_main.main(["mog", "--quick", "--seeds", "1", "--quiet", "--out", str(out)]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "summary text" not in quiet.out and "mog:" not in quiet.out
    assert progress.is_enabled()  # --quiet lasts for its run only
  finally:
    progress.set_enabled(was)
