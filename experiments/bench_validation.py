"""Cost of argument validation: eager host checks, staged checks under plain jit, and
``checked`` (checkify) under jit, each as a ratio against the unvalidated baseline of the
same run. Run: ``python experiments/bench_validation.py`` (prints one line per case)."""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory import theory as th


def _time(fn, *args, repeats=30):
  jax.block_until_ready(fn(*args))  # compile / warm up
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    samples.append(time.perf_counter() - start)
  return statistics.median(samples)


def _jit_without_checks(fn):
  """jit traced with validation off: the checks are not even staged."""
  compiled = jax.jit(fn)

  def call(*args):
    with th.validation(False):
      return compiled(*args)
  return call


def main():
  key = jax.random.PRNGKey(0)
  cases = {}
  for n in (1_000, 100_000):
    p = jax.random.uniform(key, (n,))
    cases[f"aligned_mass n={n}"] = (th.aligned_mass, (p, jnp.float32(3.0), jnp.float32(0.5)))
    cases[f"kl_ceiling n={n}"] = (th.kl_ceiling, (p, jnp.float32(1.0)))
  log_ref = jax.nn.log_softmax(jax.random.normal(key, (1000, 64)))
  reward = jax.random.normal(key, (1000, 64))
  cases["gibbs [1000, 64]"] = (lambda lr, r, b: th.gibbs(lr, r, b)[0], (log_ref, reward, jnp.float32(0.3)))
  print(f"{'case':24s} {'eager off':>10s} {'eager on':>10s} {'ratio':>6s} | {'jit off':>10s} "
        f"{'jit staged':>10s} {'ratio':>6s} | {'checked':>10s} {'ratio':>6s}   (median seconds)")
  for name, (fn, args) in cases.items():
    with th.validation(False):
      eager_off = _time(fn, *args)
    eager_on = _time(fn, *args)
    jit_off = _time(_jit_without_checks(fn), *args)
    jit_on = _time(jax.jit(fn), *args)
    checked = _time(th.checked(fn), *args)
    print(f"{name:24s} {eager_off:10.2e} {eager_on:10.2e} {eager_on / eager_off:6.2f} | {jit_off:10.2e} "
          f"{jit_on:10.2e} {jit_on / jit_off:6.2f} | {checked:10.2e} {checked / jit_off:6.2f}")


if __name__ == "__main__":
  np.set_printoptions(precision=3)
  main()
