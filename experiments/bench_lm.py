"""Benchmark of the transformer track: train-step throughput, MFU, and KV-cache sampling.

Two modes, each measuring a configuration against a baseline from the same run:

* ``--config smollm2-135m``: a SmolLM2-135M-shaped model (d 576, 30 layers, 9 heads / 3
  key-value heads, SwiGLU 1536, vocabulary 49152, sequence 2048) trained from scratch on
  random tokens (MLE, AdamW, float32 master weights). Prints training tokens/s and the
  model FLOP utilisation ``MFU = training FLOPs/token x tokens/s / peak`` (PaLM-style
  count, see ``ModelConfig.flops_per_token``; peak = dense bf16 FLOP/s of the device
  from PEAK_BF16_FLOPS), for the chosen attention (``--attention auto``: cuDNN flash
  attention on a GPU) and for the XLA-attention baseline, with their ratio. With
  ``--deterministic`` the same step is timed with XLA's deterministic ops too (its
  cost), in a fresh subprocess started before this process touches the device, with
  ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` set before JAX starts (the flag cannot
  be given to a running GPU backend: that crashed on an H200); the subprocess returns
  its numbers as JSON on its last stdout line. With ``--compare-float32`` float32
  compute is timed too (the baseline of bf16 mixed precision).
  Before compiling it estimates the step's memory and refuses (exit 2) a run that does
  not fit the free device memory.
* ``--preset cpu-tiny|gpu`` (default): the experiment's models; train tokens/s and
  sampling tokens/s with the key-value cache against full-prefix recompute.

Usage::

  python experiments/bench_lm.py --config smollm2-135m                      # GPU: the goal run
  python experiments/bench_lm.py --config smollm2-135m --batch 1 --seq-len 64 --layers 2 \\
      --train-steps 2 --repeats 1                                          # CPU smoke (< 2 min)
  python experiments/bench_lm.py --config smollm2-135m --batch 2 --layers 2 --compile-only
                                                                           # memory: chunked vs full logits
  python experiments/bench_lm.py --preset gpu --batch 64 --seq-len 512

Nothing is asserted about speed; numbers are printed and, with ``--json PATH``, written as
:mod:`recall_theory.bench` records (figure, same-run baseline, ratio, compile and run time,
machine) for ``experiments/bench_all.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from recall_theory import bench  # noqa: E402
from recall_theory.lm import losses, presets, sharding  # noqa: E402
from recall_theory.lm import train as train_lib  # noqa: E402
from recall_theory.lm.model import (  # noqa: E402
    ModelConfig, Transformer, cudnn_supported, resolve_attention)
from recall_theory.lm.sampling import generate  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peak FLOP/s by device kind, from the vendor data
# sheets; the first matching entry wins (so "H100 PCIe" is tried before "H100").
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12),
                   ("A100", 312e12), ("L4", 121e12), ("TPU v5 lite", 197e12),
                   ("TPU v5", 459e12), ("TPU v4", 275e12))

SMOLLM2_135M = ModelConfig(vocab_size=49152, d_model=576, n_layers=30, n_heads=9, n_kv_heads=3,
                           d_ff=1536, max_seq_len=2048, rope_theta=100000.0, tie_embeddings=True)
CONFIGS = {"smollm2-135m": SMOLLM2_135M}


class BenchInputError(Exception):
  """A bad command line: one line on stderr, exit code 2."""


def peak_flops(device) -> float | None:
  """Dense bf16 peak FLOP/s of ``device`` (None for CPUs and unknown kinds)."""
  if device.platform == "cpu":
    return None
  kind = getattr(device, "device_kind", "").lower()
  for name, flops in PEAK_BF16_FLOPS:
    if name.lower() in kind:
      return flops
  return None


def _time(fn, repeats: int) -> float:
  """Median wall time of ``fn()`` (which must block) over ``repeats`` calls."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def _gib(n: float) -> str:
  return f"{n / 2 ** 30:.2f} GiB"


def mle_loss(chunk: int | None):
  """Next-token NLL through the chunked head (``chunk=None``: full float32 logits)."""
  def loss_fn(model, batch):
    tokens = batch["tokens"]
    nll = -jnp.mean(model.target_log_probs(tokens[:, :-1], tokens[:, 1:], chunk_size=chunk))
    return nll, {}
  return loss_fn


