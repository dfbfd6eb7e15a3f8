"""Entry point of the ``recall-theory`` command.

Each subcommand lives in its own module exposing ``register(subparsers)`` (which adds
its parser and sets ``func``). Bad input anywhere becomes one line on stderr and exit
code 2; nothing is written before arguments are validated. Every run's outputs form one
unit (:class:`recall_theory.io.RunUnit`): staged privately, locked against concurrent
writers, moved in only on success, and described by ``run.json``.

JAX's persistent compilation cache is on by default, so a second run skips compilation:
``--compile-cache DIR`` or ``RECALL_THEORY_COMPILE_CACHE=DIR`` moves it, ``off`` disables
it; the default folder is ``$XDG_CACHE_HOME/recall-theory/jax-compile-cache`` (else
``~/.cache/...``). A folder that cannot be written gives a one-line warning and the
run goes on without the cache.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from recall_theory.errors import InputError, TrainingDivergedError
from recall_theory.options import describe_options  # noqa: F401  (re-exported for the commands)

# Subcommand modules, imported lazily so `recall-theory verify` never pays for flax.
SUBCOMMANDS = (
    "recall_theory.cli.verify_cmd",
    "recall_theory.cli.sweep_cmd",
    "recall_theory.cli.mog_cmd",
    "recall_theory.cli.lm_cmd",
    "recall_theory.cli.generate_cmd",
    "recall_theory.cli.smollm2_cmd",
    "recall_theory.cli.gap_cmd",
    "recall_theory.cli.collapse_cmd",
    "recall_theory.cli.replot_cmd",
    "recall_theory.cli.reproduce_cmd",
)
COMPILE_CACHE_ENV = "RECALL_THEORY_COMPILE_CACHE"

PROG = "recall-theory"


class OneLineArgumentParser(argparse.ArgumentParser):
  """argparse that reports a usage error as a single line and exits with code 2."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
  parser = OneLineArgumentParser(
      prog=PROG,
      description="Exact theory and simulations: the reference model's recall bounds alignment.")
  parser.add_argument("--compile-cache", default=None, metavar="DIR|off",
                      help=f"folder of JAX's persistent compilation cache, or 'off' (default: "
                           f"${COMPILE_CACHE_ENV}, else {default_compile_cache_dir()})")
  sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
  for mod_name in SUBCOMMANDS:
    try:
      mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as err:
      if err.name == mod_name:  # the track is not part of this install
        continue
      raise
    mod.register(sub)
  for command in sub.choices.values():  # descriptions often come from reST docstrings
    command.description = plain_text(command.description)
  return parser


def plain_text(text: str | None) -> str | None:
  """reST inline markup as a terminal shows it: ``x`` and :func:`x` become x."""
  if text is None:
    return None
  text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
  return re.sub(r"``([^`]+)``", r"\1", text)


def default_compile_cache_dir() -> Path:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(base) / "recall-theory" / "jax-compile-cache"


def _cache_off() -> None:
  """No persistent cache, also where the environment names one (JAX reads
  ``JAX_COMPILATION_CACHE_DIR`` itself; the test suite sets it for its subprocesses)."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    import jax
    jax.config.update("jax_compilation_cache_dir", None)


def enable_compile_cache(setting: str | None) -> Path | None:
  """Turn on JAX's persistent compilation cache (returns its folder, None when off).

  ``setting``: a folder, ``"off"``, or None for ``$RECALL_THEORY_COMPILE_CACHE`` and then
  the default folder. Every compiled program is cached (no minimum compile time), so
  short CLI runs gain as much as long ones.
  """
  if setting is None:
    setting = os.environ.get(COMPILE_CACHE_ENV) or str(default_compile_cache_dir())
  if setting.strip().lower() in ("off", "0", "none", "false", ""):
    _cache_off()
    return None
  folder = Path(setting).expanduser()
  try:
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as err:
    print(f"{PROG}: warning: compilation cache {str(folder)!r} cannot be written "
          f"({err.strerror or err}); running without it", file=sys.stderr)
    _cache_off()
    return None
  import jax
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder


def non_default_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
  """``{flag as typed in --help: value}`` for every subcommand option the user changed."""
  subparsers = next((a for a in getattr(parser, "_actions", ())
                     if isinstance(a, argparse._SubParsersAction)), None)
  sub = None if subparsers is None else subparsers.choices.get(args.command)
  if sub is None:
    return {}
  changed = {}
  for action in sub._actions:
    if not action.option_strings or action.dest in ("help",):
      continue
    value = getattr(args, action.dest, action.default)
    if value != action.default:
      flag = max(action.option_strings, key=len)
      changed[flag] = list(value) if isinstance(value, tuple) else value
  return changed


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args = parser.parse_args(argv)   # --help and bad flags exit here, before any heavy import
  from recall_theory import io
  from recall_theory.cli import checks
  args.non_default_options = non_default_options(parser, args)
  enable_compile_cache(args.compile_cache)
  arguments = {k: v for k, v in vars(args).items() if k not in ("func", "non_default_options")}
  unit = io.RunUnit(args.command, argv, arguments, args.non_default_options)
  from recall_theory import progress
  progress_was_enabled = progress.is_enabled()   # --quiet switches it off for this run only
  try:
    checks.check_path_flags(args)  # before any command touches a path it cannot hold
    with io.active_run(unit):
      code = int(args.func(args) or 0)
      written = unit.commit() if code == 0 else []
      if code != 0:
        unit.abort()
  except InputError as err:
    print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
    return 2
  except TrainingDivergedError as err:  # the run stopped itself; its last good checkpoint is kept
    print(f"{PROG} {args.command}: training diverged: {err}", file=sys.stderr)
    return 3
  except Exception as err:  # a multi-process run whose peer died: one line, every process stops
    lost = _lost_peer(err)
    if lost is None:
      raise
    from recall_theory.lm import distributed
    distributed.abandon(lost, f"{PROG} {args.command}")
  finally:
    progress.set_enabled(progress_was_enabled)
  for path in written:
    print(f"wrote {_display(path)}")
  return code


def _lost_peer(err: BaseException) -> str | None:
  if "recall_theory.lm.distributed" not in sys.modules:  # no multi-process run started
    return None
  return sys.modules["recall_theory.lm.distributed"].lost_peer_message(err)


def _display(path: Path) -> str:
  try:
    return os.path.relpath(path)
  except ValueError:  # pragma: no cover - another drive
    return str(path)


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
