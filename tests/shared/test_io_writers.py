"""Atomic writers: whole files or nothing, readable by others, round trips, output folders."""

import csv
import json
import os

import numpy as np
import pytest

from recall_theory import io
from recall_theory.errors import InputError


def _listing(path):
  return sorted(p.name for p in path.iterdir())


def test_atomic_path_leaves_nothing_when_body_raises(tmp_path):
  target = tmp_path / "result.csv"
  with pytest.raises(RuntimeError, match="boom"):
    with io.atomic_path(target) as tmp:
      assert tmp.parent == tmp_path and tmp.name.startswith(".")
      tmp.write_text("half a file")
      raise RuntimeError("boom")
  assert _listing(tmp_path) == []


def test_atomic_path_keeps_old_file_when_body_raises(tmp_path):
  target = tmp_path / "result.txt"
  io.write_text(target, "old\n")
  with pytest.raises(RuntimeError):
    with io.atomic_path(target) as tmp:
      tmp.write_text("new but broken")
      raise RuntimeError("interrupted")
  assert target.read_text() == "old\n"
  assert _listing(tmp_path) == ["result.txt"]


def test_failing_writer_leaves_nothing(tmp_path):
  with pytest.raises(ValueError, match="differ in length"):
    io.write_columns_csv(tmp_path / "bad.csv", {"a": [1, 2], "b": [1]})
  with pytest.raises(TypeError, match="not JSON serialisable"):
    io.write_json(tmp_path / "bad.json", {"x": object()})
  assert _listing(tmp_path) == []


def test_written_files_readable_by_others(tmp_path):
  paths = [
      io.write_text(tmp_path / "a.txt", "hi"),
      io.write_json(tmp_path / "b.json", {"x": 1}),
      io.write_csv(tmp_path / "c.csv", [{"x": 1}]),
      io.write_columns_csv(tmp_path / "d.csv", {"x": [1.0]}),
      io.save_npz(tmp_path / "e.npz", x=np.zeros(2)),
  ]
  for path in paths:
    mode = os.stat(path).st_mode
    assert mode & 0o044 == 0o044, (path, oct(mode))
  assert not [n for n in _listing(tmp_path) if n.startswith(".")]


def test_write_csv_round_trip_numpy_scalars(tmp_path):
  rows = [{"name": "a", "value": np.float64(0.25), "n": np.int64(3)},
          {"name": "b", "value": np.asarray(1.5), "n": 4}]
  path = io.write_csv(tmp_path / "rows.csv", rows)
  with open(path) as fh:
    got = list(csv.DictReader(fh))
  assert got == [{"name": "a", "value": "0.25", "n": "3"}, {"name": "b", "value": "1.5", "n": "4"}]
  # explicit field order and an empty table
  io.write_csv(tmp_path / "ordered.csv", rows, fieldnames=["n", "name"])
  assert (tmp_path / "ordered.csv").read_text().splitlines()[0] == "n,name"
  io.write_csv(tmp_path / "empty.csv", [], fieldnames=["x", "y"])
  assert (tmp_path / "empty.csv").read_text().strip() == "x,y"


def test_write_columns_csv_round_trip(tmp_path):
  x = np.array([1e-300, 0.1, 1 / 3])
  path = io.write_columns_csv(tmp_path / "cols.csv", {"label": np.array(["p", "q", "r"]), "x": x,
                                                      "grid": np.arange(3).reshape(3, 1)})
  with open(path) as fh:
    got = list(csv.DictReader(fh))
  assert [r["label"] for r in got] == ["p", "q", "r"]
  np.testing.assert_allclose([float(r["x"]) for r in got], x, rtol=1e-8)
  assert [int(r["grid"]) for r in got] == [0, 1, 2]


