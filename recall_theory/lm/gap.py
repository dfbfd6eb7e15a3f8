"""Where a trained transformer's shortfall comes from: the four levels of theory.md item 13.

For one reference ``pi_ref``, one algorithm and its coefficient, four aligned masses are
measured on the same reference, reward and coefficient, each trained to its plateau
(:mod:`recall_theory.plateau`):

1. **law**: the population optimum ``sigmoid(logit p_ref + Delta/beta)`` (theory item 12),
   from a large pool of reference samples;
2. **best in class**: the policy's architecture, started where the algorithm starts,
   fitted by maximum likelihood to samples of the exact tilt ``pi* = pi_ref e^{r/beta}/Z``.
   The samples are exact: a reference sample ``y`` is accepted with probability
   ``exp((r(y) - r_max)/beta)`` (the effective reward is bounded by ``r_max = r(R = 1)``);
3. **covering sampler**: the algorithm's own objective, with the same optimum, trained on
   draws from the proposal ``q = (1 - lam) pi_ref + lam pi_ref(. | A)`` that covers the target
   (``lam = covering_share``). Both parts are taken from the pool (uniform over the pool,
   uniform over its samples in A), so ``q`` is known exactly relative to the pool's empirical
   reference: ``q(y) / pi_ref(y) = 1 - lam + lam 1_A(y) / p``, ``p = k/N`` the pool's share.

   * DPO: pairs ``y1, y2 ~ q`` (independent), Bradley-Terry labels at scale ``c``. DPO's
     population minimiser is the tilt for any pair distribution with full support, so the
     optimum is unchanged.
   * RLOO: the importance-weighted leave-one-out estimator of
     :func:`make_rloo_importance_loss` with weights ``w = pi(y)/q(y)``: unbiased for the
     gradient of ``E_pi[r] - beta KL(pi || pi_ref)``, the same objective;
4. **as it is**: :func:`recall_theory.lm.pipeline.align_seeds`, to plateau.

Differences of logits between the levels (:mod:`recall_theory.decomposition`) split the
shortfall of a trained model: representation (1 - 2), optimisation (2 - 3) and sampling
(3 - 4), and for K-A the learning trap (its law against A's).

Pipelines: ``K-A`` (student policy, student reference), ``A`` (teacher, teacher) and
``K-A(teacher-ref)`` (student policy, teacher reference). Every seed draws its own pools, so
the levels' spread over seeds includes the randomness of their data.

Example::

  rows = run_gap(presets.CPU_TINY, GAP_SIZES["cpu-tiny"], seeds=[0, 1], algorithms=("dpo",))
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from recall_theory import progress as progress_lib
from recall_theory import schema
from recall_theory.errors import InputError
from recall_theory.lm import heldout, losses, metrics
from recall_theory.lm import law as law_lib
from recall_theory.lm import pipeline as pl
from recall_theory.lm.groundtruth import GroundTruth
from recall_theory.lm.model import Transformer
from recall_theory.plateau import PlateauRule

LEVELS = ("law", "best_in_class", "covering_sampler", "as_is")
GAP_ALGORITHMS = ("dpo", "rloo")
GAP_PIPELINES = ("K-A", "A", "K-A(teacher-ref)")
_POOL_STREAM = 0x7FFFFFF0
_TILT_STREAM = 0x7FFFFFF1
_PAIR_STREAM = 0x7FFFFFF2
_EVAL_STREAM = 0x7FFFFFF3


@dataclasses.dataclass(frozen=True)
class GapSizes:
  """How much data the levels get (the algorithms' own settings come from the preset).

  Attributes:
    student_pool, teacher_pool: reference samples drawn per seed from each reference (the
      tilt's rejection sampler and the covering proposal both draw from them).
    covering_share: ``lam``, the proposal's share of draws conditioned on the target.
    heldout_share: share of the tilt samples (and of the pool) kept for held-out evaluation.
    mle_train: the best-in-class fit's optimisation (to its plateau).
    eval_samples: policy samples behind each level's measured mass (Wilson interval).
  """
  student_pool: int
  teacher_pool: int
  covering_share: float = 0.5
  heldout_share: float = 0.2
  mle_train: pl.StageConfig = pl.StageConfig(
      2048, 64, 1e-3, warmup_steps=10,
      plateau=PlateauRule(first_check=64, objective_tolerance=0.02))
  eval_samples: int = 8192

  def validate(self) -> "GapSizes":
    for name in ("student_pool", "teacher_pool", "eval_samples"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 64:
        raise InputError(f"{name} must be an integer >= 64, got {v!r}")
    for name in ("covering_share", "heldout_share"):
      v = getattr(self, name)
      if not (isinstance(v, float) and 0.0 < v < 1.0):
        raise InputError(f"{name} must lie in (0, 1), got {v!r}")
    self.mle_train.validate("mle_train")
    return self


GAP_SIZES = {
    "cpu-tiny": GapSizes(student_pool=1 << 19, teacher_pool=1 << 17),
    "test": GapSizes(student_pool=8192, teacher_pool=8192, eval_samples=256,
                     mle_train=pl.StageConfig(4, 16, 1e-3, plateau=PlateauRule(first_check=2))),
}


# -- pools ------------------------------------------------------------------------------------
def reference_pool(model: Transformer, groundtruth: GroundTruth, key, n: int) -> dict:
  """n samples of a reference with their oracle reward, membership in A and log-probability."""
  p = int(np.shape(groundtruth.prompt)[0])
  tokens = metrics.sample_model(model, groundtruth, key, n, chunk=8192)
  return {"tokens": tokens,
          "reward": np.asarray(groundtruth.reward(tokens), np.float64),
          "in_target": np.asarray(groundtruth.shows_target(tokens), bool),
          "log_ref": np.asarray(metrics.model_log_prob(model, tokens, p, chunk=8192), np.float64)}


def split_pool(pool: dict, heldout_share: float) -> tuple[dict, dict]:
  """(training part, held-out part) of a pool: its last ``heldout_share`` of samples held out."""
  n = len(pool["reward"])
  cut = n - max(1, int(round(heldout_share * n)))
  return ({k: v[:cut] for k, v in pool.items()}, {k: v[cut:] for k, v in pool.items()})


def tilt_acceptance(effective_N, coefficient: float, effective_max: float) -> np.ndarray:
  """Rejection sampling of the tilt: accept probability ``exp((r - r_max)/beta)`` per sample."""
  return np.exp((np.asarray(effective_N, np.float64) - effective_max) / coefficient)


def tilt_samples(pool: dict, key, *, reward_fn, coefficient: float) -> np.ndarray:
  """Indices of the pool samples accepted as exact samples of the tilt ``pi_ref e^{r/beta}/Z``.

  The oracle reward lies in [0, 1] and ``reward_fn`` is increasing, so ``r <= r(1)``.
  """
  r = reward_fn(pool["reward"])
  accept = tilt_acceptance(r, coefficient, float(reward_fn(np.array(1.0))))
  u = np.asarray(jax.random.uniform(key, (len(r),), jnp.float64 if jax.config.jax_enable_x64
                                    else jnp.float32), np.float64)
  return np.flatnonzero(u < accept)


def law_level(pool: dict, *, reward_fn, coefficient: float, rng: np.random.Generator) -> dict:
  """Level 1 from a pool: ``p_ref``, ``Delta/beta`` and the predicted mass, with intervals."""
  rate = law_lib.target_rate(pool["in_target"])
  g = reward_fn(pool["reward"])
  bounds = (float(reward_fn(np.array(0.5))), float(reward_fn(np.array(1.0))))
  gap = law_lib.soft_max_gap(g, pool["in_target"], coefficient, target_bounds=bounds, rng=rng)
  cols = schema.law_columns(reference_recall=rate["rate"], delta_over_beta=gap["value"],
                            aligned_mass=np.nan, kl=np.nan, n_samples=0,
                            reference_recall_interval=(rate["low"], rate["high"]),
                            delta_over_beta_interval=(gap["low"], gap["high"]))
  return {"reference_recall": rate["rate"], "reference_recall_low": rate["low"],
          "reference_recall_high": rate["high"], "delta_over_beta": gap["value"],
          "delta_over_beta_low": gap["low"], "delta_over_beta_high": gap["high"],
          "predicted_mass": float(cols["predicted_mass"][0]),
          "predicted_mass_low": float(cols["predicted_mass_low"][0]),
          "predicted_mass_high": float(cols["predicted_mass_high"][0]),
          "k_reference": rate["k"], "n_reference": rate["n"],
          "log_z": heldout.log_partition(g, coefficient)}


# -- the covering proposal ----------------------------------------------------------------------
def proposal_log_ratio(in_target_N, share_in_pool: float, covering_share: float) -> np.ndarray:
  """``log q(y)/pi_ref(y) = log(1 - lam + lam 1_A(y)/p)`` of the covering proposal."""
  in_a = np.asarray(in_target_N, bool)
  return np.log(1.0 - covering_share + covering_share * in_a / share_in_pool)


def proposal_indices(key, pool: dict, n: int, covering_share: float) -> np.ndarray:
  """n indices into ``pool`` drawn from ``q = (1 - lam) uniform(pool) + lam uniform(pool in A)``."""
  in_a = np.flatnonzero(pool["in_target"])
  if in_a.size == 0:
    raise InputError("the reference pool holds no sample in the target set: enlarge the pool "
                     "(the covering sampler needs the reference conditioned on the target)")
  k_mix, k_all, k_a = jax.random.split(key, 3)
  from_a = np.asarray(jax.random.bernoulli(k_mix, covering_share, (n,)))
  anywhere = np.asarray(jax.random.randint(k_all, (n,), 0, len(pool["reward"])))
  target = in_a[np.asarray(jax.random.randint(k_a, (n,), 0, in_a.size))]
  return np.where(from_a, target, anywhere)


def importance_loo_advantages(scores_B, log_w_B, group_size: int):
  """``w_i (s_i - b_i)`` with the self-normalised leave-one-out baseline of each group.

  ``b_i = sum_{j != i} w_j s_j / sum_{j != i} w_j`` over the other members of i's group of
  ``group_size`` consecutive draws: it does not depend on draw i, so with ``w = pi/q``
  ``E_q[w_i (s_i - b_i) grad log pi(y_i)] = E_pi[s grad log pi]`` exactly (the baseline term
  vanishes because ``E_q[w grad log pi] = E_pi[grad log pi] = 0``).

  The leave-one-out sums are taken as a softmax of the log-weights with draw i masked out,
  not as ``sum - w_i``: when one weight carries the group, ``sum - w_i`` cancels to rounding
  noise (or below zero) and the baseline explodes.
  """
  lw = log_w_B.reshape(-1, group_size)
  sg = scores_B.reshape(-1, group_size)
  others = ~jnp.eye(group_size, dtype=bool)                                  # [i, j]: j != i
  logits_NxGxG = jnp.where(others, lw[:, None, :], -jnp.inf)
  baseline = jnp.sum(jax.nn.softmax(logits_NxGxG, axis=-1) * sg[:, None, :], axis=-1)
  return (jnp.exp(lw) * (sg - baseline)).reshape(-1)


def make_rloo_importance_loss(prompt_len: int, beta: float, group_size: int):
  """RLOO on draws from a fixed proposal q, importance weighted: the objective of RLOO.

  batch: ``tokens`` [B, L] drawn from q in groups of ``group_size``, ``reward`` [B],
  ``ref_logp`` [B] and ``log_q_over_ref`` [B] (``log q(y)/pi_ref(y)``). With the weights
  ``w = pi/q = exp(log pi - log pi_ref - log q/pi_ref)`` and the shaped score
  ``s = R - beta (log pi - log pi_ref)`` (both without gradient), the loss is
  ``-mean(A log pi)`` with ``A`` from :func:`importance_loo_advantages`. The weights are
  divided by their batch mean first (self-normalised importance sampling): ``pi/q`` reaches
  ``e^{90}`` and more once the policy has moved far from the reference, which overflows
  float32; the normalised estimator is consistent for ``grad (E_pi[R] - beta KL(pi ||
  pi_ref))``, the gradient RLOO estimates on policy samples (the unnormalised core is exactly
  unbiased), and the rescaling only sets the step's scale, which Adam normalises anyway.
  """
  if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
    raise InputError(f"group_size must be an integer >= 2, got {group_size!r}")

  def loss_fn(model, batch):
    logp = losses.sequence_log_prob(model, batch["tokens"], prompt_len)
    log_ratio = jax.lax.stop_gradient(logp) - batch["ref_logp"]
    log_w = log_ratio - batch["log_q_over_ref"]
    log_w = log_w - (jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0]))   # mean weight 1
    scores = batch["reward"] - beta * log_ratio
    adv = jax.lax.stop_gradient(importance_loo_advantages(scores, log_w, group_size))
    # effective sample size in log space (the weights themselves may overflow float32)
    ess = jnp.exp(2.0 * jax.nn.logsumexp(log_w) - jax.nn.logsumexp(2.0 * log_w))
    return -jnp.mean(adv * logp), {"effective_sample_size": ess, "kl": jnp.mean(log_ratio)}

  return loss_fn


# -- one seed's data ------------------------------------------------------------------------------
@dataclasses.dataclass
class SeedData:
  """One seed's pools (training and held-out part) per reference, and its tilt samples.

  Algorithms whose optima are the same tilt (DPO's ``c R/beta`` and RLOO's ``R/beta_rloo``
  when ``c/beta = 1/beta_rloo``) share one set of tilt samples (``tilt_id``), so their
  best-in-class fits are one and the same.
  """
  pools: dict        # reference name -> (train, heldout)
  tilts: dict        # (reference name, algorithm) -> (train tokens, held-out tokens, held-out log pi*)
  laws: dict         # (reference name, algorithm) -> law_level dict
  tilt_ids: dict     # algorithm -> the tilt it aims at (equal ids: the same tilt)


def tilt_id(reward_fn, coefficient: float) -> tuple:
  """Identifies the tilt ``e^{r(R)/beta}`` of an effective reward linear in R (dpo, rloo)."""
  return (round(float(reward_fn(np.array(0.0))) / coefficient, 12),
          round(float(reward_fn(np.array(1.0))) / coefficient, 12))


def seed_data(config: pl.ExperimentConfig, sizes: GapSizes, groundtruth: GroundTruth,
              references: dict, seed: int, algorithms: Sequence[str]) -> SeedData:
  """Draw one seed's pools from every reference and its tilt samples for every algorithm."""
  key = jax.random.fold_in(jax.random.key(seed), _POOL_STREAM)
  pools, tilts, laws, tilt_ids = {}, {}, {}, {}
  for name, model in references.items():
    n = sizes.student_pool if name == "student" else sizes.teacher_pool
    pool = reference_pool(model, groundtruth, jax.random.fold_in(key, pl.stream_index(name)), n)
    pools[name] = split_pool(pool, sizes.heldout_share)
    for alg in algorithms:
      law = pl.law_inputs(config, alg, pool)
      rng = np.random.default_rng([seed, pl.stream_index(name), pl.stream_index(alg)])
      laws[(name, alg)] = law_level(pool, reward_fn=law["reward_fn"], coefficient=law["coefficient"],
                                    rng=rng)
      tilt_ids[alg] = tilt_id(law["reward_fn"], law["coefficient"])
      idx = tilt_samples(pool, jax.random.fold_in(jax.random.fold_in(key, _TILT_STREAM),
                                                  pl.stream_index(f"{name}/{tilt_ids[alg]}")),
                         reward_fn=law["reward_fn"], coefficient=law["coefficient"])
      cut = len(idx) - max(1, int(round(sizes.heldout_share * len(idx))))
      train, held = idx[:cut], idx[cut:]
      log_opt = (pool["log_ref"][held] + law["reward_fn"](pool["reward"][held]) / law["coefficient"]
                 - laws[(name, alg)]["log_z"])
      tilts[(name, alg)] = (pool["tokens"][train], pool["tokens"][held], log_opt)
  return SeedData(pools, tilts, laws, tilt_ids)


# -- the levels ----------------------------------------------------------------------------------
def _measure(model, reference, groundtruth, key, n: int, law: dict, law_inputs: dict) -> dict:
  """Aligned mass (Wilson 95%), KL(pi || pi_ref) and KL(pi || pi*) from n policy samples."""
  p = int(np.shape(groundtruth.prompt)[0])
  x, log_q, in_a = heldout.policy_draws(model, groundtruth, key, n)
  log_ref = np.asarray(metrics.model_log_prob(reference, x, p), np.float64)
  r = law_inputs["reward_fn"](np.asarray(groundtruth.reward(x), np.float64))
  rate = law_lib.target_rate(in_a)
  return {"aligned_mass": rate["rate"], "aligned_mass_low": rate["low"],
          "aligned_mass_high": rate["high"], "n_eval": n,
          "kl": float(np.mean(log_q - log_ref)),
          "kl_to_optimum": float(np.mean(heldout.kl_to_optimum(
              log_q, log_ref, r, law_inputs["coefficient"], law["log_z"])))}


def _training(cost: dict) -> dict:
  last = cost["checkpoints"][-1] if cost.get("checkpoints") else None
  return schema.training_columns(
      steps=cost["steps"], max_steps=cost["max_steps"], plateau=schema.plateau_state(cost["plateau"]),
      objective=math.nan if last is None else last.objective,
      objective_optimum=math.nan if last is None else last.optimum,
      suboptimality=math.nan if last is None else last.suboptimality)


def best_in_class(runner: pl.Runner, config: pl.ExperimentConfig, sizes: GapSizes, groundtruth,
                  policy: Transformer, data: Sequence[SeedData], ref_name: str, algorithm: str,
                  stages: Sequence[str], keys: Sequence) -> list[Transformer]:
  """Level 2: ``policy`` fitted by maximum likelihood to each seed's tilt samples, to plateau."""
  p = int(np.shape(groundtruth.prompt)[0])
  cfg = sizes.mle_train
  train = [jnp.asarray(d.tilts[(ref_name, algorithm)][0]) for d in data]
  for stage, tokens in zip(stages, train):
    if tokens.shape[0] < cfg.batch_size:
      raise InputError(f"{stage}: only {tokens.shape[0]} tilt samples were accepted; enlarge the "
                       f"{ref_name} pool")
  evaluates = [heldout.likelihood_evaluator(groundtruth, d.tilts[(ref_name, algorithm)][1],
                                            d.tilts[(ref_name, algorithm)][2],
                                            jax.random.fold_in(k, _EVAL_STREAM), n=config.eval_samples)
               for d, k in zip(data, keys)]

  def make_batch(step, i, _):
    return pl.minibatch(jax.random.fold_in(keys[i], step), {"tokens": train[i]}, cfg.batch_size)

  return runner.train_seeds(stages, [pl.copy_model(policy) for _ in stages], ("mle", p),
                            losses.make_mle_loss(p), cfg, make_batch, evaluates)


def covering_sampler(runner: pl.Runner, config: pl.ExperimentConfig, sizes: GapSizes, groundtruth,
                     policy: Transformer, reference: Transformer, data: Sequence[SeedData],
                     ref_name: str, algorithm: str, stages: Sequence[str],
                     keys: Sequence) -> list[Transformer]:
  """Level 3: the algorithm's objective trained to plateau on draws from the covering proposal."""
  p = int(np.shape(groundtruth.prompt)[0])
  lam = sizes.covering_share
  pools = [d.pools[ref_name] for d in data]
  if algorithm == "dpo":
    cfg = config.preference_train
    loss_key, loss_fn = pl.preference_loss(config, algorithm, p)
    pair_data, evaluates = [], []
    for (train, held), k in zip(pools, keys):
      k_train, k_held, k_label = jax.random.split(jax.random.fold_in(k, _PAIR_STREAM), 3)
      i1, i2 = np.split(proposal_indices(k_train, train, 2 * config.n_pairs, lam), 2)
      first_wins = np.asarray(jax.random.bernoulli(
          k_label, jax.nn.sigmoid(config.bt_scale * (train["reward"][i1] - train["reward"][i2]))))
      chosen, rejected = np.where(first_wins, i1, i2), np.where(first_wins, i2, i1)
      pair_data.append({"chosen": jnp.asarray(train["tokens"][chosen]),
                        "rejected": jnp.asarray(train["tokens"][rejected]),
                        "ref_chosen": jnp.asarray(train["log_ref"][chosen], jnp.float32),
                        "ref_rejected": jnp.asarray(train["log_ref"][rejected], jnp.float32)})
      h1, h2 = np.split(proposal_indices(k_held, held, 2 * config.heldout_pairs, lam), 2)
      q = 1.0 / (1.0 + np.exp(-config.bt_scale * (held["reward"][h1] - held["reward"][h2])))
      pairs = heldout.HeldOutPairs(y1=held["tokens"][h1], y2=held["tokens"][h2], q=q,
                                   r1=held["reward"][h1], r2=held["reward"][h2],
                                   ref1=held["log_ref"][h1], ref2=held["log_ref"][h2])
      evaluates.append(heldout.pair_evaluator(
          groundtruth, pairs, jax.random.fold_in(k, _EVAL_STREAM), n=config.eval_samples,
          algorithm="dpo", beta=config.beta, bt_scale=config.bt_scale))

    def make_batch(step, i, _):
      return pl.minibatch(jax.random.fold_in(keys[i], step), pair_data[i], cfg.batch_size)
  elif algorithm == "rloo":
    cfg = config.rloo_train
    loss_key = ("rloo-importance", p, config.rloo_beta, config.rloo_group, lam)
    loss_fn = make_rloo_importance_loss(p, config.rloo_beta, config.rloo_group)
    share = [float(np.mean(train["in_target"])) for train, _ in pools]
    evaluates = []
    for d, k in zip(data, keys):
      law = d.laws[(ref_name, algorithm)]
      evaluates.append(heldout.kl_regularised_evaluator(
          groundtruth, reference, jax.random.fold_in(k, _EVAL_STREAM), n=config.eval_samples,
          reward_fn=lambda r: r, coefficient=config.rloo_beta, log_z=law["log_z"]))

    def make_batch(step, i, _):
      train = pools[i][0]
      idx = proposal_indices(jax.random.fold_in(keys[i], step), train, cfg.batch_size, lam)
      return {"tokens": jnp.asarray(train["tokens"][idx]),
              "reward": jnp.asarray(train["reward"][idx], jnp.float32),
              "ref_logp": jnp.asarray(train["log_ref"][idx], jnp.float32),
              "log_q_over_ref": jnp.asarray(proposal_log_ratio(train["in_target"][idx], share[i], lam),
                                            jnp.float32)}
  else:
    raise InputError(f"the decomposition covers the algorithms {GAP_ALGORITHMS}, got {algorithm!r}")
  return runner.train_seeds(stages, [pl.copy_model(policy) for _ in stages], loss_key, loss_fn, cfg,
                            make_batch, evaluates)


def _whole(parts: tuple[dict, dict]) -> dict:
  """A pool's training and held-out parts together (the law's log Z uses the whole pool)."""
  train, held = parts
  return {k: np.concatenate([train[k], held[k]]) for k in ("reward", "in_target")}


PIPELINE_MODELS = {"K-A": ("student", "student"), "A": ("teacher", "teacher"),
                   "K-A(teacher-ref)": ("student", "teacher")}


def run_gap(config: pl.ExperimentConfig, sizes: GapSizes, seeds: Sequence[int], *,
            algorithms: Sequence[str] = GAP_ALGORITHMS, pipelines: Sequence[str] = GAP_PIPELINES,
            groundtruth: GroundTruth | None = None, progress: bool = True,
            setting: str = "") -> list[dict]:
  """The four levels for every pipeline, algorithm and seed: one row per (level, model).

  Teacher and student are trained once (as in :func:`recall_theory.lm.pipeline.run_comparison`);
  every seed then draws its pools and trains levels 2 to 4 (all seeds at once per stage).
  Rows carry the ids, ``level``, the measured mass with its Wilson interval (level 1: the
  predicted mass and its interval), the reference's ``p_ref`` and ``Delta/beta`` of that seed's
  pool, and the training columns.
  """
  sizes.validate()
  bad = [a for a in algorithms if a not in GAP_ALGORITHMS]
  if bad or not algorithms:
    raise InputError(f"the decomposition covers the algorithms {', '.join(GAP_ALGORITHMS)}; "
                     f"got {', '.join(bad) or 'none'}")
  bad = [q for q in pipelines if q not in GAP_PIPELINES]
  if bad or not pipelines:
    raise InputError(f"the decomposition covers the pipelines {', '.join(GAP_PIPELINES)}; "
                     f"got {', '.join(bad) or 'none'}")
  groundtruth, runner, seeds = pl.prepare_run(config, seeds, groundtruth=groundtruth, progress=progress)
  teacher = pl.train_teacher(runner, config, groundtruth)
  student = pl.distill(runner, config, groundtruth, teacher, "student", config.seed + 1, config.seed)
  models = {"teacher": teacher, "student": student}
  started = time.perf_counter()
  with progress_lib.stage("reference pools", total=len(seeds), unit="seeds", enabled=progress) as bar:
    data = []
    for seed in seeds:
      data.append(seed_data(config, sizes, groundtruth, models, seed, algorithms))
      bar.update(1)
  pool_seconds = time.perf_counter() - started
  rows = []
  fitted: dict[tuple, tuple[list, list]] = {}   # best-in-class fits shared by algorithms of one tilt
  for alg in algorithms:
    for pipeline in pipelines:
      policy_name, ref_name = PIPELINE_MODELS[pipeline]
      policy, reference = models[policy_name], models[ref_name]
      keys = [jax.random.fold_in(jax.random.key(seed), pl.stream_index(f"gap/{pipeline}/{alg}"))
              for seed in seeds]
      name = lambda level: [f"gap/{level}/{pipeline}/{alg}/seed{seed}" for seed in seeds]
      same_tilt = (policy_name, ref_name, data[0].tilt_ids[alg])
      if same_tilt not in fitted:
        fit_keys = [jax.random.fold_in(jax.random.key(seed), pl.stream_index(f"gap/fit/{same_tilt}"))
                    for seed in seeds]
        fitted[same_tilt] = (best_in_class(runner, config, sizes, groundtruth, policy, data, ref_name,
                                           alg, name("best_in_class"), fit_keys), name("best_in_class"))
      fits, fit_stages = fitted[same_tilt]
      trained = {
          "best_in_class": fits,
          "covering_sampler": covering_sampler(runner, config, sizes, groundtruth, policy, reference,
                                               data, ref_name, alg, name("covering_sampler"), keys),
          "as_is": pl.align_seeds(runner, config, groundtruth, policy, reference, alg, name("as_is"),
                                  seeds, law_samples=[_whole(d.pools[ref_name]) for d in data]),
      }
      for i, seed in enumerate(seeds):
        law = data[i].laws[(ref_name, alg)]
        inputs = pl.law_inputs(config, alg, _whole(data[i].pools[ref_name]))
        base = {"track": "lm", "pipeline": pipeline, "algorithm": alg, "seed": seed,
                "setting": setting, **{k: law[k] for k in (
                    "reference_recall", "reference_recall_low", "reference_recall_high",
                    "delta_over_beta", "delta_over_beta_low", "delta_over_beta_high",
                    "predicted_mass", "predicted_mass_low", "predicted_mass_high")},
                "pool_size": law["n_reference"], "pool_target_samples": law["k_reference"]}
        rows.append({**base, "level": "law", "aligned_mass": law["predicted_mass"],
                     "aligned_mass_low": law["predicted_mass_low"],
                     "aligned_mass_high": law["predicted_mass_high"], "n_eval": 0,
                     "kl": math.nan, "kl_to_optimum": 0.0,
                     **schema.training_columns(steps=0, max_steps=0, plateau=schema.PLATEAU_EXACT),
                     "seconds": pool_seconds / len(seeds)})
        for level in LEVELS[1:]:
          model = trained[level][i]
          stage = fit_stages[i] if level == "best_in_class" else name(level)[i]
          cost = runner.stage_costs[stage]
          measured = _measure(model, reference, groundtruth,
                              jax.random.fold_in(keys[i], _EVAL_STREAM + 1), sizes.eval_samples,
                              law, inputs)
          training = _training(cost)
          rows.append({**base, "level": level, **measured, **training,
                       "kl_to_optimum": measured["kl_to_optimum"], "seconds": cost["seconds"]})
  return rows
