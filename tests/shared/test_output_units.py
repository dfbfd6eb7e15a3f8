"""Output folders as units: staging, commit, abort, locks, leftovers of killed runs, run.json."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from recall_theory import io
from recall_theory.cli.main import main
from recall_theory.errors import InputError


def test_commit_moves_files_and_writes_manifest(tmp_path):
  target = tmp_path / "out"
  unit = io.RunUnit("demo", ["demo", "--out", str(target)], {"out": str(target)}, {"--out": str(target)})
  with io.active_run(unit):
    staging = io.prepare_output_dir(target)
    assert staging != target and not target.exists()   # nothing in the target before success
    io.write_text(staging / "a.txt", "alpha\n")
    (staging / "sub").mkdir()
    io.write_text(staging / "sub" / "b.txt", "beta\n")
    written = unit.commit()
  assert sorted(p.name for p in written) == ["a.txt", "b.txt", "run.json"]
  assert (target / "a.txt").read_text() == "alpha\n"
  manifest = json.loads((target / "run.json").read_text())["runs"]["demo"]
  assert manifest["files"]["sub/b.txt"]["sha256"] == hashlib.sha256(b"beta\n").hexdigest()
  assert manifest["non_default_options"] == {"--out": str(target)}
  assert manifest["started"] <= manifest["finished"]
  assert {"jax", "python", "recall-theory"} <= set(manifest["versions"])
  # no staging folder, lock or partial file is left beside or inside the target
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
  assert not any(p.name.startswith(".") for p in target.rglob("*"))


def test_manifest_keeps_other_commands_files(tmp_path):
  for command, name in (("sweep", "s.csv"), ("collapse", "c.csv")):
    unit = io.RunUnit(command, [command])
    with io.active_run(unit):
      io.write_text(io.prepare_output_dir(tmp_path) / name, command)
      unit.commit()
  runs = json.loads((tmp_path / "run.json").read_text())["runs"]
  assert set(runs) == {"sweep", "collapse"}
  assert list(runs["sweep"]["files"]) == ["s.csv"] and list(runs["collapse"]["files"]) == ["c.csv"]


def test_failed_run_leaves_target_untouched(tmp_path):
  target = tmp_path / "out"
  target.mkdir()
  (target / "old.csv").write_text("old")
  unit = io.RunUnit("demo", [])
  with pytest.raises(RuntimeError):
    with io.active_run(unit):
      io.write_text(io.prepare_output_dir(target) / "old.csv", "new")
      raise RuntimeError("boom")
  assert (target / "old.csv").read_text() == "old"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_bad_input_creates_no_folder(tmp_path, capsys):
  target = tmp_path / "never"
  assert main(["sweep", "--resolution", "1", "--out", str(target)]) == 2
  assert not target.exists()
  assert sorted(os.listdir(tmp_path)) == []


def test_empty_out_is_refused(capsys):
  with pytest.raises(InputError, match="--out"):
    io.prepare_output_dir("")


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs /sys (Linux)")
def test_unwritable_folder_refused_even_for_root():
  # os.access says "writable" to root; creating a file is the honest probe.
  with pytest.raises(InputError, match="--out"):
    io.prepare_output_dir("/sys/kernel")
  unit = io.RunUnit("demo", [])
  with io.active_run(unit), pytest.raises(InputError, match="--out"):
    io.prepare_output_dir("/sys/kernel")


_HOLDER = textwrap.dedent("""
    import sys, time
    from recall_theory import io
    unit = io.RunUnit("holder", [])
    with io.active_run(unit):
        staging = io.prepare_output_dir(sys.argv[1])
        io.write_text(staging / "half.csv", "x" * 1000)
        with open(staging / ".big.csv.partial-abc", "w") as fh:
            fh.write("partial")
        print("staged", flush=True)
        if sys.argv[2] == "die":
            import os; os._exit(9)          # killed: no cleanup runs
        time.sleep(60)
