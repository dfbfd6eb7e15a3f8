"""The restricted vocabulary of the real-p* CPU experiment (issue 20)."""

import doctest

import numpy as np
import pytest

from recall_theory.errors import InputError
from recall_theory.lm.hub import vocab as vocab_lib
from recall_theory.lm.hub.vocab import RestrictedVocab


def test_module_example_runs():
  assert doctest.testmod(vocab_lib).failed == 0


def test_round_trip_of_scorable_sequences_and_the_unscorable_rate():
  rng = np.random.default_rng(0)
  pool = rng.choice([3, 17, 40, 41, 99], size=(50, 8))
  vocab = RestrictedVocab.from_pool(pool, full_size=100)
  assert vocab.kept.tolist() == [3, 17, 40, 41, 99] and vocab.size == 6
  small = vocab.to_small_ids(pool)
  assert small.max() < vocab.other and np.array_equal(vocab.to_full_ids(small), pool)
  fresh = np.array([[3, 5, 17], [40, 41, 99], [0, 1, 2]])   # 5, 0, 1, 2 were never in the pool
  small = vocab.to_small_ids(fresh)
  assert vocab.scorable(small).tolist() == [False, True, False]
  assert np.array_equal(vocab.to_full_ids(small[1:2]), fresh[1:2])
  with pytest.raises(ValueError, match="unscorable"):
    vocab.to_full_ids(small)
  assert "5 tokens of p*'s 100" in vocab.describe() and "token 5 standing for the other 95" in vocab.describe()


@pytest.mark.parametrize("pool, match", [
    (np.zeros((0, 4), int), "empty"),
    (np.array([[0.5, 1.0]]), "integers"),
    (np.array([[0, 100]]), r"\[0, 100\)"),
])
def test_bad_pools_are_named(pool, match):
  with pytest.raises(InputError, match=match):
    RestrictedVocab.from_pool(pool, full_size=100)
