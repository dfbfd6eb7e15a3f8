"""A pretrained model as p*: exact normalisation, sampling vs likelihood, the oracle.

Uses a tiny random Llama written as GGUF (vocabulary 263 byte-level tokens), so every
continuation can be enumerated.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the smollm2 extra (gguf) is not installed")
pytest.importorskip("tokenizers", reason="the smollm2 extra (tokenizers) is not installed")

from recall_theory.errors import InputError  # noqa: E402
from recall_theory.lm.groundtruth import GroundTruth  # noqa: E402
from recall_theory.lm.hub.ground_truth import PretrainedGroundTruth  # noqa: E402
from recall_theory.lm.hub.gguf_file import read_gguf  # noqa: E402
from recall_theory.lm.hub.models import from_checkpoint  # noqa: E402
from recall_theory.lm.hub.oracle import character_mask, question_oracle  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
  from hub_fixtures import tiny_tensors, write_tiny_gguf
  tensors = tiny_tensors(seed=7)
  tensors["model.embed_tokens.weight"] *= 4  # a peaked, far-from-uniform p*
  path = write_tiny_gguf(tmp_path_factory.mktemp("gt") / "tiny.gguf", tensors)
  return from_checkpoint(read_gguf(path))


def _gt(lm, seq_len, chunk=256):
  return PretrainedGroundTruth(lm, prompt_ids=lm.tokenizer.encode("the"), seq_len=seq_len,
                               oracle=question_oracle(lm.tokenizer), chunk=chunk)


def test_it_is_a_ground_truth_and_checks_its_inputs(tiny_lm):
  gt = _gt(tiny_lm, 3)
  assert isinstance(gt, GroundTruth)
  assert gt.vocab_size == 263 and gt.prompt.tolist() == tiny_lm.tokenizer.encode("the")
  x = gt.sample(jax.random.key(0), 5)
  assert x.shape == (5, gt.prompt_len + 3) and x.dtype == jnp.int32
  assert (x[:, :gt.prompt_len] == gt.prompt).all()
  with pytest.raises(InputError, match=r"tokens must have shape \[N, 5\]"):
    gt.log_prob(x[:, :-1])
  with pytest.raises(InputError, match="exceeds the model's context 64"):
    _gt(tiny_lm, 63)


def test_log_prob_is_normalised_over_every_continuation(tiny_lm):
  gt = _gt(tiny_lm, 2, chunk=4096)
  v = gt.vocab_size
  pairs = np.array(list(itertools.product(range(v), repeat=2)), np.int32)
  tokens = np.concatenate([np.broadcast_to(np.asarray(gt.prompt), (len(pairs), gt.prompt_len)),
                           pairs], axis=1)
  total = jax.nn.logsumexp(gt.log_prob(tokens))
  assert abs(float(total)) < 1e-4   # sum over all V^2 continuations of p* = 1


def test_samples_follow_the_likelihood(tiny_lm):
  # E_{p*}[log p*] by Monte Carlo on samples vs the exact value by enumeration (T = 1).
  gt = _gt(tiny_lm, 1)
  v = gt.vocab_size
  all_x = np.concatenate([np.broadcast_to(np.asarray(gt.prompt), (v, gt.prompt_len)),
                          np.arange(v, dtype=np.int32)[:, None]], axis=1)
  logp = np.asarray(gt.log_prob(all_x), np.float64)
  exact = float(np.sum(np.exp(logp) * logp))
  x = gt.sample(jax.random.key(1), 2048)
  mc = np.asarray(gt.log_prob(x), np.float64)
  assert abs(mc.mean() - exact) < 4 * mc.std() / np.sqrt(len(mc)) + 1e-3
  # and the sampled token frequencies match p* where it has mass
  counts = np.bincount(np.asarray(x[:, -1]), minlength=v) / len(x)
  top = np.argsort(-logp)[:3]
  np.testing.assert_allclose(counts[top], np.exp(logp[top]), atol=4 * np.sqrt(0.25 / len(x)))


def test_question_oracle_equals_the_decoded_text(tiny_lm):
  tok = tiny_lm.tokenizer
  gt = _gt(tiny_lm, 6)
  rng = np.random.default_rng(0)
  q = tok.encode("?")
  x = rng.integers(0, gt.vocab_size, size=(400, gt.prompt_len + 6)).astype(np.int32)
  x[:, :gt.prompt_len] = np.asarray(gt.prompt)
  x[::7, -2] = q[0]  # make sure some rows contain it
  shows = np.asarray(gt.shows_target(x))
  text_has = np.array(["?" in tok.decode(r[gt.prompt_len:], skip_special=False) for r in x])
  np.testing.assert_array_equal(shows, text_has)
  assert 0 < shows.mean() < 1
  np.testing.assert_array_equal(np.asarray(gt.reward(x)), shows.astype(np.float32))
  with pytest.raises(InputError, match="printable ASCII"):
    character_mask(tok, "é")


def test_prefix_base_rates(tiny_lm):
  from recall_theory.lm.hub.base_rate import prefix_base_rates
  gt = _gt(tiny_lm, 4)
  rates = prefix_base_rates(gt, jax.random.key(3), 64, (1, 4))
  x = np.asarray(gt.sample(jax.random.key(3), 64))
  text = [gt.lm.tokenizer.decode(r[gt.prompt_len:], skip_special=False) for r in x]
  assert rates[4] == (sum("?" in t for t in text), 64)
  assert rates[1][0] <= rates[4][0]  # a prefix cannot show it more often
  with pytest.raises(InputError, match="prefix length 5"):
    prefix_base_rates(gt, jax.random.key(0), 4, (5,))


def test_oracle_command_reports_progress_rates_and_bad_flags(tmp_path, capsys):
  """``python -m recall_theory.lm.hub.base_rate`` on a tiny GGUF: a progress line per stage
  (stderr, off a terminal), one result line per length with its Wilson interval."""
  from hub_fixtures import tiny_tensors, write_tiny_gguf

  from recall_theory import progress, stats
  from recall_theory.lm.hub import base_rate
  path = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_tensors(seed=7))
  assert base_rate.main(["--model", str(path), "--prompt", "the", "--samples", "40",
                      "--lengths", "2,3", "--chunk", "16"]) == 0
  out, err = capsys.readouterr()
  for stage in ("read tiny.gguf", "dequantise tiny.gguf", "un-permute q/k rows",
                "place weights", "sample p* (T=3): 40/40"):
    assert stage in err, stage
  lines = out.strip().splitlines()
  assert len(lines) == 2 and lines[0].startswith("T=  2: ") and lines[1].startswith("T=  3: ")
  hits = int(lines[1].split(": ")[1].split(" of ")[0])
  lo, hi = stats.wilson_interval(hits, 40)
  assert f"(95% Wilson interval {lo:.4f} to {hi:.4f})" in lines[1]
  for argv, flag in ((["--samples", "0"], "--samples"), (["--lengths", "4,x"], "--lengths"),
                     (["--lengths", ""], "--lengths"), (["--prompt", ""], "--prompt")):
    assert base_rate.main(["--model", str(path)] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and "Traceback" not in err
  assert base_rate.main(["--model", str(path), "--prompt", "the", "--samples", "8", "--lengths", "2",
                      "--chunk", "8", "--quiet"]) == 0
  assert capsys.readouterr().err == "" and progress.is_enabled()  # --quiet is not sticky
