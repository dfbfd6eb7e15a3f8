"""recall_theory.xla_cpu: CPU compile options that change which code runs, never the result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory import xla_cpu


@pytest.fixture
def fresh_probe():
  xla_cpu.cpu_compiler_options.cache_clear()
  yield
  xla_cpu.cpu_compiler_options.cache_clear()


def test_cpu_gets_the_option_and_the_same_numbers(fresh_probe):
  assert jax.default_backend() == "cpu"
  assert xla_cpu.cpu_compiler_options() == {xla_cpu.YNN_FUSION_OPTION: ""}
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 1001, 4), jnp.float64)

  def f(a):  # a reduction over the middle axis, the kind the option is for
    return jnp.sum(jnp.exp(-a ** 2) * a, axis=1)
  np.testing.assert_allclose(xla_cpu.jit(jax.vmap(jax.grad(lambda a: f(a).sum())))(x),
                             jax.jit(jax.vmap(jax.grad(lambda a: f(a).sum())))(x), rtol=1e-13)


def test_an_xla_without_the_option_gets_plain_jit(fresh_probe, monkeypatch):
  monkeypatch.setattr(xla_cpu, "NO_LIBRARY_FUSIONS", {"xla_cpu_no_such_option_anywhere": ""})
  assert xla_cpu.cpu_compiler_options() is None
  np.testing.assert_allclose(xla_cpu.jit(lambda a: a * 2)(jnp.arange(3.0)), [0.0, 2.0, 4.0])


def test_other_backends_get_no_options(fresh_probe, monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert xla_cpu.cpu_compiler_options() is None
