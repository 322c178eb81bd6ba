"""Model cost on this machine, printed as JSON.

    python -m bench.bench_model [--ngf 64] [--size 256] [--batches 1,8] [--precision float32] [--remapper off|on]
                                [--xla] [--steps 3]

Figures: parameters (total, fusion, trainable in the default and the faithful_tf1 model),
analytic FLOPs per frame (2 x multiply-adds of every convolution and transposed convolution),
training ms/step with one update per call and with the device-side loop (``steps_per_loop``
updates per tf.function call), inference frames/s per batch size, the process's peak resident
memory (each batch size runs in its own subprocess so the peaks are separate; on a GPU the peak
GPU memory too), the machine's measured matmul peak in float32 and bfloat16 with the model's
achieved FLOP/s as a fraction of the peak of the precision it ran in (training counted as 3x the
forward FLOPs), and the input pipeline's examples/s on real records (augmented, batch 8) beside
the model's training frames/s.

    python -m bench.bench_model --runtimes tf,onnxruntime [--ckpt checkpoints/release] [--frames 64]

compares the runtimes predict can run a trained model in (``hofam_tf.tasks.runtimes``) on real
frames and their HOP images (CDnet 2014 ``pedestrians`` from ``../shared/data``, else vtest.avi):
frames/s at ``--batches``' last batch size for TensorFlow in float32, TensorFlow in bfloat16 where
the CPU has it, and ONNX Runtime on the model exported with ``--format=onnx``, each with the
fraction of mask pixels (at the model's validated threshold) equal to TensorFlow float32's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def flops_per_frame(model) -> int:
    """2 x MACs of all Conv2D / Conv2DTranspose layers for one input frame."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, cin = layer.input.shape
            k = layer.kernel_size
            total += 2 * k[0] * k[1] * cin * layer.filters * h * w
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            k = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2 * k[0] * k[1] * cin * cout * h * w
    return int(total)


