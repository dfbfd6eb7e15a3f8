"""``jax.jit`` for the float64 tracks, with XLA:CPU's library reductions switched off.

In jaxlib 0.10.2 (the pinned version) XLA:CPU hands reductions (and some dots and elementwise
fusions) to the YNNPACK library (``--xla_cpu_experimental_ynn_fusion_type``). For the float64
reductions the Mixture-of-Gaussians track is made of (the gradient of a mixture's log-density summed
over the grid's points under ``vmap``: a reduction over a middle axis, (runs, points,
components) -> (runs, components)), those library calls run several times slower than XLA's
own loops (``experiments/bench_mog.py --stages`` times both in one run). :func:`jit`
compiles with that option empty on a CPU backend and leaves every other backend alone (GPUs
take no per-compilation options here; see :mod:`recall_theory.lm.train` on why).

The option changes which code runs, not what is computed: results agree to rounding. A jax
whose XLA does not know the option (a newer or older one) gets a plain ``jax.jit``; the
probe compiles a one-element function once per process.

Example::

  run_grid_fn = xla_cpu.jit(jax.vmap(run_single))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
NO_LIBRARY_FUSIONS = {YNN_FUSION_OPTION: ""}


@functools.lru_cache(maxsize=1)
def cpu_compiler_options() -> dict | None:
  """The per-compilation options :func:`jit` passes: ``NO_LIBRARY_FUSIONS`` on a CPU backend whose
  XLA knows the option, else None."""
  if jax.default_backend() != "cpu":
    return None
  try:
    jax.jit(lambda x: x + 1, compiler_options=NO_LIBRARY_FUSIONS).lower(jnp.zeros(1)).compile()
  except Exception:  # an XLA without the option: plain compilation
    return None
  return dict(NO_LIBRARY_FUSIONS)


def jit(fn, **kwargs):
  """``jax.jit(fn, **kwargs)`` compiled with :func:`cpu_compiler_options` (None off a CPU).

  The ``jax.jit`` is built at the first call (or attribute access, e.g. ``.lower``), not here:
  a module decorating its functions with this must not start JAX's backend when imported
  (XLA_FLAGS set later, ``jax.distributed.initialize``, would no longer take effect).
  """
  return _LazyJit(fn, kwargs)


class _LazyJit:
  """A jitted function built on first use (see :func:`jit`)."""

  def __init__(self, fn, kwargs):
    self._fn, self._kwargs, self._jitted = fn, kwargs, None
    functools.update_wrapper(self, fn)

  def _get(self):
    if self._jitted is None:
      self._jitted = jax.jit(self._fn, compiler_options=cpu_compiler_options(), **self._kwargs)
    return self._jitted

  def __call__(self, *args, **kwargs):
    return self._get()(*args, **kwargs)

  def __getattr__(self, name):  # .lower, .trace, .eval_shape, ... of the jitted function
    return getattr(self._get(), name)
