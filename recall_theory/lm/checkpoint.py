"""Orbax checkpoints of training stages, with resume and clear errors.

Layout under the checkpoint folder::

  run.json                     fingerprint of the run's configuration
  <stage>/step_00000040/       Orbax pytree of the TrainState leaves
  <stage>/step_00000040.json   metadata (stage, step, leaf names/shapes/dtypes, final)

A checkpoint counts only once its ``.json`` exists (written atomically after Orbax has
finished), so a run killed while saving leaves the previous checkpoint as the latest.
Only checkpoints of finite states are written (the trainer checks before saving), so a
run that diverges keeps its last good one. Restoring checks the metadata against the
state the caller expects and raises :class:`InputError` naming the mismatching leaf; an
unreadable checkpoint raises InputError naming its path.

Several processes (:mod:`recall_theory.lm.distributed`): every process calls ``save``
and ``restore`` (Orbax writes and reads each process's own array shards); only process
0 writes ``run.json`` and the ``.json`` metadata and deletes old steps, and the
processes meet at a barrier after each of those writes so none reads a half-written
folder.
"""

from __future__ import annotations

import json
import os
import sys
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from recall_theory import io
from recall_theory.errors import InputError

_STEP_RE = re.compile(r"^step_(\d{8})\.json$")


_MISSING = "<absent>"


def _first_difference(saved, want, prefix: str = ""):
  """``(dotted.key, saved value, wanted value)`` of the first differing leaf, or None.

  Nested configurations are compared field by field, so a resume refused for another
  ``--tau`` names ``config.tau`` rather than printing both whole configurations.
  """
  if isinstance(saved, dict) and isinstance(want, dict):
    for key in sorted(set(saved) | set(want), key=str):
      found = _first_difference(saved.get(key, _MISSING), want.get(key, _MISSING),
                                f"{prefix}{key}.")
      if found is not None:
        return found
    return None
  if saved != want:
    return prefix.rstrip("."), saved, want
  return None


def _is_writer() -> bool:
  return jax.process_index() == 0


def _barrier(name: str) -> None:
  """All processes reach this point before any goes on (no-op in one process)."""
  if jax.process_count() > 1:
    # Orbax's barrier goes through the distributed runtime's key-value store (no device
    # computation, so it also works before any array exists)
    from orbax.checkpoint import multihost
    multihost.sync_global_processes(name)


