"""Atomic result writing: every file appears whole or not at all.

Each writer renders to a temporary file in the destination folder and renames it into
place (``os.replace`` is atomic on POSIX), so an interrupted run never leaves a
half-written CSV, array file or figure.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from recall_theory.errors import InputError


def prepare_output_dir(path: str | os.PathLike) -> Path:
  """Create ``path`` if needed and check it is writable; raise InputError naming it."""
  out = Path(path)
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as err:
    raise InputError(f"--out: cannot create output folder {str(out)!r}: {err.strerror}") from err
  if not out.is_dir():
    raise InputError(f"--out: {str(out)!r} is not a folder")
  if not os.access(out, os.W_OK | os.X_OK):
    raise InputError(f"--out: output folder {str(out)!r} is not writable")
  return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
  """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
  final = Path(path)
  fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=final.suffix, dir=final.parent)
  os.close(fd)
  tmp_path = Path(tmp)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; results should be readable
  try:
    yield tmp_path
    os.replace(tmp_path, final)
  finally:
    if tmp_path.exists():
      tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
  with atomic_path(path) as tmp:
    tmp.write_text(text)
  return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
  return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
              fieldnames: Sequence[str] | None = None) -> Path:
  """Write tidy rows (one mapping per row) to CSV atomically."""
  rows = list(rows)
  if fieldnames is None:
    fieldnames = list(rows[0].keys()) if rows else []
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline="") as fh:
      writer = csv.DictWriter(fh, fieldnames=list(fieldnames))
      writer.writeheader()
      for row in rows:
        writer.writerow({k: _csv_value(row[k]) for k in fieldnames})
  return Path(path)


def write_columns_csv(path: str | os.PathLike, columns: Mapping[str, Any]) -> Path:
  """Write equal-length column arrays to CSV atomically (fast path for large grids)."""
  names = list(columns)
  cols = [np.asarray(columns[n]).ravel() for n in names]
  lengths = {len(c) for c in cols}
  if len(lengths) > 1:
    raise ValueError(f"columns differ in length: {dict(zip(names, map(len, cols)))}")
  with atomic_path(path) as tmp:
    try:  # pandas (a seaborn dependency) writes large grids an order of magnitude faster
      import pandas as pd
    except ImportError:  # pragma: no cover
      pd = None
    if pd is not None:
      pd.DataFrame(dict(zip(names, cols))).to_csv(tmp, index=False, float_format="%.9g")
    else:  # pragma: no cover
      with open(tmp, "w", newline="") as fh:
        fh.write(",".join(names) + "\n")
        if cols and len(cols[0]):
          formatted = [_format_column(c) for c in cols]
          fh.write("\n".join(",".join(vals) for vals in zip(*formatted)))
          fh.write("\n")
  return Path(path)


def _format_column(col: np.ndarray) -> list[str]:
  if col.dtype.kind in "fc":
    return [repr(float(v)) for v in col]
  return [str(v) for v in col.tolist()]


def _csv_value(v: Any) -> Any:
  if isinstance(v, np.generic):
    return v.item()
  if hasattr(v, "item") and getattr(v, "shape", None) == ():
    return v.item()
  return v


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
  """Save arrays (jax or numpy) to ``.npz`` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as fh:
      np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
  return Path(path)
