"""Input validation shared by every track, eager and under ``jit``/``vmap``.

Every check is one predicate with one message, evaluated on whichever side holds the
values:

* **concrete** arguments (eager calls, the CLI): checked on the host before anything is
  traced; a bad argument raises :class:`InputError` naming it and its allowed range.
* **traced** arguments (inside ``jax.jit`` / ``jax.vmap`` / ``lax.map``): the same
  predicate is staged as a ``jax.experimental.checkify.check`` in *debug* mode. Under
  :func:`checked` (``checkify.checkify`` + ``jit``) it is functionalised and the call
  raises the same :class:`InputError`, with the same message, as the eager call::

      safe = errors.checked(jax.vmap(theory.aligned_mass))
      safe(jnp.array([0.1, -0.1]), 1.0, 1.0)   # InputError: recall must lie in [0, 1], got -0.1

  Under a plain ``jit``/``vmap`` the check raises nothing; instead a function wrapped in
  :func:`nan_on_invalid` returns NaN wherever an argument is invalid (the convention of
  ``jax.scipy``): an invalid input never yields a plausible number. The predicate's mask
  is what selects the NaN, so the rule is the same one the eager check applies.

Cost (``python experiments/bench_validation.py`` prints it as ratios against the same run's
unvalidated baseline): host checks copy each argument to the host once per eager call;
``checked`` adds an error-state output and a reduction per check to the compiled
program; a plain ``jit`` keeps each check's mask and one select per output (the NaN).
Hot paths opt out with ``with errors.validation(False): ...`` (read at call and trace
time: a function jitted while validation was on keeps its staged checks).

The command line turns :class:`InputError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from typing import Any, Callable, Iterable

import numpy as np


class InputError(ValueError):
  """A user-supplied argument is outside its allowed range."""


class TrainingDivergedError(RuntimeError):
  """A training run produced a non-finite value; the message names step and quantity."""


# ------------------------------------------------------------------ the error channel
_VALIDATION = {"enabled": True}


def validation_enabled() -> bool:
  """Whether argument checks run (default True; see :func:`validation`)."""
  return _VALIDATION["enabled"]


@contextlib.contextmanager
def validation(enabled: bool):
  """Context that switches every argument check on or off (hot paths: ``False``).

  Read when a function is called eagerly and when it is traced; restored on exit.
  """
  previous = _VALIDATION["enabled"]
  _VALIDATION["enabled"] = bool(enabled)
  try:
    yield
  finally:
    _VALIDATION["enabled"] = previous


_CHECKIFY_SUFFIX = re.compile(r" \((`check` failed|check failed at .*)\)$", re.DOTALL)


def checked(fn: Callable, *, jit: bool = True, **jit_kwargs) -> Callable:
  """``fn`` with its staged argument checks functionalised (``checkify``), jitted.

  A call whose (concrete) arguments violate a check raises :class:`InputError` with the
  message an eager call gives, whether ``fn`` is a library function, its ``jax.vmap``,
  or any jittable composition of them. ``jit_kwargs`` go to ``jax.jit``. Without
  ``static_argnums``/``static_argnames`` there, arguments that are Python ``int``,
  ``bool``, ``str`` or ``None`` (``axis=-1``, ``num_angles=101``) are held static: one
  compilation per distinct value, as ``jax.jit`` would need them to be.

  Example:
    >>> safe = checked(jax.vmap(theory.bernoulli_kl))
    >>> safe(jnp.array([0.2, 2.0]), jnp.array([0.3, 0.3]))   # InputError: a must lie in [0, 1], got 2
  """
  import jax
  from jax.experimental import checkify

  def stage(target):
    staged = checkify.checkify(target)
    return jax.jit(staged, **jit_kwargs) if jit else staged

  def run(staged, args, kwargs):
    error, out = staged(*args, **kwargs)
    message = error.get()
    if message is not None:
      raise InputError(_CHECKIFY_SUFFIX.sub("", message.strip()))
    return out

  if not jit or {"static_argnums", "static_argnames"} & jit_kwargs.keys():
    staged = stage(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
      return run(staged, args, kwargs)

    return call

  compiled: dict = {}

  @functools.wraps(fn)
  def call_static(*args, **kwargs):
    fixed = {i: a for i, a in enumerate(args) if _static(a)}
    fixed_kw = {k: v for k, v in kwargs.items() if _static(v)}
    key = (len(args), tuple((i, type(a), a) for i, a in fixed.items()),
           tuple(sorted((k, type(v).__name__, v) for k, v in fixed_kw.items())))
    if key not in compiled:
      def bound(*free, **free_kw):
        rest = iter(free)
        full = [fixed[i] if i in fixed else next(rest) for i in range(len(args))]
        return fn(*full, **free_kw, **fixed_kw)

      compiled[key] = stage(bound)
    free = [a for i, a in enumerate(args) if i not in fixed]
    return run(compiled[key], free, {k: v for k, v in kwargs.items() if k not in fixed_kw})

  return call_static


def _static(value: Any) -> bool:
  """Python scalars jit cannot trace as an axis or a count: held static by :func:`checked`."""
  return value is None or isinstance(value, (bool, int, str))


# Masks of the invalid entries found by traced checks, one list per open call of a
# function wrapped in nan_on_invalid (innermost last).
_INVALID: list[list] = []


def nan_on_invalid(fn: Callable | None = None, *, elementwise: bool = False) -> Callable:
  """Make ``fn`` return NaN, under ``jit``/``vmap``, where its traced argument checks fail.

  Each :func:`require` staged while ``fn`` traces contributes its mask of bad entries;
  every floating output is replaced by NaN where any mask holds. With ``elementwise``
  (outputs broadcast from the arguments, as for the closed forms) a mask that
  broadcasts to an output marks only its own entries; otherwise any bad entry makes the
  whole output of the call NaN (under ``vmap``, of that batch element). Eager calls are
  unchanged (they raise first), and so is everything inside ``validation(False)``.
  """
  if fn is None:
    return functools.partial(nan_on_invalid, elementwise=elementwise)

  @functools.wraps(fn)
  def call(*args, **kwargs):
    _INVALID.append([])
    try:
      out = fn(*args, **kwargs)
    finally:
      masks = _INVALID.pop()
    return _poison(out, masks, elementwise) if masks else out

  return call


def _poison(out, masks, elementwise):
  import jax
  import jax.numpy as jnp

  def leaf(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      return x
    bad = functools.reduce(jnp.logical_or, [_fit(m, x.shape, elementwise) for m in masks])
    return jnp.where(bad, jnp.nan, x)

  return jax.tree_util.tree_map(leaf, out)


def _fit(mask, shape, elementwise):
  """``mask`` where it lines up with an output of ``shape`` entry by entry, else its any()."""
  import jax.numpy as jnp
  if elementwise and mask.ndim <= len(shape):
    try:
      if np.broadcast_shapes(mask.shape, shape) == tuple(shape):
        return mask
    except ValueError:
      pass
  return jnp.any(mask)


def _is_concrete(value: Any) -> bool:
  """False for jax tracers (values unknown until run: checks are staged instead)."""
  try:
    import jax.core
    return not isinstance(value, jax.core.Tracer)
  except ImportError:  # pragma: no cover
    return True


def _shown(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 60 else text[:57] + "..."


def _check_dtype(name: str, dtype, value: Any) -> None:
  """Real numbers only: a string, an object or a complex number is refused by name (a
  complex one would otherwise lose its imaginary part to a cast)."""
  import jax.numpy as jnp
  if jnp.issubdtype(dtype, jnp.complexfloating):
    raise InputError(f"{name} must be real, got complex {_shown(value)}")
  if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
    raise InputError(f"{name} must be a real number or array of them, got {_shown(value)}")


def _as_array(name: str, value: Any) -> np.ndarray:
  """``value`` on the host: float arrays as they are (no copy into float64: one pass less
  per check on large inputs), any other real dtype converted to float64."""
  try:
    arr = np.asarray(value)
  except (TypeError, ValueError) as err:
    raise InputError(f"{name} must be a real number or array of them, got {_shown(value)}") from err
  _check_dtype(name, arr.dtype, value)
  if arr.dtype.kind != "f" or arr.dtype.itemsize < 4:
    arr = arr.astype(np.float64)
  return arr


def require(value: Any, name: str, is_bad: Callable, message: str, *, nan: bool = True) -> None:
  """Raise ``InputError(message.format(first bad entry))`` if ``is_bad(xp, x)`` holds anywhere.

  ``is_bad(xp, x)`` is a predicate written once for both numpy (``xp = np``, concrete
  values, float64 on the host) and ``jax.numpy`` (traced values, staged as a debug
  ``checkify.check``); it returns a mask broadcastable with x, or ``(mask, shown)`` when
  the value to report is not x's entry (e.g. a row's logsumexp). ``message`` may hold one
  ``{:g}``-style field for that value.

  Traced, the mask also goes to the innermost open call of a :func:`nan_on_invalid`
  function (unless ``nan=False``), which returns NaN where it holds.
  """
  if not validation_enabled():
    return
  if _is_concrete(value):
    arr = _as_array(name, value)
    bad, shown = _bad_and_shown(is_bad(np, arr), arr, np)
    if bad.any():
      raise InputError(message.format(shown[bad].ravel()[0]))
    return
  import jax.numpy as jnp
  from jax.experimental import checkify

  x = jnp.asarray(value)
  _check_dtype(name, x.dtype, value)
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    x = x.astype(jnp.result_type(float))
  bad, shown = _bad_and_shown(is_bad(jnp, x), x, jnp)
  if bad.size == 0:
    return
  if nan and _INVALID:
    _INVALID[-1].append(bad)
  first = jnp.ravel(shown)[jnp.argmax(jnp.ravel(bad))]
  checkify.check(~jnp.any(bad), message, first, debug=True)


def _bad_and_shown(result, x, xp):
  """``is_bad`` returns a mask (the offending value is x's entry) or (mask, values shown)."""
  bad, shown = result if isinstance(result, tuple) else (result, x)
  bad = xp.asarray(bad).astype(bool)
  return bad, xp.broadcast_to(shown, bad.shape)


def _nan(xp, x):
  return xp.isnan(x)


def check_probability(name: str, value: Any) -> None:
  """Raise unless every entry of ``value`` lies in [0, 1] and none is NaN."""
  require(value, name, _nan, f"{name} must not contain NaN")
  require(value, name, lambda xp, x: (x < 0) | (x > 1), f"{name} must lie in [0, 1], got {{:g}}")


def check_positive(name: str, value: Any, *, allow_inf: bool = False) -> None:
  """Raise unless every entry of ``value`` is > 0 (and finite unless allow_inf)."""
  require(value, name, _nan, f"{name} must not contain NaN")
  require(value, name, lambda xp, x: x <= 0, f"{name} must be > 0, got {{:g}}")
  if not allow_inf:
    require(value, name, lambda xp, x: xp.isinf(x), f"{name} must be finite (0 < {name} < inf)")


def check_nonnegative(name: str, value: Any) -> None:
  """Raise unless every entry of ``value`` is >= 0 and finite."""
  require(value, name, _nan, f"{name} must not contain NaN")
  require(value, name, lambda xp, x: x < 0, f"{name} must be >= 0, got {{:g}}")
  require(value, name, lambda xp, x: xp.isinf(x), f"{name} must be finite")


def check_not_nan(name: str, value: Any) -> None:
  """Raise if ``value`` has NaN entries (+-inf allowed)."""
  require(value, name, _nan, f"{name} must not contain NaN")


def check_finite(name: str, value: Any) -> None:
  """Raise if ``value`` has NaN or +-inf entries."""
  require(value, name, _nan, f"{name} must not contain NaN")
  require(value, name, lambda xp, x: xp.isinf(x), f"{name} must be finite (no NaN or inf)")


def check_normal(name: str, value: Any) -> None:
  """Raise if a nonzero entry is below the smallest normal number of the dtype the
  computation will use (XLA flushes subnormals to zero, so float32 1e-40 would become 0),
  or a finite entry overflows that dtype (float32 1e300 would become inf).

  Traced values are tested on their bits (exponent field 0, mantissa not), since any
  arithmetic comparison already sees a subnormal as 0.
  """
  if not validation_enabled():
    return
  import jax
  import jax.numpy as jnp

  if _is_concrete(value):
    _as_array(name, value)  # real and numeric, else named
    # the dtype jax will compute in (float64 becomes float32 without x64)
    dtype = jax.dtypes.canonicalize_dtype(np.asarray(value).dtype)
    if not jnp.issubdtype(dtype, jnp.inexact):
      dtype = jnp.result_type(float)
  else:
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.floating):
      return
  tiny = float(jnp.finfo(dtype).tiny)
  hint = ("use float64 (jax_enable_x64 or `with recall_theory.theory.float64():`)"
          if np.dtype(dtype).itemsize < 8 else "it is subnormal")
  message = (f"{name} = {{:g}} is below the smallest normal {np.dtype(dtype).name} ({tiny:g}) "
             f"and would be flushed to zero; {hint}")
  if _is_concrete(value):
    # shown as the computation will see it (float32 1e-40 is 9.99995e-41), as under jit
    arr = np.abs(_as_array(name, value))
    bad = (arr > 0) & (arr < tiny)
    if bad.any():
      with np.errstate(over="ignore"):
        stored = arr[bad].ravel()[:1].astype(np.dtype(dtype)).astype(np.float64)
      raise InputError(message.format(stored[0]))
    huge = (arr > float(jnp.finfo(dtype).max)) & np.isfinite(arr) if arr.dtype.itemsize > np.dtype(dtype).itemsize else None
    if huge is not None and huge.any():
      raise InputError(f"{name} = {arr[huge].ravel()[0]:g} overflows {np.dtype(dtype).name} "
                       f"(largest {float(jnp.finfo(dtype).max):g}); use float64")
    return
  nbits = np.dtype(dtype).itemsize * 8
  int_type = {16: jnp.int16, 32: jnp.int32, 64: jnp.int64}[nbits]
  n_mantissa = jnp.finfo(dtype).nmant
  mantissa_mask = (1 << n_mantissa) - 1
  exponent_mask = ((1 << (nbits - 1)) - 1) & ~mantissa_mask

  def subnormal(xp, x):
    bits = jax.lax.bitcast_convert_type(x, int_type)
    return ((bits & exponent_mask) == 0) & ((bits & mantissa_mask) != 0)

  # under jit a subnormal reads as 0, the answer an exact 0 gets: not made NaN
  require(value, name, subnormal, message, nan=False)


