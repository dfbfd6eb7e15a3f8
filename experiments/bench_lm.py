"""Benchmark of the transformer track: train-step throughput and KV-cache sampling speed-up.

Measured in one run, on one model:

* training tokens/s of the jitted train step (MLE loss, AdamW), and on a GPU the model
  FLOP utilisation (MFU = 6N-style training FLOPs/token x tokens/s / peak FLOP/s);
* sampling tokens/s with the key-value cache against recomputing the full prefix at
  every step (same model, key and prompts; greedy tokens checked equal), with the ratio.

Usage::

  python experiments/bench_lm.py                      # cpu-tiny teacher, 128-token context
  python experiments/bench_lm.py --preset gpu --batch 64 --seq-len 512

Nothing is asserted about speed; the numbers are printed (and written with --json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

from recall_theory.lm import losses, presets, sharding
from recall_theory.lm.model import Transformer
from recall_theory.lm.sampling import generate
from recall_theory.lm.train import init_train_state, make_optimizer, make_train_step, place_state

# Dense bf16 peak FLOP/s by device kind (vendor data sheets), for MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "TPU v5": 197e12,
              "TPU v4": 275e12}


def _peak(device) -> float | None:
  kind = getattr(device, "device_kind", "")
  for name, flops in PEAK_FLOPS.items():
    if name.lower() in kind.lower():
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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="cpu-tiny", choices=["cpu-tiny", "gpu"])
  parser.add_argument("--model", default="teacher", choices=["teacher", "student"])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--seq-len", type=int, default=128, help="context length for the benchmark")
  parser.add_argument("--train-steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--json", default=None, help="also write the numbers to this file")
  args = parser.parse_args(argv)

  exp = presets.get_preset(args.preset)
  cfg = dataclasses.replace(getattr(exp, args.model), max_seq_len=args.seq_len)
  device = jax.devices()[0]
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  n_params = cfg.param_count()
  print(f"device: {device.device_kind} x{len(jax.devices())}; model: {args.preset} {args.model} "
        f"({n_params / 1e6:.2f} M params, d={cfg.d_model}, layers={cfg.n_layers}, "
        f"dtype={cfg.dtype}); batch {args.batch}, sequence {args.seq_len}")

  # -- training throughput ----------------------------------------------------------------
  mesh = sharding.make_mesh()
  tx = make_optimizer(1e-4, 10 ** 6)
  graphdef, state = init_train_state(model, tx)
  state = place_state(jax.tree.map(lambda x: jnp.array(x, copy=True), state), mesh)
  step = make_train_step(graphdef, tx, losses.make_mle_loss(1), mesh)
  tokens = jax.random.randint(jax.random.key(0), (args.batch, args.seq_len), 1, cfg.vocab_size)
  batch = sharding.shard_batch({"tokens": tokens}, mesh)
  state, m = step(state, batch)  # compile
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
  peak = _peak(device)
  mfu = flops_per_token * train_tps / (peak * len(jax.devices())) if peak else None
  print(f"train: {train_tps:,.0f} tokens/s ({t_train / args.train_steps * 1e3:.2f} ms/step), "
        f"{flops_per_token * train_tps / 1e9:,.2f} GFLOP/s"
        + (f", MFU {100 * mfu:.1f}% of {peak / 1e12:.0f} TFLOP/s" if mfu is not None
           else ", MFU n/a (no peak FLOP/s known for this device)"))

  # -- sampling: KV cache vs full-prefix recompute ------------------------------------------
  prompt = jnp.ones((args.batch, 1), jnp.int32)
  new = args.seq_len - 1
  key = jax.random.key(1)
  results = {}
  for use_cache in (True, False):
    def run_sample(use_cache=use_cache):
      return jax.block_until_ready(generate(model, prompt, key, max_new_tokens=new,
                                            temperature=0.0, use_cache=use_cache))
    out = run_sample()  # compile
    t = _time(run_sample, args.repeats)
    results[use_cache] = (out, args.batch * new / t)
  same = bool(jnp.all(results[True][0] == results[False][0]))
  cached, full = results[True][1], results[False][1]
  print(f"sample: KV cache {cached:,.0f} tokens/s, full-prefix recompute {full:,.0f} tokens/s, "
        f"ratio {cached / full:.1f}x ({new} new tokens; greedy tokens identical: {same})")
  if not same:
    print("warning: cached and recomputed greedy tokens differ (ties or low precision)",
          file=sys.stderr)
  if args.json:
    with open(args.json, "w") as fh:
      json.dump({"device": device.device_kind, "n_devices": len(jax.devices()),
                 "preset": args.preset, "model": args.model, "params": n_params,
                 "batch": args.batch, "seq_len": args.seq_len, "train_tokens_per_s": train_tps,
                 "mfu": mfu, "sample_cached_tokens_per_s": cached,
                 "sample_recompute_tokens_per_s": full, "sample_ratio": cached / full,
                 "greedy_identical": same}, fh, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
