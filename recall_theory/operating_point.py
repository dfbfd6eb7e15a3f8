"""Operating points chosen from the law: ``Delta/beta`` between two trap boundaries.

The optimum of the KL-regularised objective against a reference that keeps mass ``p`` on the
target set A puts ``sigmoid(logit p + Delta/beta)`` on A (theory.md item 12). It reaches 1/2
iff ``Delta/beta >= b(p)``, with the *trap boundary*

    b(p) = log((1 - p) / p).

An experiment that is to show the learning trap needs the aligned teacher ``A`` (reference
recall ``p_teacher``) to escape and ``K-A`` (reference recall ``p_student < p_teacher``) to stay
inside, i.e. ``Delta/beta`` in the *window* ``(b(p_teacher), b(p_student))``. The coefficient
that puts it at a fraction ``position`` of the way through the window is

    beta = Delta / (b(p_teacher) + position * (b(p_student) - b(p_teacher))).

For a binary reward (1 on A, 0 off it) ``Delta`` is 1 (RLOO/PG) or the Bradley-Terry scale
``c`` of DPO's labels, exactly; for a graded reward it is the soft-max gap measured under the
reference at the run's coefficient, so the division is a first-order choice that the run's own
summary checks (:func:`placement`).

Example::

  >>> w = window(p_teacher=0.031, p_student=0.0057)
  >>> round(w[0], 2), round(w[1], 2)
  (3.44, 5.16)
  >>> round(coefficient_for(1.0, p_teacher=0.031, p_student=0.0057), 3)
  0.232
"""

from __future__ import annotations

import dataclasses
import math

from recall_theory.errors import InputError


def trap_boundary(recall: float) -> float:
  """``log((1 - p)/p)``: the ``Delta/beta`` at which the optimum over a reference keeping
  ``p`` of A reaches 1/2 (``inf`` at ``p = 0``, ``-inf`` at ``p = 1``)."""
  p = float(recall)
  if not 0.0 <= p <= 1.0:
    raise InputError(f"recall must be in [0, 1], got {recall!r}")
  if p == 0.0:
    return math.inf
  if p == 1.0:
    return -math.inf
  return math.log1p(-p) - math.log(p)


def window(p_teacher: float, p_student: float) -> tuple[float, float]:
  """``(b(p_teacher), b(p_student))``: the ``Delta/beta`` where A escapes and K-A is trapped.

  Raises InputError when the teacher does not keep more of A than the student (no window).
  """
  low, high = trap_boundary(p_teacher), trap_boundary(p_student)
  if not low < high:
    raise InputError(f"no window: the teacher's recall {p_teacher:g} must exceed the student's "
                     f"{p_student:g}")
  return low, high


def coefficient_for(reward_gap: float, *, p_teacher: float, p_student: float,
                    position: float = 0.5) -> float:
  """The coefficient ``beta = Delta / (b_t + position (b_s - b_t))`` (module docstring)."""
  if not (math.isfinite(reward_gap) and reward_gap > 0):
    raise InputError(f"reward_gap must be finite and > 0, got {reward_gap!r}")
  if not 0.0 < position < 1.0:
    raise InputError(f"position must be in (0, 1), got {position!r}")
  low, high = window(p_teacher, p_student)
  if not math.isfinite(high):
    raise InputError("the student keeps none of the target: the window has no finite upper end")
  return reward_gap / (low + position * (high - low))


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where ``delta_over_beta`` sits against the window of ``(p_teacher, p_student)``.

  ``position``: 0 at the teacher's boundary, 1 at the student's (outside (0, 1): outside the
  window); ``inside``: strictly between the boundaries.
  """
  delta_over_beta: float
  teacher_boundary: float
  student_boundary: float
  position: float
  inside: bool

  def describe(self) -> str:
    """One sentence: the boundaries, the point, and where it sits."""
    where = ("inside the window (A escapes, K-A trapped)" if self.inside else
             "no window: the teacher keeps no more of the target than the student"
             if not self.teacher_boundary < self.student_boundary else
             "below the window: A is trapped too" if self.delta_over_beta <= self.teacher_boundary else
             "above the window: K-A is not trapped")
    return (f"trap boundaries log((1-p)/p): teacher {self.teacher_boundary:.2f}, student "
            f"{self.student_boundary:.2f}; Delta/beta = {self.delta_over_beta:.2f}, "
            + (f"{100 * self.position:.0f}% of the way through the window, " if self.inside else "")
            + where)


def placement(delta_over_beta: float, *, p_teacher: float, p_student: float) -> Placement:
  """:class:`Placement` of a measured or planned ``Delta/beta``; no window: ``inside`` False."""
  low, high = trap_boundary(p_teacher), trap_boundary(p_student)
  span = high - low
  position = ((delta_over_beta - low) / span if math.isfinite(span) and span > 0 else math.nan)
  inside = bool(low < delta_over_beta < high)
  return Placement(float(delta_over_beta), low, high, float(position), inside)


@dataclasses.dataclass(frozen=True)
class MeasuredRecalls:
  """The recalls (and reward gaps) a preset's coefficients were chosen from, with their source.

  ``reward_gap``: ``Delta`` per algorithm in the units the coefficient divides (DPO: the
  Bradley-Terry scale times the oracle reward's gap; RLOO: the oracle reward's gap).
  """
  teacher: float
  student: float
  reward_gap: dict
  source: str

  def coefficient(self, algorithm: str, position: float = 0.5) -> float:
    return coefficient_for(self.reward_gap[algorithm], p_teacher=self.teacher,
                           p_student=self.student, position=position)

  def placement(self, algorithm: str, coefficient: float) -> Placement:
    return placement(self.reward_gap[algorithm] / coefficient, p_teacher=self.teacher,
                     p_student=self.student)
