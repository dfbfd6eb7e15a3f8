"""The LLM experiment against a real ground truth: p* = pretrained SmolLM2.

Set-up (the paper's SmolLM2 pipeline, scaled to our compute; choices are ours):

* p*: SmolLM2-135M-Instruct (GGUF from the package registry) continuing the one-word
  prompt "The" for T tokens at temperature 1 (:mod:`.ground_truth`). Exact sequence
  log-likelihoods come from the real model.
* target behaviour: the continuation contains a question mark (:mod:`.oracle`; exact
  oracle, reward = indicator). Its base rate under p* is reported in every run (row
  ``p*``: target share of p*'s own samples).
* teacher: a small Llama (same architecture family, SmolLM2 tokenizer: V = 49152)
  trained from scratch on fresh p* samples (high recall); student: a smaller one
  distilled from teacher samples at temperature tau (sequence-level KD: low recall).
* K-A, A-K and the control K-A(teacher-ref), with DPO (preference pairs from the
  reference labelled by Bradley-Terry on the oracle reward) and RLOO (online), per seed;
  all of it is :func:`recall_theory.lm.pipeline.run_comparison` unchanged, with this p*.
* metrics (:mod:`recall_theory.lm.metrics`): reward, target share, overall precision
  E_q[log p*(x)]/T scored by the real model, overall recall E_{p*}[log q(y)]/T, KL to the
  reference. ``target_precision`` is n/a (p* has no closed-form target conditional).

Presets:

* ``smollm2-cpu-smoke``: every stage at minimal size on 2 CPU cores in a few minutes
  (T = 8; too small to show the effect: it checks the plumbing);
* ``smollm2-gpu``: sized for one modern GPU in about 10 minutes by a FLOP estimate, not
  measured (T = 32; teacher 28M parameters, 19M of them the tied 49152 x 384 embedding,
  trained on 102k fresh p* sequences; student 6.7M; 5 seeds; 2048 evaluation samples).

Operating points (:mod:`recall_theory.operating_point`): the reward is binary, so ``Delta/beta``
is exactly ``c/beta`` for DPO (Bradley-Terry scale ``c``) and ``1/rloo_beta`` for RLOO; each
preset's coefficients put it at the middle of the window between the teacher's and the student's
trap boundaries measured in the preset's committed run (:data:`MEASURED`), and every run's
summary checks the point against the recalls it measured itself.

Note: ``ExperimentConfig.groundtruth`` (a Markov-mixture config) is not used when a
ground-truth object is passed; the presets keep the default with T set, for the record.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory.errors import InputError
from recall_theory.lm.hub.ground_truth import PStarConfig, PretrainedGroundTruth
from recall_theory.operating_point import MeasuredRecalls

SMOLLM2_VOCAB = 49152
BT_SCALE = 10.0

# Reference recalls the presets' coefficients rest on (binary reward: Delta = c for DPO, 1 for
# RLOO), from the presets' committed runs. The smoke run's are its smoothed estimates from 1024
# reference draws of models trained 4 steps: a plumbing check, not a measurement to rely on.
MEASURED = {
    "smollm2-cpu-smoke": MeasuredRecalls(teacher=0.008789, student=0.003906,
                                         reward_gap={"dpo": BT_SCALE, "rloo": 1.0},
                                         source="figures/smollm2/smollm2_results.csv"),
    "smollm2-gpu": MeasuredRecalls(teacher=0.03125, student=0.005737,
                                   reward_gap={"dpo": BT_SCALE, "rloo": 1.0},
                                   source="figures/smollm2/gpu/smollm2_results.csv"),
}


@dataclasses.dataclass(frozen=True)
class SmolLM2Experiment:
  """p* settings and the comparison (teacher, student, alignment) settings."""
  pstar: PStarConfig
  comparison: object            # recall_theory.lm.pipeline.ExperimentConfig
  seeds: int = 2

  def to_dict(self) -> dict:
    return {"pstar": dataclasses.asdict(self.pstar), "comparison": self.comparison.to_dict(),
            "seeds": self.seeds}


def _presets() -> dict[str, SmolLM2Experiment]:
  from recall_theory.lm.groundtruth import MarkovMixtureConfig
  from recall_theory.lm.model import ModelConfig
  from recall_theory.lm.pipeline import ExperimentConfig, StageConfig
  from recall_theory.plateau import PlateauRule

  def llama(d, layers, heads, kv, ff, ctx, dtype="float32"):
    return ModelConfig(vocab_size=SMOLLM2_VOCAB, d_model=d, n_layers=layers, n_heads=heads,
                       n_kv_heads=kv, d_ff=ff, max_seq_len=ctx, rope_theta=1e5, dtype=dtype)

  smoke_t = 8
  smoke = SmolLM2Experiment(
      pstar=PStarConfig(seq_len=smoke_t, chunk=16),
      comparison=ExperimentConfig(
          groundtruth=MarkovMixtureConfig(seq_len=smoke_t),
          teacher=llama(64, 2, 4, 2, 128, 16),
          student=llama(32, 1, 2, 1, 64, 16),
          teacher_train=StageConfig(steps=4, batch_size=16, learning_rate=3e-3),
          student_train=StageConfig(steps=4, batch_size=16, learning_rate=3e-3),
          tau=0.7, distill_samples=32, algorithms=("dpo", "rloo"),
          preference_train=StageConfig(steps=2, batch_size=16, learning_rate=1e-3,
                                       plateau=PlateauRule(first_check=1)),
          n_pairs=16, heldout_pairs=16, beta=MEASURED["smollm2-cpu-smoke"].coefficient("dpo"),
          bt_scale=BT_SCALE,
          rloo_train=StageConfig(steps=2, batch_size=16, learning_rate=1e-3,
                                 plateau=PlateauRule(first_check=1)),
          rloo_beta=MEASURED["smollm2-cpu-smoke"].coefficient("rloo"), rloo_group=4,
          eval_samples=16, reference_samples=1024, checkpoint_every=1000),
      seeds=2)  # a plumbing check: its summary prints no verdict
  gpu_t = 32
  gpu = SmolLM2Experiment(
      pstar=PStarConfig(seq_len=gpu_t, chunk=256),
      comparison=ExperimentConfig(
          groundtruth=MarkovMixtureConfig(seq_len=gpu_t),
          teacher=llama(384, 6, 6, 2, 1024, 64, dtype="bfloat16"),
          student=llama(128, 2, 4, 2, 384, 64, dtype="bfloat16"),
          teacher_train=StageConfig(steps=400, batch_size=256, learning_rate=1e-3,
                                    warmup_steps=40),
          student_train=StageConfig(steps=400, batch_size=256, learning_rate=2e-3,
                                    warmup_steps=40),
          tau=0.7, distill_samples=32768, algorithms=("dpo", "rloo"),
          # budgets for the plateau rule (recall_theory.plateau); not yet run on a GPU to plateau
          preference_train=StageConfig(steps=2048, batch_size=128, learning_rate=3e-4,
                                       plateau=PlateauRule(first_check=64, objective_tolerance=2e-3)),
          n_pairs=65536, beta=MEASURED["smollm2-gpu"].coefficient("dpo"), bt_scale=BT_SCALE,
          rloo_train=StageConfig(steps=2048, batch_size=256, learning_rate=3e-4,
                                 plateau=PlateauRule(first_check=128, objective_tolerance=0.05)),
          rloo_beta=MEASURED["smollm2-gpu"].coefficient("rloo"), rloo_group=8,
          eval_samples=2048, checkpoint_every=100),
      seeds=5)
  return {"smollm2-cpu-smoke": smoke, "smollm2-gpu": gpu}


PRESET_NAMES = ("smollm2-cpu-smoke", "smollm2-gpu")


def get_preset(name: str) -> SmolLM2Experiment:
  presets = _presets()
  if name not in presets:
    raise InputError(f"--preset must be one of {sorted(presets)}, got {name!r}")
  return presets[name]


class _RememberingGroundTruth(PretrainedGroundTruth):
  """Returns stored samples for (key, n) pairs already drawn (the p* reference rows), so
  the evaluation's p* samples are not generated twice."""

  def __init__(self, base: PretrainedGroundTruth):
    self.__dict__.update(base.__dict__)
    self._known: dict[tuple, jax.Array] = {}

  @staticmethod
  def _id(key, n):
    return (tuple(np.asarray(jax.random.key_data(key)).ravel().tolist()), int(n))

  def remember(self, key, n, samples) -> None:
    self._known[self._id(key, n)] = samples

  def sample(self, key, n):
    hit = self._known.get(self._id(key, n))
    return hit if hit is not None else super().sample(key, n)


