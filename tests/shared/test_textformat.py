"""Fixed-width scientific text by XLA: parses back to 9 significant digits, every magnitude."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recall_theory import textformat


def _texts(values, **kw):
  with jax.enable_x64(True):
    chars = np.asarray(textformat.format_scientific(jnp.asarray(values, jnp.float64), **kw))
  return [bytes(row).decode() for row in chars.reshape(-1, chars.shape[-1])]


def test_matches_printf_and_parses_back_everywhere():
  rng = np.random.default_rng(0)
  # every decade of normal float64, powers of ten and their neighbours, rounding carries
  values = np.concatenate([10 ** rng.uniform(-307.6, 308, 20_000), 10.0 ** np.arange(-300, 300),
                           np.nextafter(10.0 ** np.arange(-300, 300), 0), [9.999999999e5, 9.9999999996e-7,
                           2.2250738585072014e-308, 1.7976931348623157e308, 0.0, 0.5, 1.0]])
  texts = _texts(values, exp_digits=3)
  assert {len(t) for t in texts} == {textformat.field_width(3, False)}
  parsed = np.array([float(t) for t in texts])
  # within half a unit of the 9th significant digit (see the module docstring)
  nonzero = values > 0
  exponent = np.floor(np.log10(values[nonzero]))
  bound = 0.5 * 10.0 ** (exponent - 8) * (1 + 1e-6)
  assert np.all(np.abs(parsed[nonzero] - values[nonzero]) <= bound)
  assert parsed[~nonzero].tolist() == [0.0]
  # and identical to C's %.8e wherever the value is not within rounding noise of a tie
  printf = [f"{v:.8e}" for v in values]
  same = sum(a == b.replace("e+", "e+0").replace("e-", "e-0") if len(b) == 14 else a == b
             for a, b in zip(texts, printf))
  assert same >= 0.9999 * len(values)


def test_subnormals_are_flushed_to_zero_like_every_xla_result():
  # XLA on CPU flushes denormals (its computations never return one): text "0", not garbage
  assert _texts([5e-324, 1e-310], exp_digits=3) == ["0.00000000e+000", "0.00000000e+000"]


def test_two_digit_exponents_signs_and_shape():
  assert _texts([0.5, 1e-12, 123456789.0], exp_digits=2) == ["5.00000000e-01", "1.00000000e-12", "1.23456789e+08"]
  assert _texts([-0.25, 3.0], exp_digits=2, signed=True) == ["-2.50000000e-01", "+3.00000000e+00"]
  with jax.enable_x64(True):
    assert textformat.format_scientific(jnp.ones((2, 3)), exp_digits=2).shape == (2, 3, 14)


def test_block_flags_pick_the_layout():
  with jax.enable_x64(True):
    flags = lambda v: np.asarray(textformat.block_flags(jnp.asarray(v, jnp.float64))).tolist()
    assert flags([0.5, 1e-99, 9.99e99]) == [True, False, False]
    assert flags([1e-100]) == [True, True, False]
    assert flags([9.9999999999e99]) == [True, True, False]  # rounds up to 1.00000000e+100
    assert flags([-1.0, 0.0]) == [True, False, True]
    assert flags([np.nan, 1.0])[0] is False and flags([np.inf])[0] is False


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocks_with_nan_fall_back_to_python_text(tmp_path, dtype):
  """A block with a non-finite value is written by the Python formatter (inf/nan spelled out)."""
  from recall_theory import sweep
  with jax.enable_x64(dtype == "float64"):
    # values exactly representable in float32, so both dtypes print the same digits
    values = jnp.asarray(np.array([[[0.5, np.nan]], [[2 ** -10, 2 ** -9]], [[0.5, 0.625]], [[np.inf, 0.75]]]), dtype)
    block = sweep.Block("beta", 0, 0, 1, np.array([1.0]), np.array([2.0]), values)
    text = sweep.block_text(block, jnp.asarray([0.125, 0.25], dtype), "ipo")
  lines = text.tobytes().decode().splitlines()
  assert lines[0] == ("beta,ipo,1.25000000e-01,2.00000000e+00,1.00000000e+00,5.00000000e-01,5.00000000e-01,"
                      "9.76562500e-04,1.25000000e-01,5.00000000e-01,inf")
  assert lines[1].split(",")[6] == "nan"
