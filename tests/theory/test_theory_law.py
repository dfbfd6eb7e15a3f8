"""The law's prediction for a trained run (theory item 12) against the set-mass law and hand values."""

import numpy as np
import pytest

from recall_theory import theory as th
from recall_theory.errors import InputError


def test_predicted_mass_is_the_set_mass_law_with_exact_ends():
  with th.float64():
    p = np.array([0.0, 1e-300, 1e-3, 0.5, 1.0])
    got = np.asarray(th.predicted_mass(p, 4.0))
    want = np.asarray(th.aligned_mass(p, 4.0, 1.0))
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert got[0] == 0.0 and got[-1] == 1.0
    assert np.asarray(th.predicted_mass([0.0, 0.3, 1.0], np.inf)).tolist() == [0.0, 1.0, 1.0]
    assert np.asarray(th.predicted_mass([0.0, 0.3, 1.0], -np.inf)).tolist() == [0.0, 0.0, 1.0]
    # (1 - 1e-3)^1000 = exp(1000 log1p(-1e-3)) = 0.367695...
    assert float(th.prob_no_target_sample(1e-3, 1000)) == pytest.approx(0.36769542, rel=1e-7)
    assert float(th.expected_target_samples(1e-3, 1000)) == pytest.approx(1.0)
  with pytest.raises(InputError, match="reference_recall"):
    th.predicted_mass(1.5, 1.0)