def check_int_range(name: str, value: Any, low: int, high: float = math.inf) -> int:
  """Return ``value`` as int if low <= value <= high, else raise (5.0 is taken as 5)."""
  try:
    whole = not isinstance(value, (bool, str, bytes)) and float(value).is_integer()
  except (TypeError, ValueError, OverflowError):
    whole = False
  if not whole:
    raise InputError(f"{name} must be an integer in [{low}, {high}], got {_shown(value)}")
  value = int(value)
  if not low <= value <= high:
    raise InputError(f"{name} must be an integer in [{low}, {high}], got {value}")
  return value


def check_broadcastable(**arrays: Any) -> tuple[int, ...]:
  """Return the broadcast shape of the named arrays or raise naming them."""
  shapes = {k: np.shape(v) for k, v in arrays.items()}
  try:
    return np.broadcast_shapes(*shapes.values())
  except ValueError as err:
    desc = ", ".join(f"{k}{list(s)}" for k, s in shapes.items())
    raise InputError(f"shapes do not broadcast: {desc}") from err


def check_same_shape(**arrays: Any) -> None:
  """Raise unless all named arrays have identical shapes."""
  shapes = {k: np.shape(v) for k, v in arrays.items()}
  if len(set(shapes.values())) > 1:
    desc = ", ".join(f"{k}{list(s)}" for k, s in shapes.items())
    raise InputError(f"shapes must match: {desc}")


