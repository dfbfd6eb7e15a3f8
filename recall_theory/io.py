"""Result writing: every file appears whole or not at all, every output folder as a unit.

* Each writer renders to a temporary file (``.NAME.partial-*``) in the destination folder
  and renames it into place (``os.replace`` is atomic on POSIX), so an interrupted run
  never leaves a half-written CSV, array file or figure under a final name.
* Inside a command-line run (:class:`RunUnit`, entered by ``recall_theory.cli.main``),
  :func:`prepare_output_dir` locks the target folder (a second concurrent writer fails at
  once), removes what earlier killed runs left behind, probes that the folder can be
  written, and hands the command a private staging folder beside the target. When the
  command succeeds, the finished files are moved in and ``run.json`` records which run
  made which file (command, arguments, versions, device, times, sha256 of every file).
  A failed or interrupted run leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from recall_theory.errors import InputError

PARTIAL_TAG = ".partial-"
STAGING_TAG = ".staging-"
MANIFEST = "run.json"


def _check_target(path: str | os.PathLike) -> Path:
  if str(path).strip() == "":
    raise InputError("--out: the output folder must not be empty (give a folder name)")
  out = Path(path)
  if out.exists() and not out.is_dir():
    raise InputError(f"--out: {str(out)!r} is not a folder")
  return out


def _probe_writable(folder: Path) -> None:
  """Create and remove a file: ``os.access`` says yes to root even where writes fail."""
  try:
    fd, probe = tempfile.mkstemp(prefix=f".probe{PARTIAL_TAG}", dir=folder)
    os.close(fd)
    os.unlink(probe)
  except OSError as err:
    raise InputError(f"--out: output folder {str(folder)!r} is not writable: "
                     f"{err.strerror or err}") from err


def _mkdir(out: Path) -> None:
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as err:
    raise InputError(f"--out: cannot create output folder {str(out)!r}: {err.strerror}") from err
  if not out.is_dir():
    raise InputError(f"--out: {str(out)!r} is not a folder")


def prepare_output_dir(path: str | os.PathLike) -> Path:
  """The folder a command writes its results into; call it after validating arguments.

  Outside a command-line run: create ``path`` if needed, check it can be written, and
  return it. Inside one (see :class:`RunUnit`): lock ``path``, clean up after killed
  runs, and return a private staging folder whose files move into ``path`` on success.
  Raises :class:`InputError` naming ``--out`` when the folder cannot be used.
  """
  out = _check_target(path)
  if _ACTIVE_RUN is not None:
    return _ACTIVE_RUN.stage(out)
  _mkdir(out)
  _probe_writable(out)
  return out


_ACTIVE_RUN: "RunUnit | None" = None


def _utc_now() -> str:
  return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as fh:
    for block in iter(lambda: fh.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


# sha256 of files whose writer hashed every byte as it wrote it (HashingWriter), keyed by
# (st_dev, st_ino): a rename (staging -> target) keeps the inode, so run.json needs no second
# read of a large file. An entry counts only while size and mtime_ns still match the file.
_KNOWN_DIGESTS: dict[tuple[int, int], tuple[int, int, str]] = {}


def remember_digest(path: str | os.PathLike, hexdigest: str) -> None:
  """Record that the file at ``path``, as it is now, has sha256 ``hexdigest`` (this process only)."""
  st = os.stat(path)
  _KNOWN_DIGESTS[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns, hexdigest)


def hash_and_remember(path: str | os.PathLike) -> None:
  """Hash a finished file now and record its sha256 (run from a thread, this takes the
  read of a large file off the end of the run); nothing is recorded if the file changed
  while it was read."""
  before = os.stat(path)
  digest = _sha256(Path(path))
  after = os.stat(path)
  if (before.st_ino, before.st_size, before.st_mtime_ns) == (after.st_ino, after.st_size, after.st_mtime_ns):
    _KNOWN_DIGESTS[(after.st_dev, after.st_ino)] = (after.st_size, after.st_mtime_ns, digest)


def _forget_digest(path: str | os.PathLike) -> None:
  """Drop any entry of ``path``'s inode (a new file may reuse a deleted file's inode)."""
  with contextlib.suppress(OSError):
    st = os.stat(path)
    _KNOWN_DIGESTS.pop((st.st_dev, st.st_ino), None)


def known_sha256(path: str | os.PathLike) -> str | None:
  """The recorded sha256 of ``path`` if the file is unchanged since it was recorded, else None."""
  try:
    st = os.stat(path)
  except OSError:
    return None
  entry = _KNOWN_DIGESTS.get((st.st_dev, st.st_ino))
  if entry is None or entry[:2] != (st.st_size, st.st_mtime_ns):
    return None
  return entry[2]


def _open_empty(path: str | os.PathLike) -> int:
  """A write descriptor of ``path`` at byte 0, the file created or emptied.

  No ``O_TRUNC`` on a file that is already empty (what :func:`atomic_path` hands out): on
  ext4 a truncation to size 0 marks the file for a flush of all its pages at ``close``
  (``auto_da_alloc``), which costs the writer ~0.5 s per GB written.
  """
  fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
  if os.fstat(fd).st_size:
    os.ftruncate(fd, 0)
  return fd


class HashingWriter:
  """A binary file opened for writing that hashes (sha256) every byte written through it.

  On a clean :meth:`close` the digest is recorded (:func:`remember_digest`), so the
  run.json of :meth:`RunUnit.commit` takes it instead of reading the file again. Only
  sequential ``write`` calls are offered: any other change would make the digest wrong.
  hashlib releases the GIL on large buffers, so a writer thread hashes while others compute.

  Example::

    with atomic_path(out / "big.csv") as tmp, HashingWriter(tmp) as fh:
      fh.write(b"a,b\n")
  """

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    self._fh = os.fdopen(_open_empty(self.path), "wb")
    self._digest = hashlib.sha256()

  def write(self, data) -> int:
    view = memoryview(data).cast("B")
    written = self._fh.write(view)
    self._digest.update(view)
    return written

  def hexdigest(self) -> str:
    return self._digest.hexdigest()

  def close(self) -> None:
    if not self._fh.closed:
      self._fh.close()
      remember_digest(self.path, self._digest.hexdigest())

  def __enter__(self) -> "HashingWriter":
    return self

  def __exit__(self, kind, value, traceback) -> None:
    if kind is None:
      self.close()
    else:  # a failed write: no digest for a file that is about to be dropped
      self._fh.close()


def _file_sha256(path: Path) -> str:
  return known_sha256(path) or _sha256(path)


def _describe_files(target: Path, moved: list[Path]) -> dict:
  """sha256 and size of each file: recorded by its writer where it hashed while writing
  (:class:`HashingWriter`), else read and hashed in threads (hashlib releases the GIL)."""
  from concurrent.futures import ThreadPoolExecutor
  with ThreadPoolExecutor(max_workers=max(1, min(len(moved), os.cpu_count() or 1))) as pool:
    digests = list(pool.map(lambda rel: _file_sha256(target / rel), moved))
  return {str(rel): {"sha256": digest, "bytes": (target / rel).stat().st_size}
          for rel, digest in zip(moved, digests)}


def _versions() -> dict:
  from importlib import metadata
  out = {"python": platform.python_version()}
  for dist in ("recall-theory", "jax", "jaxlib", "flax", "optax", "numpy"):
    try:
      out[dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
      out[dist] = None
  return out


def _device() -> str:
  machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpus"
  if "jax" not in sys.modules:
    return machine
  try:
    import jax
    devices = jax.devices()
    return f"{machine}; jax {jax.default_backend()}: {len(devices)} x {devices[0].device_kind}"
  except Exception:  # pragma: no cover - a broken backend must not lose the results
    return machine


def _is_writer_process() -> bool:
  """Only process 0 of a multi-process jax run writes results."""
  if "jax" not in sys.modules:
    return True
  try:
    import jax
    return jax.process_index() == 0
  except Exception:  # pragma: no cover
    return True


class RunUnit:
  """One command-line run's outputs, staged privately and moved in on success.

  ``recall_theory.cli.main`` opens one per command (:func:`active_run`); the command's
  :func:`prepare_output_dir` calls go through :meth:`stage`. :meth:`commit` moves the
  staged files into their targets and writes the manifest; :meth:`abort` drops them.
  Locks are ``fcntl`` locks: the kernel releases them when a process dies, so a killed
  run never blocks the next one.
  """

  def __init__(self, command: str, argv: Sequence[str], arguments: Mapping[str, Any] | None = None,
               non_default_options: Mapping[str, Any] | None = None):
    self.command = command
    self.argv = list(argv)
    self.arguments = dict(arguments or {})
    self.non_default_options = dict(non_default_options or {})
    self.started = _utc_now()
    self._staged: dict[Path, tuple[Path, Any, Path]] = {}  # target -> (staging, lock fh, lock path)

  def stage(self, target: Path) -> Path:
    target = Path(os.path.abspath(target))
    if target in self._staged:
      return self._staged[target][0]
    if not _is_writer_process():
      # Only process 0 of a multi-process run owns the output folder: the others neither lock
      # it nor clean it up (that would remove process 0's staging). They write into a private
      # scratch folder elsewhere, dropped at the end: their rows equal process 0's.
      scratch = Path(tempfile.mkdtemp(prefix=f"recall-theory-peer-{target.name}-"))
      self._staged[target] = (scratch, None, None)
      return scratch
    parent = target.parent
    _mkdir(parent)
    lock_path = parent / f".{target.name}.lock"
    try:
      lock_fh = open(lock_path, "a+")
    except OSError as err:
      raise InputError(f"--out: output folder {str(target)!r} is not writable: "
                       f"{err.strerror or err}") from err
    try:
      fcntl.flock(lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
      lock_fh.seek(0)
      holder = lock_fh.read().strip() or "another process"
      lock_fh.close()
      if err.errno in (errno.EAGAIN, errno.EACCES):
        raise InputError(f"--out: {str(target)!r} is being written by another run ({holder}); "
                         f"wait for it to finish or choose another --out") from err
      raise
    lock_fh.seek(0)
    lock_fh.truncate()
    lock_fh.write(f"pid {os.getpid()}: recall-theory {self.command}")
    lock_fh.flush()
    try:
      self._remove_leftovers(target)
      if target.exists():
        _probe_writable(target)
      staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_TAG}", dir=parent))
    except BaseException:
      self._unlock(lock_fh, lock_path)
      raise
    self._staged[target] = (staging, lock_fh, lock_path)
    return staging

  @staticmethod
  def _remove_leftovers(target: Path) -> None:
    """Staging folders and partial files of earlier, killed runs (we hold the lock)."""
    for leftover in target.parent.glob(f".{target.name}{STAGING_TAG}*"):
      shutil.rmtree(leftover, ignore_errors=True)
    # Only this folder's own files: subfolders may be other runs' targets (figures/mog
    # inside figures/), whose in-progress partial files are theirs to clean.
    if target.is_dir():
      for leftover in target.glob(f".*{PARTIAL_TAG}*"):
        with contextlib.suppress(OSError):
          leftover.unlink()

  @staticmethod
  def _unlock(lock_fh, lock_path: Path | None) -> None:
    if lock_fh is None:  # a peer process's scratch folder holds no lock
      return
    with contextlib.suppress(OSError):
      lock_path.unlink()
    with contextlib.suppress(OSError):
      fcntl.flock(lock_fh, fcntl.LOCK_UN)
    lock_fh.close()

  def commit(self) -> list[Path]:
    """Move every staged file into its target, write the manifests; return the paths."""
    written: list[Path] = []
    writer = _is_writer_process()
    try:
      for target, (staging, _, _) in self._staged.items():
        if not writer:
          continue
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        moved = []
        for src in files:
          rel = src.relative_to(staging)
          dest = target / rel
          _mkdir(dest.parent)
          os.replace(src, dest)
          moved.append(rel)
        if moved:
          write_json(target / MANIFEST, self._manifest(target, moved))
          written += [target / rel for rel in moved] + [target / MANIFEST]
    finally:
      self.abort()
    return written

  def _manifest(self, target: Path, moved: list[Path]) -> dict:
    """run.json: one entry per command that wrote into the folder (newest run of each)."""
    path = target / MANIFEST
    runs: dict = {}
    with contextlib.suppress(OSError, ValueError, AttributeError):
      runs = dict(json.loads(path.read_text()).get("runs", {}))
    mine = {str(rel) for rel in moved}
    for other in runs.values():  # files this run rewrote no longer belong to an older run
      other["files"] = {k: v for k, v in other.get("files", {}).items() if k not in mine}
    runs = {k: v for k, v in runs.items() if v.get("files")}
    runs[self.command] = {
        "command": "recall-theory " + " ".join(shlex.quote(a) for a in self.argv),
        "arguments": {k: _plain(v) for k, v in self.arguments.items()},
        "non_default_options": {k: _plain(v) for k, v in self.non_default_options.items()},
        "versions": _versions(), "device": _device(),
        "started": self.started, "finished": _utc_now(),
        "files": _describe_files(target, moved),
    }
    return {"runs": runs}

  def abort(self) -> None:
    """Drop every staged file and release the locks (the targets stay as they were)."""
    for staging, lock_fh, lock_path in self._staged.values():
      shutil.rmtree(staging, ignore_errors=True)
      self._unlock(lock_fh, lock_path)
    self._staged.clear()


def _plain(value: Any) -> Any:
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  return repr(value)


@contextlib.contextmanager
def active_run(unit: RunUnit) -> Iterator[RunUnit]:
  """Route :func:`prepare_output_dir` through ``unit`` for the duration (aborts on error)."""
  global _ACTIVE_RUN
  previous, _ACTIVE_RUN = _ACTIVE_RUN, unit
  try:
    yield unit
  except BaseException:
    unit.abort()
    raise
  finally:
    _ACTIVE_RUN = previous


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
  """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
  final = Path(path)
  fd, tmp = tempfile.mkstemp(prefix=f".{final.name}{PARTIAL_TAG}", suffix=final.suffix, dir=final.parent)
  os.close(fd)
  tmp_path = Path(tmp)
  _forget_digest(tmp_path)
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
  if cols and all(c.dtype == np.float64 for c in cols) and len(cols) * len(cols[0]) <= _SMALL_FLOAT_CSV_VALUES:
    # a small float table: the same bytes as pandas below, without its import (~0.4 s)
    with atomic_path(path) as tmp:
      tmp.write_text(_float64_csv_text(names, cols))
    return Path(path)
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