def pstar_rows(gt: PretrainedGroundTruth, seeds: Sequence[int], n: int) -> list[dict]:
  """Reference rows for p* itself: target share = the base rate of the target behaviour,
  precision = recall = E_{p*}[log p*]/T (minus the entropy rate). Uses the same p*
  samples as the comparison's recall evaluation (same keys)."""
  rows = []
  for seed in seeds:
    key = jax.random.fold_in(jax.random.key(2_000_003), seed)  # as pipeline.run_comparison
    y = gt.sample(key, n)
    if isinstance(gt, _RememberingGroundTruth):
      gt.remember(key, n, y)
    logp = float(jnp.mean(gt.log_prob(y))) / gt.seq_len
    rows.append({"pipeline": "p*", "algorithm": "none", "seed": seed,
                 "reward": float(jnp.mean(gt.reward(y))),
                 "target_share": float(jnp.mean(gt.shows_target(y))),
                 "target_precision": float("nan"), "precision": logp, "recall": logp,
                 "kl_ref": float("nan")})
  return rows


def run_experiment(experiment: SmolLM2Experiment, seeds: Sequence[int], *,
                   groundtruth: PretrainedGroundTruth | None = None, checkpoint_dir=None,
                   resume: bool = False, progress: bool = True, n_devices: int | None = None,
                   cache_dir=None, preset: str = "custom") -> tuple[list[dict], dict]:
  """Load p*, then the whole comparison; returns (rows, info).

  rows: p* reference rows plus :func:`recall_theory.lm.pipeline.run_comparison`'s rows,
  with the shared id and law columns (:func:`smollm2_rows`); ``preset`` names the
  ``setting`` column.
  info: p* load time, base rate of the target (mean over seeds and its standard error),
  wall time.
  """
  from recall_theory.lm import pipeline

  seeds = [int(s) for s in seeds]
  experiment.pstar.validate()
  start = time.perf_counter()
  if groundtruth is None:
    groundtruth = PretrainedGroundTruth.load(experiment.pstar, cache_dir=cache_dir)
  gt = _RememberingGroundTruth(groundtruth)
  experiment.comparison.validate(gt)
  loaded = time.perf_counter()
  ref_rows = pstar_rows(gt, seeds, experiment.comparison.eval_samples)
  setting = setting_label(experiment, preset)
  rows = pipeline.run_comparison(experiment.comparison, seeds, groundtruth=gt,
                                 checkpoint_dir=checkpoint_dir, resume=resume,
                                 progress=progress, n_devices=n_devices, setting=setting)
  from recall_theory import stats
  n_each = experiment.comparison.eval_samples
  hits = int(round(sum(r["target_share"] * n_each for r in ref_rows)))
  n_total = len(seeds) * n_each
  info = {"pstar_load_seconds": float(getattr(gt.lm, "load_seconds", loaded - start)),
          "base_rate": hits / n_total,
          "base_rate_hits": hits,
          "base_rate_interval95": stats.wilson_interval(hits, n_total),
          "base_rate_samples": n_total,
          "target": gt.oracle.description,
          "wall_seconds": time.perf_counter() - start}
  return smollm2_rows(ref_rows + rows, setting), info


