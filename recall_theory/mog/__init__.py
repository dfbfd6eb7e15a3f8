"""Mixture-of-Gaussians track: both pipelines, exact and trained, vmapped over seeds and beta.

Modules (one idea each): ``mixture`` (the distribution), ``em`` (EM fitting), ``moments``
(moment matching), ``tilt`` (closed-form Gibbs tilts), ``quadrature`` (the exact grid
reference), ``reward`` (oracle rewards and why), ``distill`` (the KD recipe), ``pg`` and
``dpo`` (trained alignment), ``metrics``, ``setup`` (p*, target, students), ``pipelines``
(K-A, A-K and variants), ``grid_run`` (vmapped, sharded grid), ``sweep`` (reference recall
sweep), ``figures``.
"""

from recall_theory.mog.mixture import (Mixture, make_mixture, log_prob, sample, entropy_mc,
                                       entropy_bounds, sharpen, with_temperature)
from recall_theory.mog.em import fit_em
from recall_theory.mog.moments import moment_match, mixture_moments
from recall_theory.mog.tilt import tilt_quadratic, tilt_linear
from recall_theory.mog.quadrature import make_grid, tilt_on_grid

__all__ = [
    "Mixture", "make_mixture", "log_prob", "sample", "entropy_mc", "entropy_bounds", "sharpen",
    "with_temperature", "fit_em", "moment_match", "mixture_moments", "tilt_quadratic", "tilt_linear",
    "make_grid", "tilt_on_grid",
]
