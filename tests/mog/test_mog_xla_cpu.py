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


def _middle_axis_sum(a_BxNxK):  # the reduction the option is for: (runs, points, components) -> (runs, components)
  return jnp.sum(jnp.exp(-a_BxNxK ** 2) * a_BxNxK, axis=1)


def test_the_option_removes_library_fusions_and_keeps_the_numbers(fresh_probe):
  if jax.default_backend() != "cpu" or xla_cpu.cpu_compiler_options() is None:
    pytest.skip("not a CPU backend whose XLA knows the option")
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 1001, 4), jnp.float64)
  plain = jax.jit(_middle_axis_sum)
  package = xla_cpu.jit(_middle_axis_sum)
  plain_hlo = plain.lower(x).compile().as_text()
  package_hlo = package.lower(x).compile().as_text()
  if "ynn_fusion" not in plain_hlo:
    pytest.skip("this XLA makes no library fusion of the reduction: nothing to switch off")
  assert "ynn_fusion" not in package_hlo
  np.testing.assert_allclose(package(x), plain(x), rtol=1e-13)


def test_an_xla_without_the_option_gets_plain_jit(fresh_probe, monkeypatch):
  monkeypatch.setattr(xla_cpu, "NO_LIBRARY_FUSIONS", {"xla_cpu_no_such_option_anywhere": ""})
  assert xla_cpu.cpu_compiler_options() is None
  np.testing.assert_allclose(xla_cpu.jit(lambda a: a * 2)(jnp.arange(3.0)), [0.0, 2.0, 4.0])


def test_other_backends_get_no_options(fresh_probe, monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert xla_cpu.cpu_compiler_options() is None


def test_importing_a_decorated_module_does_not_start_jax():
  """xla_cpu.jit builds its jax.jit at the first call (compute_match decorates at import)."""
  import subprocess
  import sys
  code = ("import jax; from jax._src import xla_bridge; import recall_theory.mog.compute_match; "
          "assert not xla_bridge.backends_are_initialized(), 'backend started at import'")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