# -- the law beside every aligned model ----------------------------------------------------
# Which model each pipeline's alignment is anchored to (pipeline.run_comparison).
ALIGNMENT_REFERENCE = {"K-A": "student", "A": "teacher", "A-K": "teacher",
                       "K-A(teacher-ref)": "teacher"}


def setting_label(experiment: SmolLM2Experiment, preset: str) -> str:
  """The ``setting`` column: which grid cell a row belongs to."""
  return (f"preset={preset};T={experiment.pstar.seq_len};tau={experiment.comparison.tau};"
          f"target={experiment.pstar.target}")


def smollm2_rows(rows: list[dict], setting: str) -> list[dict]:
  """Rows of the SmolLM2 track with one set of columns in one order.

  :func:`recall_theory.lm.pipeline.run_comparison` estimates the law's columns of every
  aligned model from samples (:mod:`recall_theory.lm.law`: ``p_ref`` from
  ``reference_samples`` draws of the reference, Wilson 95%; ``Delta/beta`` as the
  plug-in soft-max gap of the algorithm's effective reward on those draws, bootstrap
  95%; aligned mass from the evaluation samples, Wilson 95%; ``kl`` the k1 estimate
  mean(log pi - log pi_ref) over them). Here every row is labelled ``track = smollm2``
  with the run's ``setting``, and rows without the law (the ``p*`` rows) get nan law
  columns with an estimator note, so the CSV is rectangular.
  """
  from recall_theory import schema
  names: list[str] = []
  blank: dict[str, object] = {}  # what a row without a column gets: "" for text, else nan
  for row in rows:
    for k, v in row.items():
      if k not in names:
        names.append(k)
      if k not in blank or isinstance(v, str):
        blank[k] = "" if isinstance(v, str) else float("nan")
  out = []
  for row in rows:
    full = {k: row.get(k, blank[k]) for k in names}
    if "estimator" not in row:
      full.update({c: float("nan") for c in schema.LAW_COLUMNS})
      full.update(above_ceiling=False, estimator="not aligned: reference row (p* itself)")
    full.update(track="smollm2", setting=setting)
    out.append(full)
  return out


def csv_columns(rows: list[dict]) -> list[str]:
  """The id columns first, the law's columns last, the metrics and costs between."""
  from recall_theory import schema
  middle = [k for k in rows[0] if k not in schema.ID_COLUMNS + schema.LAW_COLUMNS]
  return list(schema.ID_COLUMNS) + middle + list(schema.LAW_COLUMNS)


