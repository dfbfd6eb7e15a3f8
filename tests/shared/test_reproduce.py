"""reproduce: README blocks rendered from data, CSV comparison, and --check end to end (slow)."""

import json

import pytest

from recall_theory import readme, reproduce
from recall_theory.cli.main import main
from recall_theory.errors import InputError


def test_readme_blocks_render_from_files(tmp_path):
  (tmp_path / "mog").mkdir()
  (tmp_path / "mog" / "summary.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
  (tmp_path / "timings.json").write_text(json.dumps({"steps": {"sweep": {
      "command": "recall-theory sweep --out <figures>", "wall_s": 192.0, "machine": "m", "date": "d"}}}))
  text = ("intro\n<!-- generated:include mog/summary.md -->\nstale\n<!-- /generated:include mog/summary.md -->\n"
          "<!-- generated:timings -->\n<!-- /generated:timings -->\nend\n")
  out = readme.render_readme(text, tmp_path)
  assert "| 1 | 2 |\n<!-- /generated:include mog/summary.md -->" in out and "stale" not in out
  assert "| sweep | `recall-theory sweep --out <figures>` | 3.2 min | not recorded | not recorded | m | d |" in out
  assert readme.changed_blocks(text, out) == ["include mog/summary.md", "timings"]
  with pytest.raises(InputError, match="missing.md"):
    readme.render_readme("<!-- generated:include missing.md -->\n<!-- /generated:include missing.md -->",
                         tmp_path)


def test_compare_csv_reports_changed_numbers_and_skips_times(tmp_path):
  a, b = tmp_path / "a.csv", tmp_path / "b.csv"
  a.write_text("name,mass,wall_seconds\nK-A,0.125,10\nA-K,0.5,11\n")
  b.write_text("name,mass,wall_seconds\nK-A,0.1250000001,99\nA-K,0.51,12\n")
  problems = reproduce.compare_csv(a, b, rtol=1e-6, atol=1e-12)
  assert problems == [f"{a}:3 mass: committed 0.5, rerun 0.51"]
  b.write_text("name,mass\nK-A,0.125\n")
  assert "columns differ" in reproduce.compare_csv(a, b, 1e-6, 1e-12)[0]


def test_only_names_unknown_steps(capsys):
  assert main(["reproduce", "--only", "sweep,nope"]) == 2
  assert "--only" in capsys.readouterr().err


@pytest.mark.slow
def test_check_passes_on_fresh_outputs_and_catches_a_changed_number(tmp_path, capsys):
  figures = tmp_path / "figures"
  figures.mkdir()
  (tmp_path / "README.md").write_text("<!-- generated:timings -->\n<!-- /generated:timings -->\n")
  args = ["reproduce", "--only", "sweep", "--figures", str(figures), "--readme", str(tmp_path / "README.md")]
  assert main(args) == 0
  assert "sweep" in json.loads((figures / "timings.json").read_text())["steps"]
  assert main(args + ["--check"]) == 0
  csv_path = figures / "recall_ceiling.csv"
  lines = csv_path.read_text().splitlines()
  cells = lines[1].split(",")
  cells[2] = "0.123456"
  lines[1] = ",".join(cells)
  csv_path.write_text("\n".join(lines) + "\n")
  capsys.readouterr()
  assert main(args + ["--check"]) == 1
  assert "recall_ceiling.csv:2" in capsys.readouterr().out


def test_verdict_table_pairs_seeds_and_calls_ties(tmp_path):
  path = tmp_path / "x_results.csv"
  head = "track,pipeline,algorithm,seed,setting,aligned_mass,aligned_mass_low,aligned_mass_high\n"
  rows = []
  for seed, (ak, ka) in enumerate([(0.9, 0.1), (0.8, 0.2), (0.85, 0.15)]):
    rows.append(f"lm,A-K,rloo,{seed},s,{ak},{ak - 0.01},{ak + 0.01}")
    rows.append(f"lm,K-A,rloo,{seed},s,{ka},{ka - 0.01},{ka + 0.01}")
  for seed, (ak, ka) in enumerate([(0.101, 0.1), (0.1, 0.101), (0.1, 0.1)]):
    rows.append(f"lm,A-K,dpo,{seed},s,{ak},{ak - 0.05},{ak + 0.05}")
    rows.append(f"lm,K-A,dpo,{seed},s,{ka},{ka - 0.05},{ka + 0.05}")
  path.write_text(head + "\n".join(rows) + "\n")
  table = readme.verdict_table(path).splitlines()
  dpo = next(l for l in table if l.startswith("| dpo"))
  rloo = next(l for l in table if l.startswith("| rloo"))
  # rloo: diffs 0.8, 0.6, 0.7 -> mean 0.7, sd 0.1, t_{2,.975} 4.3027 -> half width 0.2484
  assert "+0.7 [+0.452, +0.948]" in rloo and "3 / 0 / 0" in rloo and "A-K ahead (resolution 0.01); too few seeds to call by the sign test" in rloo
  assert "0 / 0 / 3" in dpo and "| tie (resolution 0.05)" in dpo


# -- the statistical rule of --check for trained and sampled files ---------------------------
_HEAD = "track,pipeline,algorithm,seed,setting,plateau,aligned_mass,steps\n"


def _trained(path, masses, plateaus=None, exact=None):
  rows = [f"lm,K-A,dpo,{s},s,{(plateaus or ['reached'] * len(masses))[s]},{m},512"
          for s, m in enumerate(masses)]
  if exact is not None:
    rows.append(f"lm,K-A,exact,0,s,exact,{exact},0")
  path.write_text(_HEAD + "\n".join(rows) + "\n")
  return path


def test_file_rule_names_trained_files_statistical():
  assert reproduce.file_rule(["beta", "mass"], [["1", "0.5"]]) == "exact"
  assert reproduce.file_rule(["seed", "plateau"], [["0", "exact"]]) == "exact"
  assert reproduce.file_rule(["seed", "plateau"], [["0", "exact"], ["0", "budget"]]) == "statistical"


def test_statistical_rule_passes_noise_and_fails_a_shift(tmp_path):
  base = [0.10, 0.12, 0.11, 0.09, 0.13]
  committed = _trained(tmp_path / "a.csv", base, exact=0.25)
  # every seed moved by rounding-level noise, one plateau outcome flipped: within the noise
  noisy = _trained(tmp_path / "b.csv", [0.101, 0.118, 0.113, 0.088, 0.131],
                   plateaus=["reached", "reached", "budget", "reached", "reached"], exact=0.25)
  assert reproduce.compare_statistical(committed, noisy, 1e-6, 1e-12) == []
  # the whole group moved by ~20 standard errors: a real change
  shifted = _trained(tmp_path / "c.csv", [m + 0.1 for m in base], exact=0.25)
  problems = reproduce.compare_statistical(committed, shifted, 1e-6, 1e-12)
  assert len(problems) == 1 and "aligned_mass" in problems[0] and "standard errors" in problems[0]
  # an exact row inside a trained file is still held cell by cell
  exact_moved = _trained(tmp_path / "d.csv", base, exact=0.2501)
  problems = reproduce.compare_statistical(committed, exact_moved, 1e-6, 1e-12)
  assert len(problems) == 1 and "(exact row)" in problems[0]
  # the cell-by-cell rule would have failed the noisy rerun on every seed
  assert len(reproduce.compare_csv(committed, noisy, 1e-6, 1e-12)) >= 5


def test_compare_folders_reports_the_rule_per_file(tmp_path):
  for side in ("a", "b"):
    (tmp_path / side / "lm").mkdir(parents=True)
    _trained(tmp_path / side / "lm" / "lm_results.csv", [0.1, 0.2, 0.15])
    (tmp_path / side / "lm" / "exact.csv").write_text("beta,mass\n1,0.5\n")
  step = reproduce.Step("lm", ("lm",), "lm", "about")
  rules = {}
  assert reproduce.compare_folders(tmp_path / "a", tmp_path / "b", [step], 1e-6, 0.0, rules) == []
  assert rules == {tmp_path / "a" / "lm" / "exact.csv": "exact",
                   tmp_path / "a" / "lm" / "lm_results.csv": "statistical"}
