"""Teacher, distilled student, and the alignment pipelines K-A, A-K and the control.

Stages (each a checkpointed training run, see :class:`Runner`):

1. ``teacher``: the large model fitted by maximum likelihood to fresh p* samples
   (high recall).
2. ``student``: the small model distilled from the teacher at temperature ``tau``
   (sequence-level KD on teacher samples at tau, or token-level KD on the teacher's
   tempered logits): high precision, low recall.
3. per seed and alignment algorithm (``dpo``, ``ipo``, ``simpo`` on preference pairs
   sampled from the reference and labelled by Bradley-Terry on the oracle reward with
   reference log-probs precomputed; ``rloo`` online with the KL in the reward):

   * ``K-A``: align the student with pi_ref = student;
   * ``A-K``: align the teacher with pi_ref = teacher (row ``A``), then distill it into
     a freshly initialised student at the same tau;
   * ``K-A(teacher-ref)``: the control: align the student with pi_ref = teacher
     (preference pairs sampled from the teacher; online KL against the teacher).

The teacher and the KD student are trained once (seed of the config); the seeds vary
everything after them (preference data, online samples, the A-K student's
initialisation and data, evaluation samples), which is the variance the paper
reports. Every final model is scored by :func:`recall_theory.lm.metrics.evaluate`.

Every aligned model's row carries the law's columns (:data:`recall_theory.schema.LAW_COLUMNS`,
theory.md item 12; estimators in :mod:`recall_theory.lm.law`): the recall ``p_ref`` of the
reference it is anchored to and ``Delta/beta`` of the reward its optimum tilts by, both from
``reference_samples`` samples of that reference (:class:`LawBook`), the predicted optimum,
the measured mass with its Wilson interval, the draws it trained on (2 per preference
pair, every on-policy RLOO sample; counted in A as ``target_samples_drawn``), the KL paid
and its ceiling; a mass above its ceiling is reported loudly on stderr. Rows also carry
the training steps and wall time of the stages that made the model.

Only the :class:`~recall_theory.lm.groundtruth.GroundTruth` protocol of p* is used, so
``run_comparison(config, groundtruth=my_pretrained_pstar)`` runs the same pipelines
against a pretrained stand-in.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import zlib
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recall_theory import schema
from recall_theory.errors import InputError, check_positive
from recall_theory.lm import checkpoint as ckpt_lib
from recall_theory.lm import cost as cost_lib
from recall_theory.lm import law as law_lib
from recall_theory.lm import heldout, losses, metrics, sharding
from recall_theory.lm.groundtruth import GroundTruth, MarkovMixture, MarkovMixtureConfig
from recall_theory.lm.model import ModelConfig, Transformer
from recall_theory.lm.rollout import count_in_target, make_rollout
from recall_theory import progress as progress_lib
from recall_theory.plateau import Checkpoint, PlateauRule, compare, plateau_schedule
from recall_theory.lm.train import (check_finite_metrics, init_train_state, make_optimizer,
                                    make_train_step, place_state)

ALGORITHMS = ("dpo", "ipo", "simpo", "rloo")
PREFERENCE_ALGORITHMS = ("dpo", "ipo", "simpo")
KD_KINDS = ("sequence",) + losses.KD_DIVERGENCES
PIPELINES = ("K-A", "A-K", "K-A(teacher-ref)")
# fold_in indices of a stage's fixed draws (its steps use 0, 1, 2, ...)
_DATA_STREAM = 0x7FFFFFFF      # the training data set (pairs, distillation samples)
_EVAL_STREAM = 0x7FFFFFFE      # the policy samples of every held-out evaluation
_HELDOUT_STREAM = 0x7FFFFFFD   # held-out pairs
_LAW_STREAM = 0x7FFFFFFC       # reference samples for log Z when no LawBook gives them


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """Optimisation of one stage: steps, batch size (sequences), peak learning rate.

  Without ``plateau`` the stage runs exactly ``steps`` steps under a warm-up + cosine
  schedule. With a :class:`~recall_theory.plateau.PlateauRule` it trains until the rule
  holds, ``steps`` is its budget, and the learning rate follows
  :func:`~recall_theory.plateau.plateau_schedule` (no total step count needed).
  """
  steps: int
  batch_size: int
  learning_rate: float
  warmup_steps: int = 0
  plateau: PlateauRule | None = None

  def validate(self, name: str) -> "StageConfig":
    for field in ("steps", "batch_size"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"{name}.{field} must be a positive integer, got {v!r}")
    check_positive(f"{name}.learning_rate", self.learning_rate)
    if self.plateau is not None:
      self.plateau.validate(f"{name}.plateau")
      if self.plateau.first_check > self.steps:
        raise InputError(f"{name}.plateau.first_check={self.plateau.first_check} exceeds the "
                         f"budget {name}.steps={self.steps}")
    return self

  def optimizer(self):
    """AdamW under this stage's schedule (cosine to ``steps``, or 1/t to a plateau)."""
    if self.plateau is None:
      return make_optimizer(self.learning_rate, self.steps, warmup_steps=self.warmup_steps)
    return make_optimizer(self.learning_rate, self.steps, schedule=plateau_schedule(
        self.learning_rate, warmup_steps=self.warmup_steps, constant_steps=self.plateau.first_check))


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything a comparison run needs (presets in :mod:`recall_theory.lm.presets`)."""
  groundtruth: MarkovMixtureConfig
  teacher: ModelConfig
  student: ModelConfig
  teacher_train: StageConfig
  student_train: StageConfig
  tau: float = 0.7
  kd: str = "sequence"
  distill_samples: int = 8192
  algorithms: tuple[str, ...] = ("dpo", "rloo")
  preference_train: StageConfig = StageConfig(60, 64, 5e-4)
  n_pairs: int = 2048
  beta: float = 0.1
  bt_scale: float = 10.0
  simpo_gamma: float = 0.5
  ipo_beta: float = 0.1
  rloo_train: StageConfig = StageConfig(60, 64, 5e-4)
  rloo_beta: float = 0.05
  rloo_group: int = 4
  eval_samples: int = 2048
  heldout_pairs: int = 2048
  reference_samples: int = 8192
  checkpoint_every: int = 50
  fsdp: int = 1
  seed: int = 0

  def validate(self, groundtruth: GroundTruth | None = None) -> "ExperimentConfig":
    self.groundtruth.validate()
    self.teacher.validate()
    self.student.validate()
    for name in ("teacher_train", "student_train", "preference_train", "rloo_train"):
      getattr(self, name).validate(name)
    check_positive("tau", self.tau)
    if self.kd not in KD_KINDS:
      raise InputError(f"kd must be one of {KD_KINDS}, got {self.kd!r}")
    bad = [a for a in self.algorithms if a not in ALGORITHMS]
    if bad or not self.algorithms:
      raise InputError(f"algorithms must be a non-empty subset of {ALGORITHMS}, got {bad or '()'}")
    check_positive("beta", self.beta)
    check_positive("rloo_beta", self.rloo_beta)
    check_positive("ipo_beta", self.ipo_beta)
    for name in ("eval_samples", "reference_samples", "n_pairs", "distill_samples", "heldout_pairs"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"{name} must be a positive integer, got {v!r}")
    check_positive("bt_scale", self.bt_scale)
    if self.rloo_group < 2 or self.rloo_train.batch_size % self.rloo_group:
      raise InputError(f"rloo_group={self.rloo_group} must be >= 2 and divide "
                       f"rloo_train.batch_size={self.rloo_train.batch_size}")
    gt_vocab = self.groundtruth.vocab_size if groundtruth is None else groundtruth.vocab_size
    length = (1 + self.groundtruth.seq_len if groundtruth is None
              else int(np.shape(groundtruth.prompt)[0]) + groundtruth.seq_len)
    for name in ("teacher", "student"):
      mc = getattr(self, name)
      if mc.vocab_size < gt_vocab:
        raise InputError(f"{name}.vocab_size={mc.vocab_size} is smaller than the ground truth's "
                         f"vocabulary ({gt_vocab})")
      if length > mc.max_seq_len:
        raise InputError(f"sequence length {length} (prompt + seq_len) exceeds {name}.max_seq_len"
                         f"={mc.max_seq_len}")
    return self

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


_STEP_CACHE: dict = {}


class RunInterrupted(RuntimeError):
  """Raised by ``interrupt_after`` (tests of resume): simulates a killed run."""


def stream_index(name: str) -> int:
  """A stable fold-in index for a named random stream (CRC-32 of the name, 31 bits)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _stage_key(seed: int, stage: str) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), stream_index(stage))


