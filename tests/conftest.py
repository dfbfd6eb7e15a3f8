"""Suite-wide settings, applied before any test imports jax.

* Several test processes may share one GPU: JAX must not preallocate 75% of its memory
  per process (XLA_PYTHON_CLIENT_PREALLOCATE=false).
* JAX's persistent compilation cache (the same mechanism the command line uses) keeps
  compiled programs between runs of the suite; RECALL_THEORY_COMPILE_CACHE=off turns it off.
  The same folder also reaches the Python subprocesses that tests start (multi-device and
  multi-process workers, ``python -c`` scripts): JAX reads ``JAX_COMPILATION_CACHE_DIR`` and
  the two thresholds from the environment, so their programs are compiled once across runs
  too. The command line started as a subprocess sets its own folder (``--compile-cache``
  and ``RECALL_THEORY_COMPILE_CACHE`` win over these variables, ``off`` included).
* On a CPU-only install the suite compiles at XLA's backend optimisation level 0
  (``--xla_backend_optimization_level=0`` added to ``XLA_FLAGS``, inherited by subprocesses):
  most of the suite's time is compiling small programs, which level 0 does faster; the
  arithmetic is the same HLO, so every tolerance stands. The command line and benchmarks keep
  the default level. ``RECALL_THEORY_TEST_XLA_LEVEL=default`` (or a level in ``XLA_FLAGS``)
  keeps XLA's own.
* The whole suite (``python3 -m pytest -q``, tests chosen by ``testpaths``) runs on every
  core, up to :data:`MAX_WORKERS`, through pytest-xdist (the ``test`` extra), one test file per
  worker at a time (``--dist loadfile``: module fixtures are built once). Most of the suite's
  time is XLA compiling, mostly one core per process (``recall-theory reproduce --only tests``
  times the suite). Naming tests or files, ``-n`` (``-n 0``: one process), ``--pdb``, ``-s``,
  an accelerator plugin or a missing xdist runs them in this process.
"""

import importlib.util
import os

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def _cpu_only() -> bool:
  """No GPU or TPU plugin installed (checked without starting JAX, whose backend reads XLA_FLAGS)."""
  plugins = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")
  return (os.environ.get("JAX_PLATFORMS", "").lower() == "cpu"
          or not any(importlib.util.find_spec(name) for name in plugins))


if (_cpu_only() and os.environ.get("RECALL_THEORY_TEST_XLA_LEVEL", "0") != "default"
    and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_FLAG).strip()


def subprocess_cache_env(folder) -> dict[str, str]:
  """Environment variables that give a fresh JAX process the persistent cache in ``folder``.

  Thresholds 0, as in ``enable_compile_cache``: the suite's programs are small, and each
  one compiled in a subprocess would otherwise be compiled again on every run.
  """
  return {"JAX_COMPILATION_CACHE_DIR": str(folder),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


MAX_WORKERS = 4  # each worker holds its own JAX runtime and compiler


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
  """Spread the default suite over the cores (before xdist reads ``-n``; see the module doc).

  Left alone: a run that names tests, ``-n``/``--dist`` given, ``--pdb``/``--trace``/``-s``
  (a debugger or printed output needs one process), ``--collect-only``, an xdist worker,
  and a machine with a GPU or TPU plugin (workers would share one accelerator).
  """
  if not config.pluginmanager.hasplugin("xdist"):  # not installed, or -p no:xdist
    return
  interactive = (config.getoption("usepdb", False) or config.getoption("trace", False)
                 or config.getoption("capture", "fd") == "no")
  if (getattr(config.option, "numprocesses", None) is not None or config.getoption("dist", "no") != "no"
      or os.environ.get("PYTEST_XDIST_WORKER") or interactive or not _cpu_only()
      or config.args_source != pytest.Config.ArgsSource.TESTPATHS or config.option.collectonly):
    return
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  if min(cores, MAX_WORKERS) > 1:
    config.option.numprocesses = min(cores, MAX_WORKERS)
    config.option.dist = "loadfile"


def _selects_real_weight_tests(config) -> bool:
  """Whether this run may reach a test that needs the real SmolLM2 weights (hub, lm folders)."""
  if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
    return True
  for arg in config.args:
    path = os.path.abspath(arg.split("::")[0])
    tests = os.path.dirname(os.path.abspath(__file__))
    if any(path == tests or path.startswith(os.path.join(tests, folder)) for folder in ("hub", "lm")):
      return True
  return False


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
  """Look for (and if need be fetch) the real SmolLM2 weights once, before any test runs.

  Runs in the controlling process, before pytest-xdist starts its workers (its own session
  start runs last), so a first run with network has the weights before the tests that need
  them, and every worker inherits the outcome through ``PREFETCH_ENV``: offline, they skip
  with the reason at once instead of each trying the download.
  """
  if os.environ.get("PYTEST_XDIST_WORKER") or session.config.option.collectonly:
    return
  if not _selects_real_weight_tests(session.config):
    return
  import importlib.util
  # loaded by path: putting tests/hub on sys.path here would shadow this conftest module
  where = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub", "hub_fixtures.py")
  spec = importlib.util.spec_from_file_location("_prefetch_hub_fixtures", where)
  fixtures = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(fixtures)
  path, reason = fixtures.smollm2_weights_or_reason()
  os.environ[fixtures.PREFETCH_ENV] = "ready" if path is not None else reason


def pytest_configure(config):
  from recall_theory.cli.main import enable_compile_cache
  folder = enable_compile_cache(None)
  if folder is not None:
    for name, value in subprocess_cache_env(folder).items():
      os.environ.setdefault(name, value)  # a cache folder chosen by the caller wins