def law_table(rows: list[dict]) -> str:
  """Markdown: per (pipeline, algorithm), the measured aligned mass beside the law.

  Measured columns are mean ± sample sd over seeds (:func:`recall_theory.stats.mean_sd`);
  ``p_ref``, ``Delta/beta`` and the prediction are one estimate per reference and
  algorithm (the reference is trained once), shown with their 95% intervals.
  """
  from recall_theory import stats
  from recall_theory.lm import report

  def pm(values, fmt=".4f"):
    mean, sd, _ = stats.mean_sd(values)
    return f"{mean:{fmt}} ± {sd:{fmt}}" if np.isfinite(sd) else f"{mean:{fmt}}"

  def ci(row, name, fmt=".4f"):
    if not np.isfinite(row[name]):
      return "n/a"
    return f"{row[name]:{fmt}} [{row[name + '_low']:{fmt}}, {row[name + '_high']:{fmt}}]"

  lines = ["| pipeline | algorithm | seeds | aligned mass | predicted mass | p_ref | Delta/beta "
           "| training draws | expected target draws | target draws seen | KL paid | KL ceiling "
           "| above ceiling |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  groups: dict[tuple[str, str], list[dict]] = {}
  for row in rows:
    if row["pipeline"] in ALIGNMENT_REFERENCE:
      groups.setdefault((row["pipeline"], row["algorithm"]), []).append(row)
  for (pipe, alg), group in groups.items():
    first = group[0]
    seen = [r.get("target_samples_drawn", float("nan")) for r in group]
    lines.append(
        f"| {pipe} | {report.algorithm_name(alg)} | {len(group)} "
        f"| {pm([r['aligned_mass'] for r in group])} "
        f"| {ci(first, 'predicted_mass')} | {ci(first, 'reference_recall')} "
        f"| {ci(first, 'delta_over_beta', '.3g')} | {pm([r['n_samples'] for r in group], '.0f')} "
        f"| {pm([r['expected_target_samples'] for r in group], '.3g')} "
        f"| {pm(seen, '.3g') if np.all(np.isfinite(seen)) else 'n/a'} "
        f"| {pm([r['kl'] for r in group], '.3g')} | {pm([r['kl_ceiling'] for r in group])} "
        f"| {sum(bool(r['above_ceiling']) for r in group)} of {len(group)} |")
  return "\n".join(lines) + "\n"


def summary_markdown(rows: list[dict], info: dict, *, preset: str, seeds: Sequence[int],
                     pstar: PStarConfig, options: str, violations: int, config=None) -> str:
  """The run's summary: set-up, options, base rate, the operating point (``config``: the
  comparison's ExperimentConfig), the metric table and the law table."""
  from recall_theory import stats
  from recall_theory.lm import report

  lo, hi = info["base_rate_interval95"]
  estimators = sorted({r["estimator"] for r in rows if r["pipeline"] in ALIGNMENT_REFERENCE})
  return (
      f"# SmolLM2 as p*, preset `{preset}`, seeds {list(seeds)}\n\n"
      f"Options: {options}.\n\n"
      f"p* = {pstar.model}, prompt {pstar.prompt_text!r}, T = {pstar.seq_len}; target: "
      f"{info['target']}; base rate under p* {info['base_rate_hits']} of "
      f"{info['base_rate_samples']} samples = {info['base_rate']:.4f} (95% Wilson interval "
      f"{lo:.4f} to {hi:.4f}). {info['wall_seconds']:.0f} s wall clock, p* loaded in "
      f"{info['pstar_load_seconds']:.1f} s.\n\n"
      + ("" if config is None else
         "## Operating point (chosen from the law: K-A inside the trap)\n\n"
         + report.operating_point(rows, config) + "\n")
      + f"## Metrics\n\nMeans ± sd over seeds; {stats.SD_CAPTION}.\n\n"
      + report.markdown_table(report.summarize(rows))
      + "\n## The law beside each aligned model\n\n"
      f"Aligned mass, draws and KL: mean ± sd over seeds ({stats.SD_CAPTION}). Predicted "
      "mass = sigmoid(logit p_ref + Delta/beta), the optimum of the objective each algorithm "
      "optimises (learning trap); expected target draws = training draws x the sampler's "
      "target mass, and target draws seen = the count among the draws the alignment trained "
      "on (sampling trap); KL ceiling = the most target mass any policy within the KL paid "
      "can have. Brackets: 95% intervals. A-K's prediction is that of its aligned teacher A.\n\n"
      + law_table(rows)
      + f"\nMeasured masses above their KL ceiling (lower end of the interval): {violations}"
      + (" -- a bug, see stderr.\n" if violations else ".\n")
      + "\nEstimators:\n\n" + "".join(f"* {e}\n" for e in estimators))