class Runner:
  """Runs checkpointed training stages on one mesh, with a progress bar per stage."""

  def __init__(self, *, mesh=None, checkpointer: ckpt_lib.Checkpointer | None = None,
               checkpoint_every: int = 50, progress: bool = True,
               interrupt_after: int | None = None):
    self.mesh = sharding.make_mesh(1) if mesh is None else mesh
    self.ckpt = checkpointer or ckpt_lib.Checkpointer(None)
    self.checkpoint_every = checkpoint_every
    self.progress = progress
    self.interrupt_after = interrupt_after
    self.steps_run = 0
    # stage name -> {"steps", "first_step", "seconds"}: what each stage cost (seconds: in
    # this process, so a resumed stage counts only its remaining steps' time)
    self.stage_costs: dict[str, dict] = {}

  def _step_fn(self, key, graphdef, tx, loss_fn):
    # Shared across runners: a resumed or repeated run reuses the compiled steps.
    key = key + (self.mesh,)
    if key not in _STEP_CACHE:
      _STEP_CACHE[key] = make_train_step(graphdef, tx, loss_fn, self.mesh)
    return _STEP_CACHE[key]

  def train(self, stage: str, model: Transformer, loss_key: tuple, loss_fn, cfg: StageConfig,
            make_batch: Callable, evaluate: Callable | None = None,
            tally: dict[int, int] | None = None) -> Transformer:
    """Train ``model`` for ``cfg.steps``, or to its plateau; resume from / save to checkpoints.

    ``make_batch(step, current_model) -> dict`` must be a deterministic function of the
    step (and the current parameters), so a resumed stage replays exactly.

    With ``cfg.plateau`` set, ``evaluate(model) -> plateau.Checkpoint`` measures the
    held-out objective and the aligned mass at each checkpoint of the rule; it must be
    deterministic in the model (fixed held-out draws and evaluation key), so that a resumed
    stage sees the values an uninterrupted one saw. The stage stops at the first doubling
    that meets the rule, or at the budget ``cfg.steps``; ``stage_costs[stage]`` records the
    steps used, the budget, whether the plateau was reached and the last evaluation.

    ``tally`` (optional, step -> int, filled by ``make_batch``, e.g. the target samples each
    RLOO step drew) is saved with every checkpoint and restored on resume, so a resumed stage
    reports the counts of an uninterrupted one.
    """
    rule = cfg.plateau
    if rule is not None and evaluate is None:
      raise ValueError(f"stage {stage!r} trains to a plateau but has no held-out evaluation")
    tx = cfg.optimizer()
    graphdef, state = init_train_state(model, tx)
    state = place_state(state, self.mesh)
    start, history, stopped, reached = 0, [], False, False
    meta = self.ckpt.latest(stage)
    if meta is not None:
      state = self.ckpt.restore(meta, state)
      start = int(meta["step"])
      history = [Checkpoint.from_json(d) for d in meta.get("plateau_history", [])]
      stopped, reached = bool(meta.get("final")), bool(meta.get("plateau"))
      if tally is not None:
        tally.update({int(k): int(v) for k, v in meta.get("tally", {}).items() if int(k) < start})
    checks = set(rule.checkpoints(cfg.steps)) if rule is not None else set()
    step_fn = self._step_fn((loss_key, dataclasses.astuple(cfg), graphdef), graphdef, tx, loss_fn)
    started = time.perf_counter()
    with progress_lib.stage(stage, total=cfg.steps, unit="steps", enabled=self.progress) as bar:
      bar.set(start, resumed=start) if start else None
      step = start
      while step < cfg.steps and not stopped:
        batch = make_batch(step, lambda: nnx.merge(graphdef, state.params))
        state, out = step_fn(state, sharding.shard_batch(batch, self.mesh))
        host = check_finite_metrics(out, step + 1, stage)
        step += 1
        if step in checks:
          current = dataclasses.replace(evaluate(nnx.merge(graphdef, state.params)), step=step)
          reached = bool(history) and compare(rule, history[-1], current)
          history.append(current)
          stopped = reached
        final = step == cfg.steps or stopped
        if final or step % self.checkpoint_every == 0 or step in checks:
          self.ckpt.save(stage, step, state, final=final, extra={
              "plateau": reached,
              **({} if tally is None else {"tally": {str(k): v for k, v in sorted(tally.items())
                                                     if k < step}}),
              # only the last evaluation's per-draw values are needed (the next one pairs with it)
              "plateau_history": [c.to_json() if i == len(history) - 1 else
                                  dataclasses.replace(c, objective_N=None, in_target_N=None).to_json()
                                  for i, c in enumerate(history)]})
        bar.set(step, loss=host["loss"])
        self.steps_run += 1
        if self.interrupt_after is not None and self.steps_run >= self.interrupt_after:
          raise RunInterrupted(f"interrupted after {self.steps_run} steps (stage {stage!r})")
    # steps: what the stage used in all (a resumed stage ran only those after first_step here)
    self.stage_costs[stage] = {"steps": step, "max_steps": cfg.steps, "first_step": start,
                               "seconds": time.perf_counter() - started,
                               "plateau": (None if rule is None else reached),
                               "checkpoints": history}
    return nnx.merge(graphdef, state.params)


  def train_seeds(self, stages: Sequence[str], models: Sequence[Transformer], loss_key: tuple,
                  loss_fn, cfg: StageConfig, make_batch: Callable,
                  evaluates: Sequence[Callable] | None = None,
                  tallies: Sequence[dict] | None = None) -> list[Transformer]:
    """One stage for several seeds: :meth:`train` of each, one after the other.

    ``stages[i]``, ``models[i]`` and ``evaluates[i]`` are seed i's stage name (its own
    checkpoints and cost record), initial model and held-out evaluation;
    ``make_batch(step, i, current_model) -> dict`` gives seed i's batch; ``tallies[i]`` is
    seed i's :meth:`train` tally.
    """
    evaluates = [None] * len(models) if evaluates is None else list(evaluates)
    tallies = [None] * len(models) if tallies is None else list(tallies)
    return [self.train(stage, model, loss_key, loss_fn, cfg,
                       lambda step, current, i=i: make_batch(step, i, current), evaluates[i],
                       tallies[i])
            for i, (stage, model) in enumerate(zip(stages, models))]