def time_train(cfg: ModelConfig, batch: int, seq_len: int, steps: int, repeats: int, *,
               loss_chunk: int | None, mesh) -> dict:
  """Tokens/s of the jitted train step for ``cfg`` (compile excluded) and XLA's memory."""
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  tx = train_lib.make_optimizer(1e-4, 10 ** 6)
  graphdef, state = train_lib.init_train_state(model, tx)
  del model
  state = train_lib.place_state(state, mesh)
  step = train_lib.make_train_step(graphdef, tx, mle_loss(loss_chunk), mesh)
  tokens = jax.random.randint(jax.random.key(0), (batch, seq_len + 1), 1, cfg.vocab_size)
  data = sharding.shard_batch({"tokens": tokens}, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, data).compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  xla_bytes = None if mem is None else int(mem.temp_size_in_bytes + mem.argument_size_in_bytes
                                            + mem.output_size_in_bytes - mem.alias_size_in_bytes)
  state, m = compiled(state, data)
  jax.block_until_ready(m)
  losses_seen = [float(m["loss"])]

  def run():
    nonlocal state
    for _ in range(steps):
      state, out = compiled(state, data)
    jax.block_until_ready(out)
    losses_seen.append(float(out["loss"]))

  t = _time(run, repeats)
  del state
  return {"tokens_per_s": batch * seq_len * steps / t, "ms_per_step": 1e3 * t / steps,
          "compile_s": compile_s, "xla_bytes": xla_bytes, "loss_first": losses_seen[0],
          "loss_last": losses_seen[-1]}


def compiled_memory(cfg: ModelConfig, batch: int, seq_len: int, *, loss_chunk: int | None,
                    mesh) -> dict:
  """XLA's memory count of the train step, compiled from shapes only (nothing allocated)."""
  tx = train_lib.make_optimizer(1e-4, 10 ** 6)
  graphdef, abstract_state = nnx.eval_shape(lambda: train_lib.init_train_state(
      Transformer(cfg, rngs=nnx.Rngs(0)), tx))
  step = train_lib.make_train_step(graphdef, tx, mle_loss(loss_chunk), mesh)
  data = {"tokens": jax.ShapeDtypeStruct((batch, seq_len + 1), jnp.int32)}
  start = time.perf_counter()
  mem = step.lower(abstract_state, data).compile().memory_analysis()
  return {"compile_s": time.perf_counter() - start, "temp_bytes": int(mem.temp_size_in_bytes),
          "argument_bytes": int(mem.argument_size_in_bytes)}


def memory_report(args, cfg: ModelConfig, path: str, chunk: int | None, mesh) -> int:
  """--compile-only: XLA's memory with the chunked loss head and with full logits."""
  rows = []
  for c in dict.fromkeys([chunk, None]):
    r = compiled_memory(dataclasses.replace(cfg, attention=path), args.batch, args.seq_len,
                        loss_chunk=c, mesh=mesh)
    est = train_lib.estimate_train_memory(cfg, args.batch, args.seq_len, attention=path,
                                          logits_chunk=c)
    rows.append((c, r))
    print(f"memory [loss head {'chunk ' + str(c) if c else 'full logits'}]: XLA temp "
          f"{_gib(r['temp_bytes'])} + arguments {_gib(r['argument_bytes'])}; estimate total "
          f"{_gib(est['total'])} (logits part {_gib(est['logits'])}); compile {r['compile_s']:.1f} s")
  if len(rows) == 2:
    saved = rows[1][1]["temp_bytes"] - rows[0][1]["temp_bytes"]
    print(f"ratio: chunked / full-logits XLA temp memory = "
          f"{rows[0][1]['temp_bytes'] / rows[1][1]['temp_bytes']:.2f} ({_gib(saved)} less)")
  return 0