_SMALL_FLOAT_CSV_VALUES = 200_000  # Python formats ~1 us per value: below this, cheaper than importing pandas


def _float64_csv_text(names: Sequence[str], cols: Sequence[np.ndarray]) -> str:
  """pandas' ``to_csv(index=False, float_format="%.9g")`` text of float64 columns
  (``'%.9g' % x`` per value, NaN as an empty field, ``inf``/``-inf`` spelled out)."""
  formatted = [["" if v != v else "%.9g" % v for v in c.tolist()] for c in cols]
  lines = [",".join(names)] + [",".join(row) for row in zip(*formatted)]
  return "\n".join(lines) + "\n"


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


def npz_member(key: str):
  """The zip entry of array ``key`` in an ``.npz``, with a fixed date (1980-01-01).

  ``np.savez`` stamps every entry with the current time, so the same arrays saved twice
  differ in bytes; a fixed stamp makes result files byte-reproducible.
  """
  import zipfile
  info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  info.external_attr = 0o644 << 16
  return info


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
  """Save arrays (jax or numpy) to ``.npz`` atomically, byte-reproducibly (``np.load`` reads it)."""
  import zipfile
  with atomic_path(path) as tmp:
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
      for key, value in arrays.items():
        with zf.open(npz_member(key), "w", force_zip64=True) as member:
          np.lib.format.write_array(member, np.asanyarray(np.asarray(value)), allow_pickle=True)
  return Path(path)


