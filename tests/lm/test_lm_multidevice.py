"""Data parallel + FSDP on 8 simulated CPU devices gives the one-device result."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import json
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from recall_theory.lm import losses, sharding
    from recall_theory.lm.model import ModelConfig, Transformer
    from recall_theory.lm.train import init_train_state, make_optimizer, make_train_step, place_state

    assert len(jax.devices()) == 8, jax.devices()
    cfg = ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                      max_seq_len=12)
    tokens = jax.random.randint(jax.random.key(0), (6, 16, 10), 0, 16)

    def run(n_devices, fsdp):
      mesh = sharding.make_mesh(n_devices, fsdp)
      tx = make_optimizer(3e-3, 6)
      graphdef, state = init_train_state(Transformer(cfg, rngs=nnx.Rngs(0)), tx)
      state = place_state(state, mesh)
      step = make_train_step(graphdef, tx, losses.make_mle_loss(1), mesh)
      out = []
      for i in range(6):
        state, m = step(state, sharding.shard_batch({"tokens": tokens[i]}, mesh))
        out.append(float(m["loss"]))
      specs = {str(x.sharding.spec) for x in jax.tree.leaves(state.params)}
      n_shards = max(len(x.addressable_shards) for x in jax.tree.leaves(state.params))
      return out, jax.device_get(state.params), specs, n_shards

    one, p1, _, _ = run(1, 1)
    fs, p4x2, specs, n_shards = run(8, 2)  # 4-way data parallel x 2-way FSDP
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(p1),
                                                              jax.tree.leaves(p4x2)))
    print(json.dumps({"one": one, "fsdp": fs, "diff": diff,
                      "specs": sorted(specs), "n_shards": n_shards}))
""")


def test_eight_simulated_devices_match_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads(proc.stdout.strip().splitlines()[-1])
  for a, b in zip(res["one"], res["fsdp"]):
    assert abs(a - b) < 2e-5 * max(1.0, abs(a)), (res["one"], res["fsdp"])
  assert res["diff"] < 1e-4, res
  assert any("fsdp" in s for s in res["specs"]), res["specs"]  # parameters really sharded
  assert res["n_shards"] == 8