# -- numbers a dtype can hold, lists without repeats (flags and configs alike) ------------
def normal_range(dtype: str) -> tuple[float, float]:
  """``(smallest normal, largest finite)`` of a float dtype name."""
  info = np.finfo(dtype)
  return float(info.tiny), float(info.max)


def check_representable(flag: str, values, dtype: str) -> None:
  """Refuse a nonzero value outside the normal range of ``dtype``.

  XLA flushes subnormals to zero and a value above the largest float becomes inf: either
  way the computation would see another number and write NaN or a plausible wrong one.
  """
  tiny, huge = normal_range(dtype)
  for value in np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel().tolist():
    if not math.isfinite(value):
      raise InputError(f"{flag} must be finite, got {value!r}")
    if value != 0 and abs(value) < tiny:
      raise InputError(f"{flag} = {value!r} is below the smallest normal {dtype} ({tiny!r}) and "
                       f"would be flushed to zero; the smallest usable nonzero value is {tiny!r}")
    if abs(value) > huge:
      hint = "; use --dtype float64" if np.dtype(dtype).itemsize < 8 else ""
      raise InputError(f"{flag} = {value!r} overflows {dtype}: it must be <= {huge:g}{hint}")


def check_distinct(flag: str, names: Iterable) -> None:
  """Refuse a list that names an entry twice (it would write every row twice)."""
  seen, twice = set(), []
  for name in names:
    if name in seen and name not in twice:
      twice.append(name)
    seen.add(name)
  if twice:
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in twice)
    raise InputError(f"{flag} must list each entry once, got {shown} more than once")
