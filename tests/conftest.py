"""Suite-wide settings, applied before any test imports jax.

* Several test processes may share one GPU: JAX must not preallocate 75% of its memory
  per process (XLA_PYTHON_CLIENT_PREALLOCATE=false).
* JAX's persistent compilation cache (the same mechanism the command line uses) keeps
  compiled programs between runs of the suite; RECALL_THEORY_COMPILE_CACHE=off turns it off.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def pytest_configure(config):
  from recall_theory.cli.main import enable_compile_cache
  enable_compile_cache(None)