# -- cost --------------------------------------------------------------------------------
def stage_flops(*, trained: ModelConfig, train_sequences: int, seq_len: int, prompt_len: int,
                sampler: ModelConfig | None = None, sampled: int = 0,
                reference: ModelConfig | None = None, referenced: int = 0) -> dict:
  """Training, sampling and reference FLOPs of one stage (:mod:`recall_theory.lm.cost`).

  ``train_sequences`` sequences of ``seq_len = P + T`` tokens through forward + backward
  of ``trained`` (the model sees the first ``L - 1``); ``sampled`` sequences drawn from
  ``sampler`` with the KV cache (``T`` new tokens after ``P``); ``referenced`` sequences
  scored by one forward of ``reference`` (log-prob precomputation, teacher logits).
  """
  positions = seq_len - 1  # tokens[:, :-1] go through the model
  new_tokens = seq_len - prompt_len
  return {
      "train_flops": (train_sequences * positions
                      * cost_lib.train_flops_per_token(trained, positions)),
      "sampling_flops": (cost_lib.sampling_flops(sampler, sampled, prompt_len, new_tokens)
                         if sampler is not None and sampled else 0.0),
      "reference_flops": (cost_lib.reference_flops(reference, referenced, positions)
                          if reference is not None and referenced else 0.0),
  }


# -- data builders ---------------------------------------------------------------------
def minibatch(key, arrays: dict, batch_size: int) -> dict:
  """``batch_size`` rows drawn with replacement from every array of ``arrays`` (same rows)."""
  n = next(iter(arrays.values())).shape[0]
  idx = jax.random.randint(key, (batch_size,), 0, n)
  return {k: v[idx] for k, v in arrays.items()}


@functools.partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _continuation_log_probs(graphdef, state, tokens, prompt_len):
  return losses.continuation_log_probs(nnx.merge(graphdef, state), tokens, prompt_len)[1]


def copy_model(model: Transformer) -> Transformer:
  """An independent copy (training donates its buffers; the original must survive)."""
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, jax.tree.map(lambda x: jnp.array(x, copy=True), state))


def init_model(config: ModelConfig, seed: int) -> Transformer:
  return Transformer(config, rngs=nnx.Rngs(seed))


def preference_pairs(reference: Transformer, groundtruth: GroundTruth, key, n_pairs: int,
                     bt_scale: float) -> dict:
  """Pairs sampled from ``reference``, labelled by Bradley-Terry on the oracle reward.

  P(y1 preferred to y2) = sigmoid(bt_scale (R(y1) - R(y2))); reference sequence
  log-probs are computed here once (no live reference model during training).
  """
  p = int(np.shape(groundtruth.prompt)[0])
  k_sample, k_label = jax.random.split(key)
  both = metrics.sample_model(reference, groundtruth, k_sample, 2 * n_pairs)
  y1, y2 = both[:n_pairs], both[n_pairs:]
  r1, r2 = groundtruth.reward(y1), groundtruth.reward(y2)
  first_wins = jax.random.bernoulli(k_label, jax.nn.sigmoid(bt_scale * (r1 - r2)))
  chosen = jnp.where(first_wins[:, None], y1, y2)
  rejected = jnp.where(first_wins[:, None], y2, y1)
  return {"chosen": chosen, "rejected": rejected,
          "ref_chosen": jnp.asarray(metrics.model_log_prob(reference, chosen, p)),
          "ref_rejected": jnp.asarray(metrics.model_log_prob(reference, rejected, p)),
          "n_target": int(jnp.sum(groundtruth.shows_target(both)))}