def bench_config(args, det_result: dict | None = None) -> int:
  """--config: train-step tokens/s and MFU; ``det_result``: the deterministic child's run."""
  device = jax.devices()[0]
  on_gpu = device.platform == "gpu"
  base = CONFIGS[args.config]
  dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if device.platform != "cpu"
                                                   else "float32")
  changes = dict(max_seq_len=args.seq_len, dtype=dtype)
  if args.layers is not None:
    changes["n_layers"] = args.layers
  cfg = dataclasses.replace(base, **changes)
  if args.attention == "cudnn" and not cudnn_supported(cfg.compute_dtype, cfg.resolved_head_dim):
    what = "no GPU" if not on_gpu else f"dtype {dtype}"
    raise BenchInputError(f"--attention cudnn needs a GPU with --dtype bfloat16/float16 "
                          f"({what} here: {device.device_kind})")
  main_path = resolve_attention(args.attention, cfg.compute_dtype, cfg.resolved_head_dim, False)
  chunk = None if args.loss_chunk == 0 else args.loss_chunk
  n_dev = len(jax.devices())
  free, how = train_lib.free_device_memory(device)
  if args.batch % n_dev:
    raise BenchInputError(f"--batch {args.batch} must be divisible by the {n_dev} devices")

  def estimate(path, batch, run_cfg=cfg):
    return train_lib.estimate_train_memory(run_cfg, batch // n_dev, args.seq_len, attention=path,
                                           logits_chunk=chunk)

  def fitting_batch(path, run_cfg=cfg):
    """The requested batch, else the largest halved batch that fits (None: none fits)."""
    batch = args.batch
    while free is not None and batch > n_dev and estimate(path, batch, run_cfg)["total"] > free:
      batch = max(n_dev, (batch // 2) // n_dev * n_dev)
    return batch if free is None or estimate(path, batch, run_cfg)["total"] <= free else None

  est = estimate(main_path, args.batch)
  if free is not None and est["total"] > free and not args.compile_only:  # allocates nothing
    path = main_path
    raise BenchInputError(
          f"--config {args.config} --batch {args.batch} --seq-len {args.seq_len} needs about "
          f"{_gib(est['total'])} per device with {path} attention (estimate: state "
          f"{_gib(est['state'])}, activations {_gib(est['activations'])}, attention "
          f"{_gib(est['attention'])}, logits {_gib(est['logits'])}) but {device.device_kind} has "
          f"{_gib(free)} free ({how}); lower --batch or --seq-len")
  # The XLA baseline materialises [B, H, L, L] scores: where the requested batch does not
  # fit, it runs at the largest halved batch that does (its label names that batch).
  baseline_batch = fitting_batch("xla")
  baseline_fits = baseline_batch is not None
  baseline_batch = baseline_batch or n_dev
  estimates = {main_path: est, "xla": estimate("xla", baseline_batch)}
  flops_tok = cfg.flops_per_token(args.seq_len)
  peak = peak_flops(device)
  print(f"device: {device.device_kind} x{n_dev}; config {args.config}: "
        f"{cfg.param_count() / 1e6:.1f} M params, d={cfg.d_model}, layers={cfg.n_layers}, "
        f"heads {cfg.n_heads}/{cfg.n_kv_heads} kv, vocab {cfg.vocab_size}, dtype {cfg.dtype} "
        f"(float32 master weights and AdamW state); batch {args.batch} x seq {args.seq_len}; "
        f"loss head chunk {chunk or 'none (full logits)'}; "
        f"{flops_tok / 1e9:.3f} GFLOP/token (6N + attention)")
  if free is not None:
    print(f"memory: free {_gib(free)} ({how}); estimate per device: {main_path} attention "
          f"{_gib(est['total'])} at batch {args.batch}"
          + (f", xla baseline {_gib(estimates['xla']['total'])} at batch {baseline_batch}"
             if main_path != "xla" else ""))
  mesh = sharding.make_mesh()
  if args.compile_only:
    return memory_report(args, cfg, main_path, chunk, mesh)
  det_run = ((f"attention={main_path} deterministic ops (fresh process)", main_path, True,
              args.batch) if det_result is not None else None)
  if args.deterministic_child:  # the fresh deterministic process: one run, JSON out
    r = time_train(dataclasses.replace(cfg, attention=main_path), args.batch, args.seq_len,
                   args.train_steps, args.repeats, loss_chunk=chunk, mesh=mesh)
    print(json.dumps(r))
    return 0
  runs = [(f"attention={args.attention} ({main_path})", main_path, False, args.batch)]
  if args.attention != "xla":
    if baseline_fits:
      label = "baseline attention=xla" + (f" batch {baseline_batch}"
                                           if baseline_batch != args.batch else "")
      runs.append((label, "xla", False, baseline_batch))
    else:
      print(f"baseline attention=xla skipped: even batch {baseline_batch} needs about "
            f"{_gib(estimate('xla', baseline_batch)['total'])}, {_gib(free)} free")
  if args.compare_float32 and cfg.dtype != "float32":
    f32 = dataclasses.replace(cfg, dtype="float32")
    f32_path = resolve_attention("auto", f32.compute_dtype, f32.resolved_head_dim, False)
    f32_batch = fitting_batch(f32_path, f32)
    if f32_batch is None:
      print(f"float32 baseline skipped: even batch {n_dev} does not fit {_gib(free)} free")
    else:
      runs.append((f"float32 compute ({f32_path} attention)"
                   + (f" batch {f32_batch}" if f32_batch != args.batch else ""),
                   f32_path, False, f32_batch, f32))
  results = []
  for label, path, det, batch, *run_dtype_cfg in runs + ([det_run] if det_run else []):
    run_cfg = dataclasses.replace(run_dtype_cfg[0] if run_dtype_cfg else cfg, attention=path)
    if det:
      r = dict(det_result)
      if "error" in r:
        print(f"train [{label}]: not measured: {r['error']}")
        continue
    else:
      r = time_train(run_cfg, batch, args.seq_len, args.train_steps, args.repeats,
                     loss_chunk=chunk, mesh=mesh)
    r["mfu"] = flops_tok * r["tokens_per_s"] / (peak * n_dev) if peak else None
    r.update(label=label, attention=path, deterministic=det, batch=batch,
             dtype=run_cfg.dtype, estimate_bytes=estimate(path, batch, run_cfg)["total"])
    results.append(r)
    mfu = (f"MFU {100 * r['mfu']:.1f}% of {peak / 1e12:.0f} TFLOP/s bf16 peak" if peak
           else "MFU n/a (no accelerator peak)")
    xla_mem = "n/a" if r["xla_bytes"] is None else _gib(r["xla_bytes"])
    print(f"train [{label}]: {r['tokens_per_s']:,.0f} tokens/s ({r['ms_per_step']:.1f} ms/step), "
          f"{flops_tok * r['tokens_per_s'] / 1e12:.3f} TFLOP/s, {mfu}; compile "
          f"{r['compile_s']:.1f} s; memory XLA {xla_mem} vs estimate "
          f"{_gib(r['estimate_bytes']) if r['estimate_bytes'] else 'n/a'}; loss "
          f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}")
  head = results[0]
  entries = []
  for r in results[1:]:
    same = " (same attention path on this device: the ratio is timing noise)" \
        if all(r[k] == head[k] for k in ("attention", "deterministic", "dtype", "batch")) \
        else (" (CPU: deterministic already, the ratio is timing noise)"
              if r["deterministic"] and not on_gpu else "")
    print(f"ratio [{head['label']}] / [{r['label']}]: "
          f"{head['tokens_per_s'] / r['tokens_per_s']:.2f}x tokens/s{same}")
    figure, base = (r, head) if r["deterministic"] else (head, r)  # cost of determinism
    entries.append(bench.entry(
        f"lm train {args.config} ({cfg.n_layers} layers, batch {figure['batch']} x "
        f"{args.seq_len}): [{figure['label']}] tokens/s", figure["tokens_per_s"], "tokens/s",
        baseline=base["label"], baseline_value=base["tokens_per_s"], higher_is_better=True,
        compile_s=figure["compile_s"], run_s=figure["ms_per_step"] / 1e3,
        baseline_compile_s=base["compile_s"], mfu=figure["mfu"], baseline_mfu=base["mfu"],
        note=same.strip(" ()") or None))
  if len(results) == 1:
    entries.append(bench.entry(f"lm train {args.config} [{head['label']}] tokens/s",
                               head["tokens_per_s"], "tokens/s", higher_is_better=True,
                               compile_s=head["compile_s"], run_s=head["ms_per_step"] / 1e3,
                               mfu=head["mfu"]))
  if det_result is not None and "error" in det_result:
    entries.append({"name": f"lm train {args.config}: deterministic ops: not measured",
                    "error": det_result["error"]})
  if args.json:
    bench.write_report(args.json, "lm", entries)
  return 0


def deterministic_child(argv: list[str]) -> dict:
  """Time the step with XLA deterministic ops in a fresh process (flag set before JAX starts).

  Returns the child's :func:`time_train` dict, or ``{"error": last line}`` when it failed.
  """
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + train_lib.DETERMINISTIC_FLAG).strip()
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the parent's runs follow
  proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv,
                         "--deterministic-child"], env=env, capture_output=True, text=True)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode == 0 and lines:
    try:
      return json.loads(lines[-1])
    except ValueError:
      pass
  tail = (proc.stderr.strip().splitlines() or lines or ["no output"])[-1]
  return {"error": f"exit {proc.returncode}: {tail[:300]}"}