class StreamedArray:
  """A member of :class:`NpzWriter` whose data arrives later, in order: ``shape``, ``dtype``;
  its ``.npy`` header is format 2.0 (what ``np.lib.format.write_array_header_2_0`` writes)."""

  def __init__(self, shape: Sequence[int], dtype: Any):
    self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)

  @property
  def header(self) -> bytes:
    import io as _pyio
    buffer = _pyio.BytesIO()
    np.lib.format.write_array_header_2_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})
    return buffer.getvalue()

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class NpzWriter:
  """An ``.npz`` written in place, its large members streamed: bytes identical to
  :func:`save_npz` / ``zipfile`` (stored, ``force_zip64``, :func:`npz_member` entries).

  ``members`` maps keys, in archive order, to arrays (written at once, as
  ``np.lib.format.write_array`` writes them) or :class:`StreamedArray` (written piece by
  piece with :meth:`write`, in order). Every member's offset is known up front (stored
  entries: ``offset = previous offset + local header + data``), so pieces go straight to
  their place with ``os.pwrite`` (no scratch copy), and each member's CRC-32 is updated
  as its pieces arrive. :meth:`finish` writes the local headers (now that the CRCs are
  known), the central directory and the end records, as ``zipfile.ZipFile.close`` would.

  Example::

    with atomic_path("a.npz") as tmp:
      npz = NpzWriter(tmp, {"x": np.arange(3.0), "big": StreamedArray((2, 4), "f8")})
      npz.write("big", np.zeros(4)); npz.write("big", np.ones(4))
      npz.finish()
  """

  _ZIP64_EXTRA = 20  # '<HHQQ': the zip64 extra field FileHeader(zip64=True) appends

  def __init__(self, path: str | os.PathLike, members: Mapping[str, Any]):
    self.path = Path(path)
    for key in members:  # the central directory writes names as ASCII (no utf-8 flag)
      if not key.isascii():
        raise ValueError(f"NpzWriter: member name {key!r} must be ASCII")
    self._fd = _open_empty(self.path)
    try:
      self._lay_out(members)
    except BaseException:
      os.close(self._fd)
      raise

  def _lay_out(self, members: Mapping[str, Any]) -> None:
    """Write each member's header (and small members whole); note where streamed data goes."""
    import zlib
    self._infos, self._cursor, self._end, self._crc, self.data_offset = {}, {}, {}, {}, {}
    self._streamed = {}
    offset = 0
    for key, value in members.items():
      info = npz_member(key)
      if isinstance(value, StreamedArray):
        head, size = value.header, len(value.header) + value.nbytes
        self._streamed[key] = value
      else:
        import io as _pyio
        buffer = _pyio.BytesIO()
        np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
        head = buffer.getvalue()
        size = len(head)
      info.header_offset = offset
      info.file_size = info.compress_size = size
      start = offset + 30 + len(info.filename.encode("utf-8")) + self._ZIP64_EXTRA
      self._infos[key], self.data_offset[key] = info, start + len(head)
      self._crc[key] = zlib.crc32(head)
      os.pwrite(self._fd, head, start)
      self._cursor[key], self._end[key] = start + len(head), start + size
      offset = start + size
    self._start_dir = offset

  def write(self, key: str, data) -> None:
    """Append ``data`` (any buffer; C order bytes of the member's dtype) to member ``key``."""
    import zlib
    member = self._streamed.get(key)
    if member is not None and isinstance(data, np.ndarray) and data.dtype != member.dtype:
      # bytes of another dtype would fit the member's length and be silently wrong
      raise ValueError(f"npz member {key!r} holds {member.dtype}, got {data.dtype} data")
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    cursor = self._cursor[key]
    if cursor + view.nbytes > self._end[key]:
      raise ValueError(f"npz member {key!r}: {view.nbytes} bytes past its end")
    os.pwrite(self._fd, view, cursor)
    self._crc[key] = zlib.crc32(view, self._crc[key])
    self._cursor[key] = cursor + view.nbytes

  def finish(self) -> None:
    """Local headers, central directory and end records (``zipfile``'s bytes); closes the file."""
    import struct
    import zipfile
    missing = {k: self._end[k] - self._cursor[k] for k in self._infos if self._cursor[k] != self._end[k]}
    if missing:
      raise ValueError(f"npz members not written to their end (bytes missing): {missing}")
    limit = zipfile.ZIP64_LIMIT
    central = []
    for key, info in self._infos.items():
      info.CRC = self._crc[key]
      info.flag_bits = 0
      os.pwrite(self._fd, info.FileHeader(True), info.header_offset)  # sets extract/create version 45
      extra = [info.file_size, info.compress_size] if info.file_size > limit else []
      sizes = (0xFFFFFFFF, 0xFFFFFFFF) if extra else (info.compress_size, info.file_size)
      header_offset = info.header_offset
      if header_offset > limit:
        extra.append(header_offset)
        header_offset = 0xFFFFFFFF
      extra_data = struct.pack("<HH" + "Q" * len(extra), 1, 8 * len(extra), *extra) if extra else b""
      dt = info.date_time
      dosdate, dostime = (dt[0] - 1980) << 9 | dt[1] << 5 | dt[2], dt[3] << 11 | dt[4] << 5 | (dt[5] // 2)
      filename = info.filename.encode("ascii")
      central.append(struct.pack(zipfile.structCentralDir, zipfile.stringCentralDir, info.create_version,
                                 info.create_system, info.extract_version, info.reserved, info.flag_bits,
                                 info.compress_type, dostime, dosdate, info.CRC, *sizes, len(filename),
                                 len(extra_data), 0, 0, info.internal_attr, info.external_attr, header_offset)
                     + filename + extra_data)
    directory = b"".join(central)
    count, size, offset = len(central), len(directory), self._start_dir
    tail = b""
    if count > zipfile.ZIP_FILECOUNT_LIMIT or offset > limit or size > limit:
      tail += struct.pack(zipfile.structEndArchive64, zipfile.stringEndArchive64, 44, 45, 45, 0, 0,
                          count, count, size, offset)
      tail += struct.pack(zipfile.structEndArchive64Locator, zipfile.stringEndArchive64Locator, 0,
                          offset + size, 1)
      count, size, offset = min(count, 0xFFFF), min(size, 0xFFFFFFFF), min(offset, 0xFFFFFFFF)
    tail += struct.pack(zipfile.structEndArchive, zipfile.stringEndArchive, 0, 0, count, count, size, offset, 0)
    os.pwrite(self._fd, directory + tail, self._start_dir)
    os.ftruncate(self._fd, self._start_dir + len(directory) + len(tail))
    self.close()

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None