# -- stages ----------------------------------------------------------------------------
def train_teacher(runner: Runner, config: ExperimentConfig, groundtruth: GroundTruth,
                  stage: str = "teacher") -> Transformer:
  """Maximum likelihood on fresh p* samples (a new batch every step)."""
  p = int(np.shape(groundtruth.prompt)[0])
  key = _stage_key(config.seed, stage)
  cfg = config.teacher_train

  def make_batch(step, _):
    return {"tokens": groundtruth.sample(jax.random.fold_in(key, step), cfg.batch_size)}

  model = runner.train(stage, init_model(config.teacher, config.seed), ("mle", p),
                       losses.make_mle_loss(p), cfg, make_batch)
  runner.stage_costs[stage]["samples"] = cfg.steps * cfg.batch_size  # fresh p* samples
  runner.stage_costs[stage].update(stage_flops(
      trained=config.teacher, train_sequences=cfg.steps * cfg.batch_size,
      seq_len=p + groundtruth.seq_len, prompt_len=p))  # p* samples cost no model FLOPs
  return model


def distill(runner: Runner, config: ExperimentConfig, groundtruth: GroundTruth,
            teacher: Transformer, stage: str, init_seed: int, data_seed: int,
            data_stage: str | None = None) -> Transformer:
  """Distill ``teacher`` into a fresh student at temperature tau (sequence or token KD).

  The random stream (teacher samples, minibatches) is keyed by ``data_stage`` (default
  ``stage``): stages that share it differ only in what their arguments change (the
  tau sweep's students share the comparison's stream, so its tau = default column is
  the comparison's student).
  """
  p = int(np.shape(groundtruth.prompt)[0])
  key = _stage_key(data_seed, stage if data_stage is None else data_stage)
  cfg = config.student_train
  data = {"tokens": metrics.sample_model(teacher, groundtruth, jax.random.fold_in(key, _DATA_STREAM),
                                         config.distill_samples, temperature=config.tau)}
  if config.kd == "sequence":
    loss_key, loss_fn = ("mle", p), losses.make_mle_loss(p)

    def make_batch(step, _):
      return minibatch(jax.random.fold_in(key, step), data, cfg.batch_size)
  else:
    loss_key = ("token_kd", p, config.kd, config.tau)
    loss_fn = losses.make_token_kd_loss(p, config.kd, temperature=config.tau)
    t_graphdef, t_state = nnx.split(teacher)

    def make_batch(step, _):
      batch = minibatch(jax.random.fold_in(key, step), data, cfg.batch_size)
      batch["teacher_logits"] = _continuation_log_probs(t_graphdef, t_state, batch["tokens"], p)
      return batch

  model = runner.train(stage, init_model(config.student, init_seed), loss_key, loss_fn, cfg,
                       make_batch)
  runner.stage_costs[stage]["samples"] = config.distill_samples  # teacher samples at tau
  runner.stage_costs[stage].update(stage_flops(
      trained=config.student, train_sequences=cfg.steps * cfg.batch_size,
      seq_len=p + groundtruth.seq_len, prompt_len=p, sampler=teacher.config,
      sampled=config.distill_samples, reference=teacher.config,
      referenced=0 if config.kd == "sequence" else cfg.steps * cfg.batch_size))
  return model


def law_inputs(config: ExperimentConfig, algorithm: str, law_samples: dict) -> dict:
  """The effective reward of ``algorithm``'s optimum and its ``log Z`` under a reference.

  ``law_samples``: the reference's samples (:func:`reference_sample`: oracle rewards R and
  membership in A). Returns ``reward_fn`` (R -> r), ``coefficient`` (beta) and ``log_z`` =
  ``log E_ref[e^{r/beta}]`` (nan for SimPO, which has no Gibbs optimum).
  """
  if algorithm not in law_lib.LAW_ALGORITHMS:
    return {"reward_fn": None, "coefficient": config.beta, "log_z": math.nan}
  g, coefficient = law_lib.effective_reward(
      algorithm, law_samples["reward"], beta=config.beta, rloo_beta=config.rloo_beta,
      ipo_beta=config.ipo_beta, bt_scale=config.bt_scale)
  return {"reward_fn": g, "coefficient": coefficient,
          "log_z": heldout.log_partition(g(law_samples["reward"]), coefficient)}


def stage_evaluator(config: ExperimentConfig, groundtruth: GroundTruth, reference: Transformer,
                    algorithm: str, key, law_samples: dict, pair_sampler: Transformer | None = None):
  """The held-out evaluation of an alignment stage (its plateau rule and sub-optimality).

  KL-regularised RL (RLOO): ``J/beta`` on fresh policy samples. Preference losses: the
  label-averaged loss on ``config.heldout_pairs`` pairs drawn from ``pair_sampler``
  (default the reference, where the algorithm's own pairs come from). Every evaluation
  uses the same key (paired checkpoints). See :mod:`recall_theory.lm.heldout`.
  """
  eval_key = jax.random.fold_in(key, _EVAL_STREAM)
  law = law_inputs(config, algorithm, law_samples)
  if algorithm == "rloo":
    return heldout.kl_regularised_evaluator(
        groundtruth, reference, eval_key, n=config.eval_samples, reward_fn=law["reward_fn"],
        coefficient=law["coefficient"], log_z=law["log_z"])
  sampler = reference if pair_sampler is None else pair_sampler
  both = metrics.sample_model(sampler, groundtruth, jax.random.fold_in(key, _HELDOUT_STREAM),
                              2 * config.heldout_pairs)
  pairs = heldout.held_out_pairs(both[:config.heldout_pairs], both[config.heldout_pairs:],
                                 groundtruth, reference, config.bt_scale)
  beta = config.ipo_beta if algorithm == "ipo" else config.beta
  return heldout.pair_evaluator(groundtruth, pairs, eval_key, n=config.eval_samples,
                                algorithm=algorithm, beta=beta, bt_scale=config.bt_scale,
                                simpo_gamma=config.simpo_gamma,
                                ipo_win_probability=law["reward_fn"] if algorithm == "ipo" else None)