def child_argv(args) -> list[str]:
  """The command line of the deterministic subprocess: same shapes, no baselines, no JSON."""
  argv = ["--config", args.config, "--batch", str(args.batch), "--seq-len", str(args.seq_len),
          "--dtype", args.dtype, "--attention", args.attention, "--loss-chunk",
          str(args.loss_chunk), "--train-steps", str(args.train_steps), "--repeats",
          str(args.repeats)]
  return argv + (["--layers", str(args.layers)] if args.layers is not None else [])


def bench_preset(args) -> int:
  exp = presets.get_preset(args.preset)
  cfg = dataclasses.replace(getattr(exp, args.model), max_seq_len=args.seq_len)
  if args.attention == "cudnn" and not cudnn_supported(cfg.compute_dtype, cfg.resolved_head_dim):
    raise BenchInputError(f"--attention cudnn needs a GPU and a bfloat16/float16 model "
                          f"({jax.devices()[0].device_kind}, dtype {cfg.dtype})")
  cfg = dataclasses.replace(cfg, attention=args.attention)
  device = jax.devices()[0]
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  n_params = cfg.param_count()
  print(f"device: {device.device_kind} x{len(jax.devices())}; model: {args.preset} {args.model} "
        f"({n_params / 1e6:.2f} M params, d={cfg.d_model}, layers={cfg.n_layers}, "
        f"dtype={cfg.dtype}, attention={args.attention}); batch {args.batch}, "
        f"sequence {args.seq_len}")

  # -- training throughput ----------------------------------------------------------------
  mesh = sharding.make_mesh()
  tx = train_lib.make_optimizer(1e-4, 10 ** 6)
  graphdef, state = train_lib.init_train_state(model, tx)
  state = train_lib.place_state(jax.tree.map(lambda x: jnp.array(x, copy=True), state), mesh)
  step = train_lib.make_train_step(graphdef, tx, losses.make_mle_loss(1), mesh)
  tokens = jax.random.randint(jax.random.key(0), (args.batch, args.seq_len), 1, cfg.vocab_size)
  batch = sharding.shard_batch({"tokens": tokens}, mesh)
  start = time.perf_counter()
  step = step.lower(state, batch).compile()
  train_compile_s = time.perf_counter() - start
  state, m = step(state, batch)
  jax.block_until_ready(m)

  def run_train():
    nonlocal state
    for _ in range(args.train_steps):
      state, out = step(state, batch)
    jax.block_until_ready(out)

  t_train = _time(run_train, args.repeats)
  train_tokens = args.batch * (args.seq_len - 1) * args.train_steps
  train_tps = train_tokens / t_train
  flops_per_token = cfg.flops_per_token(args.seq_len - 1)
  peak = peak_flops(device)
  mfu = flops_per_token * train_tps / (peak * len(jax.devices())) if peak else None
  print(f"train: {train_tps:,.0f} tokens/s ({t_train / args.train_steps * 1e3:.2f} ms/step), "
        f"{flops_per_token * train_tps / 1e9:,.2f} GFLOP/s"
        + (f", MFU {100 * mfu:.1f}% of {peak / 1e12:.0f} TFLOP/s" if mfu is not None
           else ", MFU n/a (no accelerator peak)"))

  # -- sampling: KV cache vs full-prefix recompute ------------------------------------------
  prompt = jnp.ones((args.batch, 1), jnp.int32)
  new = args.seq_len - 1
  key = jax.random.key(1)
  results = {}
  first_call = {}
  for use_cache in (True, False):
    def run_sample(use_cache=use_cache):
      return jax.block_until_ready(generate(model, prompt, key, max_new_tokens=new,
                                            temperature=0.0, use_cache=use_cache))
    start = time.perf_counter()
    out = run_sample()  # compile + one call
    first_call[use_cache] = time.perf_counter() - start
    t = _time(run_sample, args.repeats)
    results[use_cache] = (out, args.batch * new / t, t)
  same = bool(jnp.all(results[True][0] == results[False][0]))
  cached, full = results[True][1], results[False][1]
  print(f"sample: KV cache {cached:,.0f} tokens/s, full-prefix recompute {full:,.0f} tokens/s, "
        f"ratio {cached / full:.1f}x ({new} new tokens; greedy tokens identical: {same})")
  if not same:
    print("warning: cached and recomputed greedy tokens differ (ties or low precision)",
          file=sys.stderr)
  if args.json:
    what = f"{args.preset} {args.model} ({n_params / 1e6:.2f} M params), batch {args.batch}"
    # sampling compile time: first call minus one timed call (generate jits internally)
    entries = [
        bench.entry(f"lm train step {what} x {args.seq_len}: tokens/s", train_tps, "tokens/s",
                    higher_is_better=True, compile_s=train_compile_s,
                    run_s=t_train / args.train_steps, mfu=mfu),
        bench.entry(f"lm sampling {what}, {new} new tokens: KV cache tokens/s", cached,
                    "tokens/s", baseline="full-prefix recompute", baseline_value=full,
                    higher_is_better=True,
                    compile_s=max(first_call[True] - results[True][2], 0.0),
                    run_s=results[True][2],
                    baseline_compile_s=max(first_call[False] - results[False][2], 0.0),
                    greedy_identical=same)]
    bench.write_report(args.json, "lm", entries)
  return 0


