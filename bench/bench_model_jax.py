"""HOFAM's compute on an accelerator through Keras 3's JAX backend, printed as JSON.

The same Keras model definition (``hofam_tf.model.hofam.build_hofam``) run by JAX instead of
TensorFlow, for machines where a TensorFlow GPU build cannot be installed but JAX can. Figures:
inference frames/s per batch size in float32 and bfloat16 (``mixed_bfloat16``), training ms/step
(Adam, sigmoid cross-entropy on the logits; the project's full loss needs TensorFlow) at batch 1
and 8, the measured matmul peak per precision and the achieved fraction of it.

    KERAS_BACKEND=jax python -m bench.bench_model_jax [--ngf 64] [--batches 1,8,32,128]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"


def _time(fn, *args, reps=10):
    out = fn(*args)
    _block(out)
    t = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    _block(out)
    return (time.perf_counter() - t) / reps


def _block(tree):
    import jax

    for leaf in jax.tree_util.tree_leaves(tree):
        leaf.block_until_ready()


def matmul_peak(dtype, n: int = 8192) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda m: m @ m)
    return 2 * n**3 / _time(f, a, reps=20) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--train_batches", default="1,8")
    ap.add_argument("--matmul_n", type=int, default=8192)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    from bench.bench_model import flops_per_frame
    from hofam_tf.config import ModelConfig
    from hofam_tf.model.hofam import build_hofam

    report = {"machine": {"platform": platform.platform(), "devices": [str(d) for d in jax.devices()],
                          "jax": jax.__version__, "keras": keras.__version__, "backend": keras.backend.backend()},
              "ngf": args.ngf, "size": 256,
              "matmul_peak_gflops": {"float32": matmul_peak(jnp.float32, args.matmul_n),
                                     "bfloat16": matmul_peak(jnp.bfloat16, args.matmul_n)},
              "inference_frames_per_s": {}, "train_ms_per_step": {}}
    rng = np.random.default_rng(0)
    for policy in ("float32", "mixed_bfloat16"):
        model = build_hofam(ModelConfig(ngf=args.ngf, dtype=policy))
        report["gflops_per_frame"] = flops_per_frame(model) / 1e9
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def infer(tv, ntv, x):
            out, _ = model.stateless_call(tv, ntv, x, training=False)
            return jax.nn.sigmoid(out)

        runs = {}
        for b in (int(v) for v in args.batches.split(",")):
            x = {k: jnp.asarray(rng.integers(0, 256, (b, 256, 256, 3), dtype=np.uint8)) for k in ("frame", "hop")}
            try:
                runs[b] = b / _time(infer, tv, ntv, x)
            except Exception as err:  # noqa: BLE001 - out of memory at a large batch: report it
                runs[b] = f"failed: {str(err).splitlines()[0][:200]}"
        report["inference_frames_per_s"][policy] = runs

        opt = keras.optimizers.Adam(5e-4, beta_1=0.95, epsilon=1e-8)
        opt.build(model.trainable_variables)
        ov = [v.value for v in opt.variables]

        def loss_fn(tv, ntv, x, y):
            logits, ntv = model.stateless_call(tv, ntv, x, training=True)
            logits = logits.astype(jnp.float32)
            loss = jnp.mean(jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits))))
            return loss, ntv

        @jax.jit
        def train_step(tv, ntv, ov, x, y):
            (loss, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, x, y)
            tv, ov = opt.stateless_apply(ov, grads, tv)
            return tv, ntv, ov, loss

        steps = {}
        for b in (int(v) for v in args.train_batches.split(",")):
            x = {k: jnp.asarray(rng.integers(0, 256, (b, 256, 256, 3), dtype=np.uint8)) for k in ("frame", "hop")}
            y = jnp.asarray((rng.random((b, 256, 256, 1)) > 0.9).astype(np.float32))
            state = train_step(tv, ntv, ov, x, y)
            _block(state)
            t = time.perf_counter()
            n = 20
            for _ in range(n):
                state = train_step(state[0], state[1], state[2], x, y)
            _block(state)
            steps[b] = 1000 * (time.perf_counter() - t) / n
        report["train_ms_per_step"][policy] = steps
    gf = report["gflops_per_frame"]
    peak = report["matmul_peak_gflops"]
    best = {p: max((v for v in r.values() if isinstance(v, float)), default=0.0)
            for p, r in report["inference_frames_per_s"].items()}
    report["best_inference_frames_per_s"] = best
    report["achieved_fraction_of_peak"] = {
        "inference_float32": gf * best["float32"] / peak["float32"],
        "inference_bfloat16": gf * best["mixed_bfloat16"] / peak["bfloat16"],
        "training_bfloat16_batch8": 3 * gf * 8 / (report["train_ms_per_step"]["mixed_bfloat16"][8] / 1000) / peak["bfloat16"]
        if 8 in report["train_ms_per_step"]["mixed_bfloat16"] else None,
    }
    b1 = report["train_ms_per_step"]["mixed_bfloat16"].get(1)
    report["original_schedule_hours_at_batch1_bf16"] = 64000 * b1 / 1000 / 3600 if b1 else None
    out = json.dumps(report, indent=1, default=str)
    print(out)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_bench.json").write_text(out)


if __name__ == "__main__":
    main()
