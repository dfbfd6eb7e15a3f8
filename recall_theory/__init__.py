"""recall-theory: the reference model's recall bounds what KL-regularized alignment can reach.

Tracks (one sub-package each, data flowing one way into ``plotting`` and ``cli``):

* ``recall_theory.theory``: closed-form, jitted, vmappable analyses (float64-capable).
* ``recall_theory.divergences``: forward/reverse KL, JSD, skew KL, TV, shared by all tracks.
* ``recall_theory.mog``: Mixture-of-Gaussians simulations of both pipelines.
* ``recall_theory.lm``: small Flax transformers reproducing the LLM result.
* ``recall_theory.plotting``: the figure style and phase plots.
* ``recall_theory.cli``: the ``recall-theory`` command.
"""

__version__ = "0.1.0"
