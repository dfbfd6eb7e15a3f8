"""The command line started as a launcher (Slurm, torchrun-style) starts it: two processes.

A file of its own so the test runner can run it beside the other multi-process tests.
"""

import os
import subprocess
import sys
import time

from recall_theory.lm import distributed


# the same helpers as the other multi-process tests (tests/lm is on sys.path: no __init__.py)
from test_lm_distributed import _env, _free_port  # noqa: E402


# -- the command line as a launcher (Slurm, torchrun-style) starts it ------------------------
# the console script a launcher runs (python -m where it is not installed beside python)
_ENTRY = (os.path.join(os.path.dirname(sys.executable), "recall-theory"))
_CLI = [_ENTRY] if os.path.exists(_ENTRY) else [sys.executable, "-m", "recall_theory.cli.main"]
_CLI_RUN = [*_CLI, "lm", "--preset", "test", "--seeds", "1",
            "--algorithms", "dpo", "--quiet"]
_TIMING = {"stage_seconds", "pipeline_seconds", "eval_seconds"}


def _launch(tmp_path, port, out, extra=()):
  return [subprocess.Popen([*_CLI_RUN, *extra, "--coordinator", f"127.0.0.1:{port}",
                            "--num-processes", "2", "--process-id", str(i), "--out", str(out)],
                           env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=tmp_path)
          for i in range(2)]


def _rows(path):
  import csv
  with open(path) as fh:
    return list(csv.DictReader(fh))


def test_cli_two_processes_share_one_out_and_match_eight_devices(tmp_path):
  """Two processes with the same --out: process 0 alone writes it, the other writes nothing
  there; the rows equal one process with 8 devices (counts and masses exactly, floats to
  the rounding of a different reduction order)."""
  out = tmp_path / "out"
  procs = _launch(tmp_path, _free_port(), out)
  single = subprocess.run([*_CLI_RUN, "--out", str(tmp_path / "one")],
                          env=_env(8), capture_output=True, text=True, timeout=600, cwd=tmp_path)
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert single.returncode == 0, single.stderr[-3000:]
  assert "wrote" in outs[0][0] and "wrote" not in outs[1][0]
  assert sorted(f.name for f in tmp_path.iterdir()) == ["one", "out"]  # no peer leftovers
  multi, one = _rows(out / "lm_results.csv"), _rows(tmp_path / "one" / "lm_results.csv")
  assert len(multi) == len(one) > 0
  for a, b in zip(multi, one):
    for key in a.keys() - _TIMING:
      if a[key] == b[key]:
        continue
      x, y = float(a[key]), float(b[key])  # a text column that differs fails here
      assert abs(x - y) <= 1e-3 * abs(y) + 1e-6, (key, a[key], b[key])


def test_cli_killed_peer_stops_the_other_within_30_s_with_one_line(tmp_path):
  """Kill process 1 mid-run (after the first checkpoint): process 0 exits within 30 s with
  one line naming the lost process, and nothing reaches --out."""
  ckpt, out = tmp_path / "ckpt", tmp_path / "out"
  procs = _launch(tmp_path, _free_port(), out, ["--checkpoint-dir", str(ckpt)])
  deadline = time.monotonic() + 300
  while not (ckpt / "teacher").exists():
    assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].communicate()[1][-2000:]
    time.sleep(0.5)
  procs[1].kill()
  killed = time.monotonic()
  _, err = procs[0].communicate(timeout=60)
  assert time.monotonic() - killed <= 30
  assert procs[0].returncode == distributed.LOST_PEER_EXIT_CODE, err[-3000:]
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1 and "lost process 1 of 2" in lines[0], err[-3000:]
  assert not out.exists()