def _positive(name):
  def parse(text):
    try:
      value = int(text)
    except ValueError:
      value = 0
    if value < 1:
      raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}")
    return value
  return parse


def _nonnegative(name):
  def parse(text):
    try:
      value = int(text)
    except ValueError:
      value = -1
    if value < 0:
      raise argparse.ArgumentTypeError(f"{name} must be an integer >= 0, got {text!r}")
    return value
  return parse


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit 2 (argparse would add a usage block)
    print(f"bench_lm.py: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
  parser = _Parser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=None, choices=sorted(CONFIGS),
                      help="train-step/MFU benchmark of a named architecture from scratch")
  parser.add_argument("--preset", default="cpu-tiny", choices=["cpu-tiny", "gpu"])
  parser.add_argument("--model", default="teacher", choices=["teacher", "student"])
  parser.add_argument("--batch", type=_positive("--batch"), default=None,
                      help="global batch (default 8 with --config, 16 with --preset)")
  parser.add_argument("--seq-len", type=_positive("--seq-len"), default=None,
                      help="context length (default 2048 with --config, 128 with --preset)")
  parser.add_argument("--layers", type=_positive("--layers"), default=None,
                      help="--config only: override the number of layers (CPU smoke runs)")
  parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                      help="--config only: compute dtype (auto: bfloat16 on accelerators)")
  parser.add_argument("--attention", default="auto", choices=["auto", "xla", "cudnn", "einsum"],
                      help="attention path (cudnn needs a GPU)")
  parser.add_argument("--loss-chunk", type=_nonnegative("--loss-chunk"), default=256,
                      help="--config only: positions per chunk of the loss head (0: full logits)")
  parser.add_argument("--compare-float32", action="store_true",
                      help="--config only: also time float32 compute (mixed precision's baseline)")
  parser.add_argument("--deterministic", action="store_true",
                      help="--config only: also time the step with XLA deterministic ops "
                           "(in a fresh subprocess: the flag must be set before JAX starts)")
  parser.add_argument("--deterministic-child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--compile-only", action="store_true",
                      help="--config only: no timing; XLA's memory count with the chunked loss "
                           "head and with full float32 logits, compiled from shapes")
  parser.add_argument("--train-steps", type=_positive("--train-steps"), default=None,
                      help="steps per timed repeat (default 10 with --config, 20 with --preset)")
  parser.add_argument("--repeats", type=_positive("--repeats"), default=3)
  parser.add_argument("--json", default=None, help="also write the numbers to this file")
  args = parser.parse_args(argv)
  with_config = args.config is not None
  args.batch = args.batch or (8 if with_config else 16)
  args.seq_len = args.seq_len or (2048 if with_config else 128)
  args.train_steps = args.train_steps or (10 if with_config else 20)
  if args.deterministic_child:
    # first thing, before JAX starts its backend (XLA_FLAGS is set by the parent as well)
    train_lib.enable_deterministic()
  det_result = None
  if with_config and args.deterministic and not args.compile_only:
    # before this process starts its backend: the child gets the whole device
    print("deterministic ops: timing in a fresh subprocess ...", file=sys.stderr, flush=True)
    det_result = deterministic_child(child_argv(args))
    if det_result.get("error", "").startswith("exit 2:"):  # bad input: the same refusal here
      det_result = None
  try:
    return bench_config(args, det_result) if with_config else bench_preset(args)
  except BenchInputError as err:
    print(f"bench_lm.py: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