def preference_loss(config: ExperimentConfig, algorithm: str, prompt_len: int) -> tuple[tuple, Callable]:
  """(cache key, loss_fn) of a preference algorithm (dpo, ipo, simpo) at the run's coefficients."""
  if algorithm == "simpo":
    return (("simpo", prompt_len, config.beta, config.simpo_gamma),
            losses.make_simpo_loss(prompt_len, config.beta, config.simpo_gamma))
  beta = config.ipo_beta if algorithm == "ipo" else config.beta
  return (algorithm, prompt_len, beta), losses.make_dpo_loss(prompt_len, beta, variant=algorithm)


def record_alignment_cost(runner: Runner, stage: str, *, algorithm: str, policy: Transformer,
                          reference: Transformer, sampler: ModelConfig, groundtruth: GroundTruth,
                          batch_size: int, samples: int) -> None:
  """Samples drawn and FLOPs of an alignment stage, from the steps it actually ran."""
  p = int(np.shape(groundtruth.prompt)[0])
  steps = runner.stage_costs[stage]["steps"]
  runner.stage_costs[stage]["samples"] = samples
  length = p + groundtruth.seq_len
  if algorithm in PREFERENCE_ALGORITHMS:  # pairs drawn once, scored by the reference once
    flops = stage_flops(trained=policy.config, train_sequences=2 * steps * batch_size,
                        seq_len=length, prompt_len=p, sampler=sampler, sampled=samples,
                        reference=reference.config,
                        referenced=0 if algorithm == "simpo" else samples)
  else:  # on-policy samples, each scored by the reference
    flops = stage_flops(trained=policy.config, train_sequences=steps * batch_size,
                        seq_len=length, prompt_len=p, sampler=sampler, sampled=samples,
                        reference=reference.config, referenced=samples)
  runner.stage_costs[stage].update(flops)


def align(runner: Runner, config: ExperimentConfig, groundtruth: GroundTruth,
          policy: Transformer, reference: Transformer, algorithm: str, stage: str,
          seed: int, draws: dict | None = None, data_stage: str | None = None,
          law_samples: dict | None = None) -> Transformer:
  """Align a copy of ``policy`` against the frozen ``reference`` with ``algorithm``.

  One seed of :func:`align_seeds` (see there); ``draws`` is that seed's draw record.
  """
  return align_seeds(runner, config, groundtruth, policy, reference, algorithm, [stage], [seed],
                     None if draws is None else [draws],
                     None if data_stage is None else [data_stage], law_samples)[0]


def align_seeds(runner: Runner, config: ExperimentConfig, groundtruth: GroundTruth,
                policy: Transformer, reference: Transformer, algorithm: str,
                stages: Sequence[str], seeds: Sequence[int], draws: Sequence[dict] | None = None,
                data_stages: Sequence[str] | None = None,
                law_samples: dict | Sequence[dict] | None = None) -> list[Transformer]:
  """Align a copy of ``policy`` against the frozen ``reference`` once per seed.

  Seed i trains stage ``stages[i]`` on its own random stream (``data_stages[i]`` if given,
  as in :func:`distill`).
  Each stage runs to its plateau when its :class:`StageConfig` has a rule
  (:mod:`recall_theory.plateau`), judged on held-out draws (:func:`stage_evaluator`);
  ``runner.stage_costs[stage]`` then holds the steps used, whether the plateau was reached
  and the last evaluation (objective, optimum, sub-optimality). A stage without a rule is
  evaluated once at its end.

  ``draws[i]`` (optional, filled in): ``samples`` drawn for training (2 per preference
  pair; every on-policy RLOO sample) and ``target`` (how many of them lie in A). An RLOO
  stage's per-step counts are saved with its checkpoints, so a resumed stage counts every
  step; ``complete`` is False only if a count is missing (a checkpoint written before the
  counts were saved). ``law_samples``: the reference's samples behind the law
  (:class:`LawBook`), which give the optimum's ``log Z`` (one dict for every seed, or one
  per seed); drawn per seed (``config.reference_samples``) when not given.
  """
  p = int(np.shape(groundtruth.prompt)[0])
  if algorithm not in ALGORITHMS:
    raise InputError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
  n = len(seeds)
  keys = [_stage_key(seed, stage if data_stages is None else data_stages[i])
          for i, (seed, stage) in enumerate(zip(seeds, stages))]
  draws = [{} for _ in range(n)] if draws is None else list(draws)
  evaluates = []
  for i, key in enumerate(keys):
    if law_samples is None:
      samples = reference_sample(reference, groundtruth, jax.random.fold_in(key, _LAW_STREAM),
                                 config.reference_samples)
    else:
      samples = law_samples[i] if isinstance(law_samples, (list, tuple)) else law_samples
    evaluates.append(stage_evaluator(config, groundtruth, reference, algorithm, key, samples))
  if algorithm in PREFERENCE_ALGORITHMS:
    cfg = config.preference_train
    data = []
    for key, record in zip(keys, draws):
      pairs = preference_pairs(reference, groundtruth, jax.random.fold_in(key, _DATA_STREAM),
                               config.n_pairs, config.bt_scale)
      record.update(samples=2 * config.n_pairs, target=pairs.pop("n_target"), complete=True)
      if algorithm == "simpo":
        pairs = {k: pairs[k] for k in ("chosen", "rejected")}
      data.append(pairs)
    loss_key, loss_fn = preference_loss(config, algorithm, p)

    def make_batch(step, i, _):
      return minibatch(jax.random.fold_in(keys[i], step), data[i], cfg.batch_size)
  else:
    cfg = config.rloo_train
    loss_key = ("rloo", p, config.rloo_beta, config.rloo_group)
    loss_fn = losses.make_rloo_loss(p, config.rloo_beta, config.rloo_group)
    rollout = make_rollout(groundtruth, reference, cfg.batch_size)
    seen: list[dict[int, int]] = [{} for _ in range(n)]

    def make_batch(step, i, current_model):
      batch = rollout(current_model(), jax.random.fold_in(keys[i], step))
      seen[i][step] = count_in_target(batch)
      return {k: batch[k] for k in ("tokens", "reward", "ref_logp")}
  models = runner.train_seeds(stages, [copy_model(policy) for _ in range(n)], loss_key, loss_fn, cfg,
                              make_batch, evaluates,
                              None if algorithm in PREFERENCE_ALGORITHMS else seen)
  for i, (stage, model) in enumerate(zip(stages, models)):
    cost = runner.stage_costs[stage]
    if not cost["checkpoints"]:  # a fixed-step stage: evaluated at its end
      cost["checkpoints"] = [dataclasses.replace(evaluates[i](model), step=cost["steps"])]
    if algorithm == "rloo":
      draws[i].update(samples=cost["steps"] * cfg.batch_size, target=sum(seen[i].values()),
                      complete=len(seen[i]) == cost["steps"])
    record_alignment_cost(runner, stage, algorithm=algorithm, policy=policy, reference=reference,
                          sampler=(reference.config if algorithm in PREFERENCE_ALGORITHMS
                                   else policy.config),
                          groundtruth=groundtruth, batch_size=cfg.batch_size,
                          samples=draws[i]["samples"])
  return models


