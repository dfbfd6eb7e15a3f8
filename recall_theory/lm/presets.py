"""Named experiment sizes for ``recall-theory lm --preset NAME``.

* ``cpu-tiny``: the whole comparison (teacher, student, K-A, A-K, control; DPO and
  RLOO; 3 seeds) on 2 CPU cores, every alignment stage trained to its plateau.
* ``gpu``: a larger language (more tokens, longer sequences, rarer target) and ~20x
  larger models for one modern GPU (its plateau budgets have not been run on a GPU yet).
* ``test``: a seconds-long run for the test suite (too small to show the effect).

Every alignment stage trains until the plateau rule of :mod:`recall_theory.plateau` holds
(held-out objective and aligned mass steady over a doubling of the steps) or until its
budget ``steps`` runs out; rows say which (``plateau`` column).

Operating point, chosen from the law (theory.md item 12; :mod:`recall_theory.operating_point`):
each algorithm's coefficient (``beta`` for DPO and SimPO with Bradley-Terry scale ``bt_scale``,
``ipo_beta``, ``rloo_beta``) puts its ``Delta/beta`` inside the window between the teacher's trap
boundary ``log((1 - p_teacher)/p_teacher)`` and the student's at the default tau, so A escapes
the learning trap and K-A sits inside it. :data:`MEASURED` holds the recalls and reward gaps
each preset's coefficients rest on, with the committed run they were measured in; the gpu
preset's coefficients are derived from them (the window's midpoint), cpu-tiny's were set by hand
and sit 72% of the way through its window (a test checks both). ``lm_summary.md`` of every run
states the recalls, boundaries and ``Delta/beta`` it measured itself, and warns when they put
the point outside the window (:func:`report.operating_point`).
"""

from __future__ import annotations

import dataclasses

from recall_theory.errors import InputError
from recall_theory.lm.groundtruth import MarkovMixtureConfig
from recall_theory.lm.model import ModelConfig
from recall_theory.lm.pipeline import ExperimentConfig, StageConfig
from recall_theory.operating_point import MeasuredRecalls
from recall_theory.plateau import PlateauRule

# What each preset's operating point rests on: the teacher's and the student's target share and
# the reward gap Delta under the student, per algorithm, in the units its coefficient divides
# (DPO: Bradley-Terry scale c = 10 times the oracle reward's soft-max gap), from committed runs.
MEASURED = {
    "cpu-tiny": MeasuredRecalls(teacher=0.02966, student=0.002197,
                                reward_gap={"dpo": 9.699, "rloo": 0.9699},
                                source="figures/lm/lm_results.csv"),
    "gpu": MeasuredRecalls(teacher=0.03894, student=0.01813,
                           reward_gap={"dpo": 9.996, "rloo": 0.9996},
                           source="figures/lm/gpu/lm_results.csv"),
}

_CPU_GT = MarkovMixtureConfig(vocab_size=24, seq_len=12, n_styles=4, target_weight=0.05,
                              common_concentration=0.08, target_concentration=0.08, leak=0.01,
                              noise_weight=0.02)

# Plateau rules of the alignment stages (recall_theory.plateau). A preference loss is in nats per
# pair and moves little (most pairs carry no target sequence); J/beta is in nats per sequence and
# keeps improving slowly long after the mass has settled (the policy refines its distribution
# within and outside A), so its tolerance is wider. RLOO's learning rate stays constant for 256
# steps before it decays.
_PAIR_PLATEAU = PlateauRule(first_check=64, objective_tolerance=2e-3)
_POLICY_PLATEAU = PlateauRule(first_check=256, objective_tolerance=0.1)