""")


def _start_holder(target: Path, mode: str) -> subprocess.Popen:
  proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(target), mode], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "staged"
  return proc


def test_second_concurrent_writer_fails_at_once(tmp_path):
  target = tmp_path / "out"
  holder = _start_holder(target, "hold")
  try:
    unit = io.RunUnit("demo", [])
    with io.active_run(unit), pytest.raises(InputError, match="being written by another run"):
      io.prepare_output_dir(target)
  finally:
    holder.kill()
    holder.wait()


def test_killed_run_leftovers_removed_by_next_run(tmp_path):
  target = tmp_path / "out"
  target.mkdir()
  (target / f".results.csv{io.PARTIAL_TAG}xyz.csv").write_text("half a file")  # an old atomic write
  holder = _start_holder(target, "die")
  holder.wait()
  assert any(io.STAGING_TAG in p.name for p in tmp_path.iterdir())   # the kill left a staging folder
  unit = io.RunUnit("demo", [])
  with io.active_run(unit):
    io.write_text(io.prepare_output_dir(target) / "ok.csv", "ok")
    unit.commit()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
  assert sorted(p.name for p in target.iterdir()) == ["ok.csv", "run.json"]


def test_cli_run_writes_manifest_and_names_non_default_options(tmp_path, capsys):
  target = tmp_path / "sw"
  assert main(["sweep", "--resolution", "8", "--no-figures", "--budgets", "1", "--out", str(target)]) == 0
  runs = json.loads((target / "run.json").read_text())["runs"]
  assert runs["sweep"]["non_default_options"]["--resolution"] == 8
  assert runs["sweep"]["non_default_options"]["--budgets"] == [1.0]
  assert set(runs["sweep"]["files"]) == {p.name for p in target.iterdir()} - {"run.json"}
  out = capsys.readouterr().out
  assert f"wrote {os.path.relpath(target / 'run.json')}" in out
  assert io.STAGING_TAG not in out          # the command never shows its private staging folder


def test_unwritable_compile_cache_warns_and_runs_on(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("")
  code = main(["--compile-cache", str(blocker / "cache"), "sweep", "--resolution", "8", "--no-figures",
               "--budgets", "1", "--out", str(tmp_path / "o")])
  assert code == 0
  err = capsys.readouterr().err
  assert "warning: compilation cache" in err and len([l for l in err.splitlines() if "warning" in l]) == 1


def test_npz_is_byte_reproducible_and_loads(tmp_path):
  import time
  import numpy as np
  a = io.save_npz(tmp_path / "a.npz", x=np.arange(5.0), name=np.asarray("caption"))
  time.sleep(2.1)                       # zip stamps have a 2-second resolution
  b = io.save_npz(tmp_path / "b.npz", x=np.arange(5.0), name=np.asarray("caption"))
  assert a.read_bytes() == b.read_bytes()
  with np.load(a) as data:
    assert data["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and str(data["name"]) == "caption"


def test_manifest_takes_the_digest_hashed_while_writing(tmp_path, monkeypatch):
  target = tmp_path / "out"
  unit = io.RunUnit("demo", ["demo"])
  with io.active_run(unit):
    staging = io.prepare_output_dir(target)
    with io.atomic_path(staging / "big.csv") as tmp, io.HashingWriter(tmp) as fh:
      fh.write(b"a,b\n")
      fh.write(np.frombuffer(b"1,2\n3,4\n", np.uint8))   # any buffer
    io.write_text(staging / "small.txt", "plain\n")      # not hashed while written: read back
    read_back = []
    real = io._sha256
    monkeypatch.setattr(io, "_sha256", lambda path: read_back.append(Path(path).name) or real(path))
    unit.commit()
  files = json.loads((target / "run.json").read_text())["runs"]["demo"]["files"]
  assert files["big.csv"] == {"sha256": hashlib.sha256(b"a,b\n1,2\n3,4\n").hexdigest(), "bytes": 12}
  assert files["small.txt"]["sha256"] == hashlib.sha256(b"plain\n").hexdigest()
  assert read_back == ["small.txt"]                      # the large file was not read again


def test_recorded_digest_ignored_once_the_file_changes(tmp_path):
  path = tmp_path / "f.bin"
  with io.HashingWriter(path) as fh:
    fh.write(b"first")
  assert io.known_sha256(path) == hashlib.sha256(b"first").hexdigest()
  os.utime(path, ns=(0, 0))                              # touched after writing: no longer trusted
  assert io.known_sha256(path) is None
  with io.HashingWriter(path) as fh:                      # rewritten: recorded again
    fh.write(b"second")
  assert io.known_sha256(path) == hashlib.sha256(b"second").hexdigest()
  with pytest.raises(RuntimeError):                       # a failed writer records nothing
    with io.HashingWriter(path) as fh:
      fh.write(b"third, cut short")
      raise RuntimeError("boom")
  assert io.known_sha256(path) is None


def test_hash_and_remember_records_a_finished_file(tmp_path):
  path = tmp_path / "a.npz"
  path.write_bytes(b"zip bytes")
  io.hash_and_remember(path)
  assert io.known_sha256(path) == hashlib.sha256(b"zip bytes").hexdigest()
