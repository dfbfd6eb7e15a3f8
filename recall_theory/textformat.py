"""Fixed-width decimal text of float arrays, computed by XLA: CSV writers that keep up.

Formatting ten million floats with Python (``repr``, ``csv``, pandas' ``to_csv``) costs
about a microsecond each; here every value becomes the same-width scientific text

    d.dddddddde+XX      (9 significant digits, width 14; ``e+XXX`` when |exponent| >= 100)

by vectorised float arithmetic inside one jitted program, so a table of N rows is a
``uint8 [N, width]`` array written to disk in one call. Fixed width means no
compaction pass: every row of a block has the same byte layout. The text parses back
(``float``, pandas, ``numpy.loadtxt``) to within half a unit of the 9th digit:

    |float(text) - x| <= 0.5 * 10^(e - 8) * (1 + 1e-6),   e = floor(log10 |x|)

(the decimal scale ``10^(8 - e)`` is applied as two float64 powers of ten, a relative
error of a few ulp before rounding to the integer mantissa).

Only finite values are handled here; :func:`block_flags` tells the caller when a block
holds NaN/inf (format that block another way) or needs a sign or 3-digit exponent.

Example::

  >>> chars = np.asarray(format_scientific(jnp.array([0.5, 1.25e-300]), exp_digits=3))
  >>> [bytes(row).decode() for row in chars]
  ['5.00000000e-001', '1.25000000e-300']
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SIGNIFICANT_DIGITS = 9
_POW10_OFFSET = 200
# 10^k for k in [-200, 200]; two factors cover the scale 10^(8 - e) for any float64 e.
_POW10 = np.power(10.0, np.arange(-_POW10_OFFSET, _POW10_OFFSET + 1, dtype=np.float64))
_ZERO, _DOT, _E, _PLUS, _MINUS = (ord(c) for c in "0.e+-")


def field_width(exp_digits: int, signed: bool) -> int:
  """Characters of one formatted value: [sign] d . 8 digits e sign exponent."""
  return int(signed) + 1 + 1 + (SIGNIFICANT_DIGITS - 1) + 2 + exp_digits


def _mantissa_exponent(values):
  """``(m, e)`` float64 with ``|x| ~= m 10^(e-8)``, m an integer in [1e8, 1e9) (0 for x = 0)."""
  pow10 = jnp.asarray(_POW10)
  magnitude = jnp.abs(values).astype(jnp.float64)
  nonzero = magnitude > 0
  exponent = jnp.floor(jnp.log10(jnp.where(nonzero, magnitude, 1.0)))

  def scaled(exp):  # round(|x| 10^(8 - exp)), the scale split so that no factor over/underflows
    shift = (SIGNIFICANT_DIGITS - 1 - exp).astype(jnp.int32)
    half = shift // 2
    return jnp.rint(magnitude * pow10[half + _POW10_OFFSET] * pow10[shift - half + _POW10_OFFSET])

  mantissa = scaled(exponent)
  # log10 can be off by one next to powers of ten, and rounding can carry to 10^9.
  top = 10.0 ** SIGNIFICANT_DIGITS
  exponent = jnp.where(mantissa >= top, exponent + 1,
                       jnp.where(nonzero & (mantissa < top / 10), exponent - 1, exponent))
  mantissa = scaled(exponent)
  return jnp.where(nonzero, mantissa, 0.0), jnp.where(nonzero, exponent, 0.0)


def scientific_chars(values, *, exp_digits: int = 2, signed: bool = False) -> list[jax.Array]:
  """The characters of ``values`` (finite, any shape) as a list of ``uint8`` arrays of that shape.

  Digits come from exact float64 arithmetic on the integer mantissa ``m < 1e9``
  (``floor(m / 10^k)`` of an exactly representable integer is exact). Returned as
  separate arrays so that XLA computes the shared mantissa once for all characters.
  """
  mantissa, exponent = _mantissa_exponent(values)
  quotients = [jnp.floor(mantissa / 10.0 ** k) for k in range(SIGNIFICANT_DIGITS)]
  digits = [quotients[k] - 10.0 * quotients[k + 1] for k in range(SIGNIFICANT_DIGITS - 1)]
  digits = (digits + [quotients[-1]])[::-1]  # most significant first
  abs_exp = jnp.abs(exponent)
  exp_digits_list = [jnp.floor(abs_exp / 10.0 ** k) - 10.0 * jnp.floor(abs_exp / 10.0 ** (k + 1))
                     for k in reversed(range(exp_digits))]
  char = lambda v: (v + _ZERO).astype(jnp.uint8)
  const = lambda c: jnp.full(mantissa.shape, c, jnp.uint8)
  out = []
  if signed:
    out.append(jnp.where(values < 0, _MINUS, _PLUS).astype(jnp.uint8))
  out += [char(digits[0]), const(_DOT)] + [char(d) for d in digits[1:]]
  out += [const(_E), jnp.where(exponent < 0, _MINUS, _PLUS).astype(jnp.uint8)]
  out += [char(d) for d in exp_digits_list]
  return out


def format_scientific(values, *, exp_digits: int = 2, signed: bool = False) -> jax.Array:
  """``uint8 [*values.shape, field_width]``: the text of each finite value (see module doc)."""
  chars = lax.optimization_barrier(scientific_chars(values, exp_digits=exp_digits, signed=signed))
  return jnp.stack(chars, axis=-1)


def block_flags(values) -> jax.Array:
  """``bool [3]``: (all finite, any |exponent| >= 100, any negative) of a block of values.

  The caller picks ``exp_digits = 3`` and ``signed`` from the last two (a static choice,
  so a block compiles at most four format variants) and formats non-finite blocks by
  another route.
  """
  magnitude = jnp.abs(values)
  positive = magnitude > 0
  if float(jnp.finfo(magnitude.dtype).max) < 1e100:  # float32 and narrower: no 3-digit exponent
    # exists (the constants would not even fit the dtype: casting them overflows)
    big_exp = jnp.zeros((), bool)
  else:
    big_exp = jnp.any(positive & ((magnitude >= 9.9999999995e99) | (magnitude < 1e-99)))
  return jnp.stack([jnp.all(jnp.isfinite(values)), big_exp, jnp.any(values < 0)])


def format_with_python(values: np.ndarray) -> np.ndarray:
  """Reference formatting (``'%.8e'``, any value incl. NaN/inf): an object array of str."""
  return np.array([f"{float(v):.{SIGNIFICANT_DIGITS - 1}e}" for v in np.ravel(values)],
                  dtype=object).reshape(np.shape(values))
