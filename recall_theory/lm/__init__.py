"""Transformer track: K-A (distil then align) vs A-K (align then distil) with Flax NNX.

Modules (one idea each):

* :mod:`~recall_theory.lm.model`: Llama-style decoder (RMSNorm, rotary, GQA, SwiGLU, tied
  head) with a key-value cache; loads Llama-family checkpoints unchanged.
* :mod:`~recall_theory.lm.sampling`: greedy / temperature / top-p generation, cached or
  full-prefix recompute.
* :mod:`~recall_theory.lm.groundtruth`: p* with exact log-likelihoods and oracle reward,
  behind the :class:`GroundTruth` protocol (a pretrained model can stand in):

    prompt: int32 [P]; seq_len: T; vocab_size: V
    sample(key, n) -> tokens int32 [n, P + T]   (prompt included)
    log_prob(tokens) -> [n]  log p*(continuation | prompt)
    reward(tokens) -> [n] in [0, 1]
    shows_target(tokens) -> [n] bool
    target_log_prob(tokens) -> [n]   (optional)

* :mod:`~recall_theory.lm.losses`: loss factories (MLE / sequence KD, token KD with
  forward KL / reverse KL / JSD, DPO, IPO, SimPO, RLOO).
* :mod:`~recall_theory.lm.train`: the one jitted train step; :mod:`~.sharding`: the
  (data, fsdp) mesh; :mod:`~.checkpoint`: Orbax stage checkpoints with resume.
* :mod:`~recall_theory.lm.pipeline`: teacher, student, K-A, A-K, control;
  :mod:`~.metrics`: exact-likelihood metrics; :mod:`~.report`: table and figure;
  :mod:`~.presets`: ``cpu-tiny``, ``gpu``, ``test``.
"""

import importlib

# Exported names load on first use (PEP 562): importing a light submodule such as
# recall_theory.lm.distributed (every command line builds its parser with it) must not
# pull in flax and the model (measure with
# `python3 -X importtime -c "import recall_theory.cli.main as m; m.build_parser()"`).
_EXPORTS = {
    "GroundTruth": "groundtruth", "MarkovMixture": "groundtruth",
    "MarkovMixtureConfig": "groundtruth",
    "KVCache": "model", "ModelConfig": "model", "Transformer": "model", "init_cache": "model",
    "ExperimentConfig": "pipeline", "Runner": "pipeline", "StageConfig": "pipeline",
    "run_comparison": "pipeline",
    "generate": "sampling",
}


def __getattr__(name: str):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ExperimentConfig",
    "GroundTruth",
    "KVCache",
    "MarkovMixture",
    "MarkovMixtureConfig",
    "ModelConfig",
    "Runner",
    "StageConfig",
    "Transformer",
    "generate",
    "init_cache",
    "run_comparison",
]