def matmul_peak(dtype: str, n: int = 2048, reps: int = 5) -> float:
    """Measured GFLOP/s of an n x n matmul in ``dtype`` ("float32" or "bfloat16") on the default device."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        n = 8192
    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, tf.bfloat16) if dtype == "bfloat16" else a
    fn = tf.function(lambda m: tf.matmul(m, m))
    fn(a).numpy()
    t = time.perf_counter()
    for _ in range(reps):
        out = fn(a)
    out.numpy()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def input_pipeline_examples_per_s(batch: int = 8, batches: int = 40) -> float | None:
    """Examples/s of the training input pipeline (augmented) on real CDnet records, or None."""
    import tempfile

    data = ROOT.parent / "shared" / "data" / "cdnet2014"
    if not data.is_dir():
        return None
    from hofam_tf.data.merging import merge_dataset
    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.config import AugmentConfig, FlowConfig
    from hofam_tf.data.dataset import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        merge_dataset(data, Path(tmp) / "c", FlowConfig(), progress=False)
        write_tfrecords(Path(tmp) / "c", Path(tmp) / "r", progress=False)
        ds = build_dataset(str(Path(tmp) / "r" / "train-*.tfrecord"), batch, training=True, with_target_num=True,
                           augment=AugmentConfig())
        it = iter(ds)
        next(it)
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batch * batches / (time.perf_counter() - t)


def measure(ngf: int, size: int, batch: int, precision: str, xla: bool, steps: int, loop_steps: int = 20) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from hofam_tf.config import LossConfig, ModelConfig
    from hofam_tf.model.losses import hofam_loss
    from hofam_tf.model.hofam import build_hofam

    model = build_hofam(ModelConfig(ngf=ngf, height=size, width=size, dtype=precision))
    opt = keras.optimizers.Adam(5e-4, beta_1=0.95, epsilon=1e-8)
    rng = np.random.default_rng(0)
    x = {"frame": tf.constant(rng.integers(0, 256, (batch, size, size, 3), np.uint8)),
         "hop": tf.constant(rng.integers(0, 256, (batch, size, size, 3), np.uint8))}
    y = tf.constant((rng.random((batch, size, size, 1)) > 0.9).astype(np.float32))
    tn = tf.ones([batch], tf.int64)
    variables = model.trainable_variables

    @tf.function(jit_compile=xla or None)
    def train_step():
        with tf.GradientTape() as tape:
            loss = hofam_loss(model(x, training=True), y, None, tn, LossConfig())["loss"]
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(jit_compile=xla or None)
    def infer():
        return tf.sigmoid(model(x, training=False))

    def timeit(fn, n):
        fn().numpy()  # compile + warm up
        fn().numpy()
        t = time.perf_counter()
        for _ in range(n):
            out = fn()
        out.numpy()
        return (time.perf_counter() - t) / n

    @tf.function(jit_compile=xla or None)
    def one_update():
        with tf.GradientTape() as tape:
            loss = hofam_loss(model(x, training=True), y, None, tn, LossConfig())["loss"]
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def loop():
        loss = tf.constant(0.0)
        for _ in tf.range(loop_steps):
            loss = one_update()
        return loss

    train_s = timeit(train_step, steps)
    loop_s = timeit(loop, max(1, steps // loop_steps)) / loop_steps
    infer_s = timeit(infer, max(steps, 3))
    out = {"batch": batch, "train_ms_per_step": 1000 * train_s, "train_frames_per_s": batch / train_s,
           "steps_per_loop": loop_steps, "train_ms_per_step_loop": 1000 * loop_s,
           "inference_frames_per_s": batch / infer_s,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if tf.config.list_physical_devices("GPU"):
        out["peak_gpu_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return out


def real_tiles(count: int, flow) -> tuple:
    """``count`` real frame tiles and their HOP images (uint8 [N, 256, 256, 3] each)."""
    import numpy as np

    from hofam_tf.data.flow import iter_hop
    from hofam_tf.data.sources import discover

    scene = ROOT.parent / "shared" / "data" / "cdnet2014" / "baseline" / "pedestrians" / "input"
    source = scene if scene.is_dir() else Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    seq = discover(source)[0]
    tiles, hops = [], []
    for _, tile, hop, _ in iter_hop(seq.iter_frames(lookback=flow.history), flow):
        tiles.append(tile)
        hops.append(hop)
        if len(tiles) == count:
            break
    return np.stack(tiles), np.stack(hops), str(source)


def runtime_rows(ckpt: str, runtimes: list[str], batch: int, frames: int) -> dict:
    """Frames/s and mask agreement with TF float32 of each runtime on real frames."""
    import tempfile

    import numpy as np

    from hofam_tf.model.checkpoints import load_for_inference, stored_threshold
    from hofam_tf.model.graph_options import graph_options
    from hofam_tf.model.precision import inference_dtype
    from hofam_tf.tasks.export import export_checkpoint
    from hofam_tf.tasks.runtimes import OnnxRunner, TFRunner

    threshold = stored_threshold(ckpt)
    model, cfg = load_for_inference(ckpt, precision="float32")
    tiles, hops, source = real_tiles(frames, cfg.flow)

    def run(runner):
        runner(tiles[:batch], hops[:batch])  # trace / warm up
        t = time.perf_counter()
        probs = [runner(tiles[i:i + batch], hops[i:i + batch]) for i in range(0, len(tiles), batch)]
        return len(tiles) / (time.perf_counter() - t), np.concatenate(probs)

    rows = []
    with graph_options():
        fps, ref = run(TFRunner(model))
        rows.append({"runtime": "tf", "precision": "float32", "frames_per_s": fps, "mask_agreement": 1.0})
        if "tf" in runtimes and inference_dtype("auto") != "float32":
            fast, _ = load_for_inference(ckpt, precision="bfloat16")
            fps, p = run(TFRunner(fast))
            rows.append({"runtime": "tf", "precision": "bfloat16", "frames_per_s": fps,
                         "mask_agreement": float(((p >= threshold) == (ref >= threshold)).mean())})
        if "onnxruntime" in runtimes:
            with tempfile.TemporaryDirectory() as tmp:
                export_checkpoint(ckpt, tmp, formats=("onnx",))
                fps, p = run(OnnxRunner(Path(tmp) / "model.onnx"))
            rows.append({"runtime": "onnxruntime", "precision": "float32", "frames_per_s": fps,
                         "mask_agreement": float(((p >= threshold) == (ref >= threshold)).mean()),
                         "max_probability_difference": float(np.abs(p - ref).max())})
    return {"checkpoint": str(ckpt), "frames": len(tiles), "source": source, "batch": batch,
            "threshold": threshold, "foreground_fraction": float((ref >= threshold).mean()), "runtimes": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    ap.add_argument("--xla", action="store_true")
    ap.add_argument("--remapper", choices=["off", "on"], default="off",
                    help="Grappler's remapper: off as in every phase (hofam_tf.model.graph_options), or on")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one_batch", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--runtimes", default="", help="compare these runtimes (tf, onnxruntime) on a trained model "
                                                   "instead of measuring the model's cost")
    ap.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "release"), help="the model --runtimes runs")
    ap.add_argument("--frames", type=int, default=64, help="real frames --runtimes runs")
    args = ap.parse_args()
    if args.runtimes:
        result = runtime_rows(args.ckpt, args.runtimes.split(","), int(args.batches.split(",")[-1]), args.frames)
        result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": _cpu_name()}
        print(json.dumps(result, indent=2))
        return
    if args.one_batch is not None:
        from hofam_tf.model.graph_options import graph_options

        with graph_options({"remapping": args.remapper == "on"}):
            print(json.dumps(measure(args.ngf, args.size, args.one_batch, args.precision, args.xla, args.steps)))
        return

    import tensorflow as tf

    from hofam_tf.model.hofam import build_hofam, count_params

    model = build_hofam(ngf=args.ngf, height=args.size, width=args.size)
    faithful = build_hofam(ngf=args.ngf, height=args.size, width=args.size, faithful_tf1=True)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
        "ngf": args.ngf, "size": args.size, "precision": args.precision, "xla": args.xla,
        "remapper": args.remapper,
        "parameters": {**count_params(model),
                       "trainable_default": int(sum(v.numpy().size for v in model.trainable_weights)),
                       "trainable_faithful_tf1": int(sum(v.numpy().size for v in faithful.trainable_weights))},
        "gflops_per_frame": flops_per_frame(model) / 1e9,
        "runs": [],
    }
    del model, faithful
    for b in (int(v) for v in args.batches.split(",")):
        cmd = [sys.executable, __file__, f"--ngf={args.ngf}", f"--size={args.size}", f"--precision={args.precision}",
               f"--steps={args.steps}", f"--one_batch={b}", f"--remapper={args.remapper}"] + (["--xla"] if args.xla else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            result["runs"].append({"batch": b, "error": proc.stderr[-500:]})
            continue
        result["runs"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if result["runs"] and "train_ms_per_step" in result["runs"][0]:
        b1 = result["runs"][0]
        result["original_schedule_hours_at_batch1"] = 64000 * b1["train_ms_per_step_loop"] / 1000 / 3600
    peaks = {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16")}
    peak = peaks["float32" if args.precision == "float32" else "bfloat16"]
    gf = result["gflops_per_frame"]
    result["matmul_peak_gflops"] = peaks
    result["achieved_fraction_of_peak"] = {
        f"batch{r['batch']}": {"inference": gf * r["inference_frames_per_s"] / peak,
                               "training": 3 * gf * r["batch"] / (r["train_ms_per_step_loop"] / 1000) / peak}
        for r in result["runs"] if "inference_frames_per_s" in r}
    pipe = input_pipeline_examples_per_s()
    if pipe is not None and result["runs"] and "train_frames_per_s" in result["runs"][-1]:
        best_train = max(r["batch"] / (r["train_ms_per_step_loop"] / 1000) for r in result["runs"] if "batch" in r
                         and "train_ms_per_step_loop" in r)
        result["input_pipeline"] = {"examples_per_s": pipe, "model_train_frames_per_s": best_train,
                                    "ratio_input_over_model": pipe / best_train, "target_ratio": 5}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