def _slug(stage: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", stage)


def _leaf_table(tree) -> list[list]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [[jax.tree_util.keystr(path), list(np.shape(x)), str(np.asarray(x).dtype)
           if not hasattr(x, "dtype") else str(x.dtype)] for path, x in flat]


class Checkpointer:
  """Save / find / restore stage checkpoints in ``root`` (None disables everything)."""

  def __init__(self, root: str | Path | None, *, keep: int = 2):
    self.root = None if root is None else Path(root)
    self.keep = keep
    self._ocp = None

  @property
  def enabled(self) -> bool:
    return self.root is not None

  def _orbax(self):
    if self._ocp is None:
      import orbax.checkpoint as ocp
      self._ocp = ocp.StandardCheckpointer()
    return self._ocp

  # -- run fingerprint -----------------------------------------------------------------
  def has_checkpoints(self) -> bool:
    return self.enabled and self.root.exists() and any(self.root.iterdir())

  def check_or_write_fingerprint(self, fingerprint: dict, resume: bool) -> None:
    """Start a fresh folder, or (resume) check the folder belongs to this configuration."""
    if not self.enabled:
      return
    if self.root.exists() and not self.root.is_dir():
      raise InputError(f"--checkpoint-dir {str(self.root)!r} is not a folder")
    path = self.root / "run.json"
    if resume and not self.has_checkpoints():
      print(f"--resume: no checkpoints in {str(self.root)!r}; starting a fresh run there",
            file=sys.stderr)
    if self.has_checkpoints():
      if not resume:
        raise InputError(f"--checkpoint-dir {str(self.root)!r} already holds a run; pass --resume "
                         "to continue it or choose an empty folder (nothing was overwritten)")
      try:
        saved = json.loads(path.read_text())
      except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"--checkpoint-dir: {str(path)!r} is missing or corrupt ({err})") from err
      want = json.loads(json.dumps(fingerprint, default=str))
      difference = _first_difference(saved, want)
      if difference is not None:
        key, there, now = difference
        raise InputError(f"--checkpoint-dir {str(self.root)!r} was written by a different "
                         f"configuration: {key} = {there!r} there, {now!r} now")
      return
    try:
      self.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
      raise InputError(f"--checkpoint-dir: cannot create {str(self.root)!r}: {err.strerror}") from err
    if not os.access(self.root, os.W_OK | os.X_OK):
      raise InputError(f"--checkpoint-dir {str(self.root)!r} is not writable")
    # Every process has looked at the folder before process 0 writes into it; otherwise a
    # slower process would find the fresh fingerprint and refuse the folder as "in use".
    _barrier("recall_theory_ckpt_checked")
    if _is_writer():
      io.write_json(path, json.loads(json.dumps(fingerprint, default=str)))
    _barrier("recall_theory_ckpt_fingerprint")

  # -- stage checkpoints ---------------------------------------------------------------
  def _stage_dir(self, stage: str) -> Path:
    return self.root / _slug(stage)

  def latest(self, stage: str) -> dict | None:
    """Metadata of the newest complete checkpoint of ``stage`` (or None)."""
    if not self.enabled or not self._stage_dir(stage).exists():
      return None
    best = None
    for f in self._stage_dir(stage).iterdir():
      m = _STEP_RE.match(f.name)
      if m and (best is None or int(m.group(1)) > best[0]):
        best = (int(m.group(1)), f)
    if best is None:
      return None
    try:
      meta = json.loads(best[1].read_text())
    except (OSError, json.JSONDecodeError) as err:
      raise InputError(f"checkpoint metadata {str(best[1])!r} is corrupt ({err})") from err
    meta["path"] = str(best[1].with_suffix(""))
    return meta

  def save(self, stage: str, step: int, state: Any, *, final: bool = False,
           extra: dict | None = None) -> None:
    if not self.enabled:
      return
    stage_dir = self._stage_dir(stage)
    stage_dir.mkdir(parents=True, exist_ok=True)
    target = stage_dir / f"step_{step:08d}"
    if target.exists() and _is_writer():  # a leftover of a run killed while saving
      shutil.rmtree(target)
    _barrier(f"recall_theory_ckpt_clear_{_slug(stage)}_{step}")
    leaves = jax.tree.leaves(state)
    ckptr = self._orbax()
    ckptr.save(target.absolute(), {f"leaf_{i:05d}": x for i, x in enumerate(leaves)})
    ckptr.wait_until_finished()
    if _is_writer():
      io.write_json(stage_dir / f"step_{step:08d}.json",
                    {"stage": stage, "step": step, "final": final, "leaves": _leaf_table(state),
                     **(extra or {})})
      self._prune(stage_dir)
    _barrier(f"recall_theory_ckpt_saved_{_slug(stage)}_{step}")

  def _prune(self, stage_dir: Path) -> None:
    steps = sorted(int(m.group(1)) for f in stage_dir.iterdir() if (m := _STEP_RE.match(f.name)))
    for old in steps[:-self.keep]:
      (stage_dir / f"step_{old:08d}.json").unlink(missing_ok=True)
      shutil.rmtree(stage_dir / f"step_{old:08d}", ignore_errors=True)

  def restore(self, meta: dict, template: Any) -> Any:
    """Restore the checkpoint described by ``meta`` into the structure of ``template``."""
    path = Path(meta["path"])
    want = _leaf_table(template)
    have = meta.get("leaves", [])
    if len(have) != len(want):
      raise InputError(f"checkpoint {str(path)!r} does not match stage {meta.get('stage')!r}: "
                       f"{len(have)} arrays saved, {len(want)} expected")
    for (name_h, shape_h, dtype_h), (name_w, shape_w, dtype_w) in zip(have, want):
      if shape_h != shape_w or dtype_h != dtype_w:
        raise InputError(f"checkpoint {str(path)!r} does not match the model: {name_w} has shape "
                         f"{shape_h} {dtype_h} there, {shape_w} {dtype_w} expected")
    leaves, treedef = jax.tree.flatten(template)
    abstract = {f"leaf_{i:05d}": jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                                      sharding=getattr(x, "sharding", None))
                for i, x in enumerate(leaves)}
    try:
      restored = self._orbax().restore(path.absolute(), abstract)
    except Exception as err:  # orbax raises many types for damaged files
      raise InputError(f"checkpoint {str(path)!r} is corrupt or unreadable "
                       f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    return jax.tree.unflatten(treedef, [restored[f"leaf_{i:05d}"] for i in range(len(leaves))])
