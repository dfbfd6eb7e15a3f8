"""The Mixture-of-Gaussians tests run in float64, scoped to each module so other tracks keep float32."""

import jax
import pytest


@pytest.fixture(scope="module", autouse=True)
def float64_for_this_module():
  with jax.enable_x64(True):
    yield