# -- the law beside every aligned model -----------------------------------------------------
def reference_sample(model: Transformer, groundtruth: GroundTruth, key, n: int) -> dict:
  """n samples of a reference: their oracle rewards R [n] and membership in A [n] (numpy)."""
  x = metrics.sample_model(model, groundtruth, key, n)
  return {"reward": np.asarray(groundtruth.reward(x), np.float64),
          "in_target": np.asarray(groundtruth.shows_target(x), bool)}


class LawBook:
  """The law's inputs per reference model, computed once and reused by every row.

  ``add_reference(name, model)`` draws ``config.reference_samples`` samples of it;
  ``stats(name, algorithm)`` gives ``p_ref`` and ``Delta/beta`` with intervals
  (:func:`recall_theory.lm.law.reference_statistics`).
  """

  def __init__(self, config: ExperimentConfig, groundtruth: GroundTruth, seed: int = 0):
    self.config, self.groundtruth = config, groundtruth
    self.samples: dict[str, dict] = {}
    self._stats: dict[tuple, dict] = {}
    self._streams: dict[str, str] = {}
    self._key = jax.random.fold_in(jax.random.key(3_000_017), seed)

  def add_reference(self, name: str, model: Transformer, stream: str | None = None) -> None:
    """Sample ``model`` as reference ``name``; ``stream`` (default ``name``) keys the draws
    and the bootstrap, so references sharing a stream use common random numbers."""
    stream = name if stream is None else stream
    self._streams[name] = stream
    key = jax.random.fold_in(self._key, zlib.crc32(stream.encode()) & 0x7FFFFFFF)
    self.samples[name] = reference_sample(model, self.groundtruth, key,
                                          self.config.reference_samples)

  def stats(self, name: str, algorithm: str) -> dict:
    if (name, algorithm) not in self._stats:
      c = self.config
      ref = self.samples[name]
      stream = self._streams.get(name, name)
      rng = np.random.default_rng(zlib.crc32(f"{stream}/{algorithm}".encode()))
      self._stats[(name, algorithm)] = law_lib.reference_statistics(
          ref["reward"], ref["in_target"], algorithm=algorithm, beta=c.beta,
          rloo_beta=c.rloo_beta, ipo_beta=c.ipo_beta, bt_scale=c.bt_scale, rng=rng)
    return self._stats[(name, algorithm)]


def law_row(book: LawBook, *, algorithm: str, reference: str, sampler: str, draws: dict,
            measured: dict, n_eval: int, note: str = "") -> dict:
  """The law's columns (:data:`recall_theory.schema.LAW_COLUMNS`) for one aligned model.

  Args:
    book: the references' statistics.
    algorithm: the alignment algorithm.
    reference: name in ``book`` of the model the objective is anchored to (SimPO: the
      policy it started from).
    sampler: name in ``book`` of the model the training draws came from (preference
      pairs: the reference; RLOO: the initial policy).
    draws: :func:`align`'s draw counts (``samples``, ``target``, ``complete``).
    measured: the model's metrics (``target_share``, ``kl_ref``).
    n_eval: evaluation samples behind ``target_share`` (Wilson interval).
    note: appended to the estimator string.
  """
  ref = book.stats(reference, algorithm)
  smp = book.stats(sampler, algorithm)
  k = int(round(measured["target_share"] * n_eval))
  mass = law_lib.target_rate(np.arange(n_eval) < k)
  estimator = (f"{ref['estimator']}; aligned mass: monte-carlo n={n_eval}, wilson 95%; "
               f"kl: monte-carlo mean of log pi - log pi_ref over the {n_eval} samples")
  cols = schema.law_columns(
      reference_recall=ref["reference_recall"], delta_over_beta=ref["delta_over_beta"],
      aligned_mass=mass["rate"], kl=measured["kl_ref"], n_samples=draws["samples"],
      sampler_recall=smp["reference_recall"],
      reference_recall_interval=ref["reference_recall_interval"],
      delta_over_beta_interval=ref["delta_over_beta_interval"],
      aligned_mass_interval=(mass["low"], mass["high"]),
      estimator=estimator + (f"; {note}" if note else ""))
  row = schema.law_rows(cols)[0]
  if algorithm not in law_lib.LAW_ALGORITHMS:  # no Gibbs optimum: no prediction
    row.update(predicted_mass=math.nan, predicted_mass_low=math.nan, predicted_mass_high=math.nan)
  row.update(law_reference=reference, sampler=sampler,
             target_samples_drawn=draws["target"] if draws.get("complete") else math.nan)
  return row


