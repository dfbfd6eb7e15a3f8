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
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def subprocess_cache_env(folder) -> dict[str, str]:
  """Environment variables that give a fresh JAX process the persistent cache in ``folder``.

  Thresholds 0, as in ``enable_compile_cache``: the suite's programs are small, and each
  one compiled in a subprocess would otherwise be compiled again on every run.
  """
  return {"JAX_COMPILATION_CACHE_DIR": str(folder),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def pytest_configure(config):
  from recall_theory.cli.main import enable_compile_cache
  folder = enable_compile_cache(None)
  if folder is not None:
    for name, value in subprocess_cache_env(folder).items():
      os.environ.setdefault(name, value)  # a cache folder chosen by the caller wins
