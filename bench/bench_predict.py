"""Predict throughput on a real video, printed as JSON.

    python -m bench.bench_predict [--video /usr/share/doc/opencv-doc/examples/data/vtest.avi]
        [--ngf 64] [--frames 200] [--batch 8]

Figures: end-to-end predict frames/s (decode + flows + model + writing masks and the overlay
MP4), first with the plain model (``calibrate_frames=0, median_gate=0``) and then with predict's
defaults (the scene-adaptive threshold and the median gate), each with the process's peak resident
memory after it (predict streams, so the plain run's should not grow with the video's length; the
defaults hold the first 200 frames), and the model alone (frames/s of batched inference on the
same 256x256 inputs). The model
has random weights of width ``ngf`` (speed does not depend on the weights). The video is cut to
its first ``--frames`` frames (re-encoded to a temporary MJPG file) to bound the run time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", default="/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    import cv2
    import numpy as np
    import tensorflow as tf

    from hofam_tf.config import ModelConfig, RunConfig
    from hofam_tf.model.hofam import build_hofam
    from hofam_tf.tasks.predict import PredictOptions, run_predict

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cap = cv2.VideoCapture(args.video)
        if not cap.isOpened():
            sys.exit(f"error: {args.video}: cannot open video")
        w, h = int(cap.get(3)), int(cap.get(4))
        writer = cv2.VideoWriter(str(tmp / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
        n = 0
        while n < args.frames:
            ok, frame = cap.read()
            if not ok:
                break
            writer.write(frame)
            n += 1
        writer.release()
        model = build_hofam(ngf=args.ngf)
        model.save(tmp / "model.keras")
        RunConfig(model=ModelConfig(ngf=args.ngf)).save(tmp / "config.json")
        e2e, rss = {}, {}
        for name, opts in (("plain", PredictOptions(batch_size=args.batch, calibrate_frames=0, median_gate=0)),
                           ("defaults", PredictOptions(batch_size=args.batch))):
            t = time.perf_counter()
            result = run_predict(tmp / "clip.avi", tmp / "model.keras", tmp / name, opts, progress=False)
            e2e[name] = result["sequences"][0]["frames"] / (time.perf_counter() - t)
            rss[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        fn = tf.function(lambda x: tf.sigmoid(model(x, training=False)))
        rng = np.random.default_rng(0)
        x = {"frame": tf.constant(rng.integers(0, 256, (args.batch, 256, 256, 3), np.uint8)),
             "hop": tf.constant(rng.integers(0, 256, (args.batch, 256, 256, 3), np.uint8))}
        fn(x).numpy()
        reps = max(3, 64 // args.batch)
        t = time.perf_counter()
        for _ in range(reps):
            out = fn(x)
        out.numpy()
        model_fps = reps * args.batch / (time.perf_counter() - t)
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
        "video": args.video, "native_size": [h, w], "frames": n, "ngf": args.ngf, "batch": args.batch,
        "predict_end_to_end_fps": e2e["plain"], "predict_defaults_end_to_end_fps": e2e["defaults"],
        "model_only_fps": model_fps, "peak_rss_mib": rss["plain"], "peak_rss_mib_after_defaults": rss["defaults"],
    }, indent=2))


if __name__ == "__main__":
    main()