def empty_law_row(note: str) -> dict:
  """Law columns of a model that is not aligned (teacher, student): all n/a."""
  row = {name: math.nan for name in schema.LAW_COLUMNS}
  row.update(above_ceiling=False, estimator=note, law_reference="", sampler="",
             target_samples_drawn=math.nan)
  return row


# -- the whole comparison ----------------------------------------------------------------
A_K_NOTE = ("A-K: predicted is the optimum of its aligned teacher A (reference teacher); the "
            "distillation at tau after it is not part of the law")


def prepare_run(config: ExperimentConfig, seeds: Sequence[int], *, groundtruth=None,
                checkpoint_dir=None, resume: bool = False, progress: bool = True,
                n_devices: int | None = None, interrupt_after: int | None = None,
                fingerprint: dict | None = None):
  """Validate, build the mesh and the checkpointer: ``(groundtruth, runner, seeds)``."""
  groundtruth = MarkovMixture(config.groundtruth) if groundtruth is None else groundtruth
  config.validate(groundtruth)
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise InputError(f"seeds must be distinct non-negative integers, got {seeds}")
  mesh = sharding.make_mesh(n_devices, config.fsdp)
  for name, cfg in (("teacher_train", config.teacher_train),
                    ("student_train", config.student_train),
                    ("preference_train", config.preference_train),
                    ("rloo_train", config.rloo_train)):
    if cfg.batch_size % mesh.devices.size:
      raise InputError(f"{name}.batch_size={cfg.batch_size} must be divisible by the number of "
                       f"devices ({mesh.devices.size})")
  checkpointer = ckpt_lib.Checkpointer(checkpoint_dir)
  checkpointer.check_or_write_fingerprint(
      {"config": config.to_dict(), "seeds": seeds, "groundtruth": type(groundtruth).__name__,
       "n_devices": int(mesh.devices.size), **(fingerprint or {})}, resume)
  runner = Runner(mesh=mesh, checkpointer=checkpointer, checkpoint_every=config.checkpoint_every,
                  progress=progress, interrupt_after=interrupt_after)
  return groundtruth, runner, seeds


class Recorder:
  """Evaluates models into result rows: ID columns, metrics, the law's columns, cost."""

  def __init__(self, config: ExperimentConfig, groundtruth: GroundTruth, runner: Runner,
               seeds: Sequence[int], book: LawBook, setting: str):
    self.config, self.groundtruth, self.runner = config, groundtruth, runner
    self.book, self.setting = book, setting
    self.rows: list[dict] = []
    self.gt_samples = {s: groundtruth.sample(jax.random.fold_in(jax.random.key(2_000_003), s),
                                             config.eval_samples) for s in seeds}

  def __call__(self, pipeline: str, algorithm: str, seed: int, model, ref, *, stages=(),
               law: dict | None = None, extra: dict | None = None,
               aligned: bool = False) -> dict:
    """Evaluate ``model`` (KL against ``ref``); ``law``: :func:`law_row` keywords or None.

    ``aligned``: the model is the output of its last stage, an alignment stage against
    ``ref``; its :data:`~recall_theory.schema.TRAINING_COLUMNS` then give that stage's
    steps, plateau and held-out sub-optimality, and ``kl_to_optimum`` = KL(model || the
    law's optimum) from the evaluation samples (theory.md item 13). Otherwise they describe
    the last (fixed-step) stage and the optimum columns are nan.

    ``stages``: every training stage of the pipeline that made this model, in order
    (shared ones included: K-A = teacher, student, K-A). The last one's cost goes into
    ``stage_steps``, ``stage_samples_drawn``, ``stage_seconds``; the sums over all into
    ``pipeline_steps``, ``pipeline_samples_drawn``, ``pipeline_seconds`` (samples drawn
    from p*, the teacher or a policy for training; evaluation and the law's reference
    samples are kept apart, in ``eval_seconds``). FLOPs (:func:`stage_flops`, counted
    from the configuration: training, KV-cache sampling, reference log-probs) likewise
    as ``stage_*_flops`` and ``pipeline_*_flops`` with their sum ``pipeline_flops``.
    """
    key = jax.random.fold_in(jax.random.key(1_000_003), seed)
    row = {"track": "lm", "pipeline": pipeline, "algorithm": algorithm, "seed": seed,
           "setting": self.setting}
    row.update(extra or {})
    started = time.perf_counter()
    measured, draws = metrics.evaluate(model, self.groundtruth, key, n=self.config.eval_samples,
                                       ref_model=ref, groundtruth_samples=self.gt_samples[seed],
                                       return_draws=True)
    row.update(measured)
    if law is None:
      row.update(empty_law_row("not aligned: reference row"))
    else:
      row.update(law_row(self.book, measured=measured, n_eval=self.config.eval_samples, **law))
    costs = [self.runner.stage_costs.get(st, {}) for st in stages]
    own = costs[-1] if costs else {}
    row.update(self._training(own, algorithm, draws, law if aligned else None))
    row.update(stage_steps=own.get("steps", 0), stage_samples_drawn=own.get("samples", 0),
               stage_seconds=own.get("seconds", 0.0))
    for kind in ("train_flops", "sampling_flops", "reference_flops"):
      row[f"stage_{kind}"] = own.get(kind, 0.0)
    row.update(pipeline_steps=sum(c.get("steps", 0) for c in costs),
               pipeline_samples_drawn=sum(c.get("samples", 0) for c in costs),
               pipeline_seconds=sum(c.get("seconds", 0.0) for c in costs))
    for kind in ("train_flops", "sampling_flops", "reference_flops"):
      row[f"pipeline_{kind}"] = sum(c.get(kind, 0.0) for c in costs)
    row["pipeline_flops"] = sum(row[f"pipeline_{k}"] for k in ("train_flops", "sampling_flops",
                                                                "reference_flops"))
    row["eval_seconds"] = time.perf_counter() - started
    self.rows.append(row)
    return row

  def _training(self, cost: dict, algorithm: str, draws: dict, law: dict | None) -> dict:
    """The training columns of a row from its last stage's cost record."""
    if law is None or not cost.get("checkpoints"):
      return schema.training_columns(steps=cost.get("steps", 0),
                                     max_steps=cost.get("max_steps", cost.get("steps", 0)),
                                     plateau=schema.plateau_state(cost.get("plateau")))
    last = cost["checkpoints"][-1]
    kl_opt = math.nan
    if algorithm in law_lib.LAW_ALGORITHMS:
      inputs = law_inputs(self.config, algorithm, self.book.samples[law["reference"]])
      kl_opt = float(np.mean(heldout.kl_to_optimum(
          draws["log_q"], draws["log_ref"], inputs["reward_fn"](draws["reward"]),
          inputs["coefficient"], inputs["log_z"])))
    return schema.training_columns(
        steps=cost["steps"], max_steps=cost["max_steps"], plateau=schema.plateau_state(cost["plateau"]),
        objective=last.objective, objective_optimum=last.optimum, suboptimality=last.suboptimality,
        kl_to_optimum=kl_opt)


