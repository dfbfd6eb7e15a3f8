"""Benchmark: SmolLM2-135M-Instruct load time, and decode speed with the KV cache vs the
full-prefix recompute, at batch 1 and batch 64, on the default JAX device.

  python experiments/bench_smollm2.py                 # needs the fetched weights
  python experiments/bench_smollm2.py --new-tokens 32 --batches 1,64 --repeats 3

Both decoders are :func:`recall_theory.lm.sampling.generate` (greedy), jitted with the
weights as an argument; compile time is measured separately (first call) and excluded
from the speeds. Tokens per second = batch * new tokens / wall time of one call (prompt
prefill included). The recompute baseline is measured in the same run, on the same
device, and the speed-up is their ratio. ``--json PATH`` writes :mod:`recall_theory.bench`
records (figure, same-run baseline, ratio, compile and run time, machine) for
``experiments/bench_all.py``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere


def _time_call(fn, repeats: int) -> tuple[float, float]:
  """(first-call seconds incl. compile, best of ``repeats`` later calls)."""
  import jax
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return first, best


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="smollm2-135m-instruct")
  parser.add_argument("--batches", default="1,64", help="comma list of batch sizes")
  parser.add_argument("--prompt-tokens", type=int, default=16)
  parser.add_argument("--new-tokens", type=int, default=16)
  parser.add_argument("--recompute-new-tokens", type=int, default=None,
                      help="new tokens for the recompute baseline (default: --new-tokens)")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--json", default=None, help="also write the numbers to this file")
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp

  from recall_theory.lm.hub.fetch import fetch_smollm2_135m
  from recall_theory.lm.hub.gguf_file import read_gguf
  from recall_theory.lm.hub.models import from_checkpoint, resolve
  from recall_theory.lm.sampling import generate

  if args.model == "smollm2-135m-instruct":
    fetch_smollm2_135m()
  path = resolve(args.model)
  t0 = time.perf_counter()
  ckpt = read_gguf(path) if path.is_file() else None
  t_read = time.perf_counter() - t0
  if ckpt is None:
    from recall_theory.lm.hub.hf_folder import read_hf_folder
    ckpt = read_hf_folder(path)
    t_read = time.perf_counter() - t0
  lm = from_checkpoint(ckpt)
  t_load = time.perf_counter() - t0
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind}), {platform.processor() or platform.machine()}")
  print(f"load {args.model}: {t_load:.2f} s total (read + dequantize + un-permute {t_read:.2f} s, "
        f"tokenizer + placement {t_load - t_read:.2f} s)")

  text = "The history of the city begins " * 8
  prompt_ids = lm.tokenizer.encode(text)[:args.prompt_tokens]
  results = {"device": f"{device.platform}:{device.device_kind}", "load_seconds": t_load,
             "read_seconds": t_read, "runs": []}
  key = jax.random.key(0)
  for b in [int(x) for x in args.batches.split(",")]:
    prompt = jnp.tile(jnp.asarray([prompt_ids], jnp.int32), (b, 1))
    row = {"batch": b, "prompt_tokens": len(prompt_ids)}
    for name, use_cache, n in (("cache", True, args.new_tokens),
                               ("recompute", False, args.recompute_new_tokens or args.new_tokens)):
      first, best = _time_call(lambda: generate(lm.model, prompt, key, max_new_tokens=n,
                                                temperature=0.0, use_cache=use_cache),
                               args.repeats)
      row[name] = {"new_tokens": n, "compile_plus_first_s": first, "best_s": best,
                   "tokens_per_s": b * n / best}
      print(f"batch {b:3d} {name:9s}: {b * n / best:9.1f} tokens/s  ({n} new tokens in "
            f"{best:.3f} s; first call incl. compile {first:.1f} s)", flush=True)
    row["speedup"] = row["cache"]["tokens_per_s"] / row["recompute"]["tokens_per_s"]
    print(f"batch {b:3d} cache / recompute tokens-per-second ratio: {row['speedup']:.2f}x")
    results["runs"].append(row)
  if args.json:
    from recall_theory import bench
    bench.write_report(args.json, "smollm2", report_entries(args.model, results))
  return 0


def report_entries(model: str, results: dict) -> list[dict]:
  """:mod:`recall_theory.bench` records: load time, and per batch cache vs recompute decode.

  Compile time = first call (compile + one call) minus the best later call.
  """
  entries = [bench_entry(f"smollm2 load {model} (read, dequantize, un-permute, place)",
                         results["load_seconds"], "s", run_s=results["load_seconds"],
                         read_s=results["read_seconds"])]
  for row in results["runs"]:
    cache, full = row["cache"], row["recompute"]
    entries.append(bench_entry(
        f"smollm2 greedy decode, batch {row['batch']}, {row['prompt_tokens']} prompt + "
        f"{cache['new_tokens']} new tokens: KV cache tokens/s", cache["tokens_per_s"], "tokens/s",
        baseline=f"full-prefix recompute ({full['new_tokens']} new tokens)",
        baseline_value=full["tokens_per_s"], higher_is_better=True,
        compile_s=max(cache["compile_plus_first_s"] - cache["best_s"], 0.0), run_s=cache["best_s"],
        baseline_compile_s=max(full["compile_plus_first_s"] - full["best_s"], 0.0)))
  return entries


def bench_entry(*args, **kwargs) -> dict:
  from recall_theory import bench
  return bench.entry(*args, **kwargs)


if __name__ == "__main__":
  raise SystemExit(main())