def test_save_npz_and_json_round_trip(tmp_path):
  import jax.numpy as jnp
  path = io.save_npz(tmp_path / "arrays.npz", a=jnp.arange(3.0), b=np.eye(2), s=np.asarray("x"))
  with np.load(path) as data:
    np.testing.assert_array_equal(data["a"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(data["b"], np.eye(2))
    assert str(data["s"]) == "x"
  path = io.write_json(tmp_path / "r.json", {"arr": np.arange(2), "f": np.float32(0.5), "b": True})
  assert json.loads(path.read_text()) == {"arr": [0, 1], "b": True, "f": 0.5}
  assert path.read_text().endswith("\n")


def test_prepare_output_dir(tmp_path):
  out = io.prepare_output_dir(tmp_path / "a" / "b")
  assert out.is_dir()
  assert io.prepare_output_dir(out) == out  # existing folder is fine
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(InputError, match="--out"):
    io.prepare_output_dir(blocker)            # a regular file, not a folder
  with pytest.raises(InputError, match="--out"):
    io.prepare_output_dir(blocker / "below")  # mkdir below a regular file fails
  assert not (blocker / "below").exists()


def _zipfile_npz(path, arrays, streamed):
  """The reference: ``zipfile`` writing each member as NpzWriter promises (streamed members
  with a format-2.0 .npy header)."""
  import zipfile
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
    for key, value in arrays.items():
      with zf.open(io.npz_member(key), "w", force_zip64=True) as member:
        if key in streamed:
          member.write(io.StreamedArray(value.shape, value.dtype).header + value.tobytes())
        else:
          np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


@pytest.mark.parametrize("zip64_limit", [None, 100])   # 100: the zip64 records of a >2 GiB archive
def test_npz_writer_bytes_equal_zipfile(tmp_path, monkeypatch, zip64_limit):
  import zipfile
  if zip64_limit is not None:
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", zip64_limit)
  rng = np.random.default_rng(0)
  arrays = {"axis": np.linspace(0, 1, 7), "big": rng.normal(size=(3, 5, 4)), "names": np.asarray(["ab", "c"]),
            "half": rng.normal(size=(5, 4)).astype(np.float32), "scalar": np.asarray(2.5)}
  streamed = ("big", "half")
  _zipfile_npz(tmp_path / "ref.npz", arrays, streamed)
  members = {k: (io.StreamedArray(v.shape, v.dtype) if k in streamed else v) for k, v in arrays.items()}
  writer = io.NpzWriter(tmp_path / "new.npz", members)
  for g in range(3):                       # pieces in order, of uneven sizes
    writer.write("big", arrays["big"][g, :2])
    writer.write("big", arrays["big"][g, 2:])
  writer.write("half", arrays["half"])
  writer.finish()
  assert (tmp_path / "new.npz").read_bytes() == (tmp_path / "ref.npz").read_bytes()
  with np.load(tmp_path / "new.npz") as data:
    np.testing.assert_array_equal(data["big"], arrays["big"])
    big = np.memmap(tmp_path / "new.npz", np.float64, "r", writer.data_offset["big"], (3, 5, 4))
    np.testing.assert_array_equal(big, arrays["big"])


def test_npz_writer_refuses_overrun_and_unfinished_members(tmp_path):
  writer = io.NpzWriter(tmp_path / "a.npz", {"x": io.StreamedArray((2, 3), np.float64)})
  with pytest.raises(ValueError, match="past its end"):
    writer.write("x", np.zeros(7))
  writer.write("x", np.zeros(3))
  with pytest.raises(ValueError, match="not written to their end"):
    writer.finish()
  writer.close()


def test_write_columns_csv_small_float_path_equals_pandas(tmp_path, monkeypatch):
  pytest.importorskip("pandas")  # the second write takes the pandas path
  v = np.array([0.0, -0.0, 1e-320, 5e-324, 1.7976931348623157e308, np.inf, -np.inf, np.nan, 1 / 3, -2.5e-12,
                123456789.5, 1e16, 0.1])
  io.write_columns_csv(tmp_path / "small.csv", {"a": v, "b": v[::-1]})
  monkeypatch.setattr(io, "_SMALL_FLOAT_CSV_VALUES", 0)   # force the pandas path
  io.write_columns_csv(tmp_path / "pandas.csv", {"a": v, "b": v[::-1]})
  assert (tmp_path / "small.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