CPU_TINY = ExperimentConfig(
    groundtruth=_CPU_GT,
    teacher=ModelConfig(vocab_size=24, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                        max_seq_len=16),
    student=ModelConfig(vocab_size=24, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64,
                        max_seq_len=16),
    teacher_train=StageConfig(steps=600, batch_size=64, learning_rate=3e-3, warmup_steps=20),
    student_train=StageConfig(steps=900, batch_size=64, learning_rate=3e-3, warmup_steps=20),
    tau=0.6,
    distill_samples=4096,
    algorithms=("dpo", "rloo"),
    preference_train=StageConfig(steps=2048, batch_size=128, learning_rate=1e-4, warmup_steps=10,
                                 plateau=_PAIR_PLATEAU),
    n_pairs=16384,
    heldout_pairs=2048,
    beta=1.8,
    ipo_beta=0.1,
    bt_scale=10.0,
    rloo_train=StageConfig(steps=2048, batch_size=64, learning_rate=1e-3, warmup_steps=10,
                           plateau=_POLICY_PLATEAU),
    rloo_beta=0.18,
    rloo_group=64,
    eval_samples=2048,
    reference_samples=16384,
    checkpoint_every=50,
)

_GPU_GT = MarkovMixtureConfig(vocab_size=64, seq_len=32, n_styles=6, target_weight=0.04,
                              common_concentration=0.05, target_concentration=0.05, leak=0.005,
                              noise_weight=0.02)

GPU = ExperimentConfig(
    groundtruth=_GPU_GT,
    teacher=ModelConfig(vocab_size=64, d_model=384, n_layers=6, n_heads=6, n_kv_heads=2,
                        d_ff=1024, max_seq_len=64, dtype="bfloat16"),
    student=ModelConfig(vocab_size=64, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2,
                        d_ff=384, max_seq_len=64, dtype="bfloat16"),
    teacher_train=StageConfig(steps=2000, batch_size=256, learning_rate=1e-3, warmup_steps=100),
    student_train=StageConfig(steps=1200, batch_size=256, learning_rate=2e-3, warmup_steps=50),
    tau=0.6,
    distill_samples=65536,
    algorithms=("dpo", "rloo"),
    preference_train=StageConfig(steps=4096, batch_size=128, learning_rate=3e-4, warmup_steps=20,
                                 plateau=_PAIR_PLATEAU),
    n_pairs=65536,
    beta=MEASURED["gpu"].coefficient("dpo"),
    ipo_beta=0.13,
    bt_scale=10.0,
    rloo_train=StageConfig(steps=4096, batch_size=256, learning_rate=3e-4, warmup_steps=20,
                           plateau=_POLICY_PLATEAU),
    rloo_beta=MEASURED["gpu"].coefficient("rloo"),
    rloo_group=256,
    eval_samples=8192,
    reference_samples=32768,
    checkpoint_every=200,
)

# Teacher and student share one architecture here so the test suite compiles each
# jitted function once; the effect needs the size gap of the real presets.
_TEST_MODEL = dataclasses.replace(CPU_TINY.student, vocab_size=12, d_model=16, d_ff=32,
                                  max_seq_len=8)
TEST = dataclasses.replace(
    CPU_TINY,
    groundtruth=dataclasses.replace(_CPU_GT, seq_len=6, vocab_size=12),
    teacher=_TEST_MODEL,
    student=_TEST_MODEL,
    teacher_train=StageConfig(steps=12, batch_size=16, learning_rate=3e-3),
    student_train=StageConfig(steps=8, batch_size=16, learning_rate=3e-3),
    distill_samples=64,
    preference_train=StageConfig(steps=4, batch_size=16, learning_rate=1e-3,
                                 plateau=PlateauRule(first_check=2)),
    n_pairs=32,
    heldout_pairs=32,
    rloo_train=StageConfig(steps=4, batch_size=16, learning_rate=1e-3,
                           plateau=PlateauRule(first_check=2)),
    rloo_group=4,
    eval_samples=64,
    reference_samples=256,
    checkpoint_every=5,
)

PRESETS = {"cpu-tiny": CPU_TINY, "gpu": GPU, "test": TEST}


def get_preset(name: str) -> ExperimentConfig:
  """The named preset; InputError listing the known names otherwise."""
  if name not in PRESETS:
    raise InputError(f"--preset must be one of {sorted(PRESETS)}, got {name!r}")
  return PRESETS[name]