def sampler_of(algorithm: str, reference: str, policy: str) -> str:
  """Where an algorithm's training draws come from: pairs from the reference, RLOO on-policy."""
  return policy if algorithm == "rloo" else reference


def run_comparison(config: ExperimentConfig, seeds: Sequence[int], *,
                   groundtruth: GroundTruth | None = None, checkpoint_dir=None,
                   resume: bool = False, progress: bool = True, n_devices: int | None = None,
                   interrupt_after: int | None = None, setting: str = "") -> list[dict]:
  """Teacher, student, then K-A, A-K and the control per seed and algorithm.

  Returns one row per (pipeline, algorithm, seed) with the metrics of
  :mod:`recall_theory.lm.metrics`, the law's columns (:func:`law_row`; n/a on the
  reference rows) and the stages' cost; ``teacher``, ``student`` and ``A`` (the
  aligned teacher before distillation) are included as reference rows. ``kl_ref`` is
  taken against the pipeline's alignment reference (K-A: the student; A, A-K and the
  control: the teacher; the student row: the teacher it was distilled from). SimPO is
  reference-free, so it has no control row (the "teacher reference" would only change
  where its pairs come from).
  """
  groundtruth, runner, seeds = prepare_run(
      config, seeds, groundtruth=groundtruth, checkpoint_dir=checkpoint_dir, resume=resume,
      progress=progress, n_devices=n_devices, interrupt_after=interrupt_after)
  teacher = train_teacher(runner, config, groundtruth)
  student = distill(runner, config, groundtruth, teacher, "student", config.seed + 1, config.seed)
  book = LawBook(config, groundtruth)
  book.add_reference("teacher", teacher)
  book.add_reference("student", student)
  record = Recorder(config, groundtruth, runner, seeds, book, setting)
  # Each alignment stage is trained for every seed (Runner.train_seeds); rows are recorded
  # afterwards, seed by seed, in the order teacher, student, then per algorithm K-A, A, A-K
  # and the control.
  aligned: dict[tuple[str, str], list] = {}
  for alg in config.algorithms:
    for pipeline, policy, reference, ref_name in (("K-A", student, student, "student"),
                                                  ("A", teacher, teacher, "teacher"),
                                                  ("K-A(teacher-ref)", student, teacher, "teacher")):
      if pipeline == "K-A(teacher-ref)" and alg not in law_lib.LAW_ALGORITHMS:
        continue  # SimPO has no reference to swap
      stages = [f"{pipeline}/{alg}/seed{seed}" for seed in seeds]
      draws = [{} for _ in seeds]
      models = align_seeds(runner, config, groundtruth, policy, reference, alg, stages, seeds, draws,
                           law_samples=book.samples[ref_name])
      aligned[(pipeline, alg)] = list(zip(models, stages, draws))
    aligned[("A-K", alg)] = [
        (distill(runner, config, groundtruth, a, f"A-K/{alg}/seed{seed}",
                 init_seed=config.seed + 1 + 7919 * (seed + 1), data_seed=seed),
         f"A-K/{alg}/seed{seed}", None)
        for seed, (a, _, _) in zip(seeds, aligned[("A", alg)])]
  for i, seed in enumerate(seeds):
    record("teacher", "none", seed, teacher, None, stages=("teacher",))
    record("student", "none", seed, student, teacher, stages=("teacher", "student"))
    for alg in config.algorithms:
      ka, stage, draws = aligned[("K-A", alg)][i]
      record("K-A", alg, seed, ka, student, stages=("teacher", "student", stage), aligned=True,
             law=dict(algorithm=alg, reference="student", sampler="student", draws=draws))
      a, a_stage, a_draws = aligned[("A", alg)][i]
      record("A", alg, seed, a, teacher, stages=("teacher", a_stage), aligned=True,
             law=dict(algorithm=alg, reference="teacher", sampler="teacher", draws=a_draws))
      ak, stage, _ = aligned[("A-K", alg)][i]
      record("A-K", alg, seed, ak, teacher, stages=("teacher", a_stage, stage),
             law=dict(algorithm=alg, reference="teacher", sampler="teacher", draws=a_draws,
                      note=A_K_NOTE))
      if ("K-A(teacher-ref)", alg) in aligned:
        ctrl, stage, draws = aligned[("K-A(teacher-ref)", alg)][i]
        record("K-A(teacher-ref)", alg, seed, ctrl, teacher, stages=("teacher", "student", stage),
               aligned=True, law=dict(algorithm=alg, reference="teacher",
                                      sampler=sampler_of(alg, "teacher", "student"), draws=draws))
  schema.report_ceiling_violations(record.rows, where="lm")
  return record.rows
