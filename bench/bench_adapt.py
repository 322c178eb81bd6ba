"""Scene adaptation's cost per video when one predict run segments several videos, printed as JSON.

    python -m bench.bench_adapt [--video VIDEO_OR_FRAME_FOLDER] [--clips 3] [--frames 16]
        [--size 320x240] [--steps 60] [--ckpt checkpoints/release]

The video (``bench_predict.default_video``: vtest.avi where Debian's opencv-doc is installed, else
CDnet 2014's highway) is cut into ``--clips`` clips of ``--frames`` frames at ``--size``, written
as MJPG files into one folder, and that folder is segmented by ``--phase=predict``'s code with
``--adapt_steps=--steps`` (every clip adapted from the checkpoint's weights, its first frames held).
Each row gives a clip's seconds in the ``adaptation`` stage (its ``summary.json`` profile) and its
updates per second. The first clip's adaptation also builds and traces the update; the later ones
reuse it (``hofam_tf.tasks.adapt.SceneAdapter``), so first minus later is that one-time cost.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def write_clips(video: str, folder: Path, clips: int, frames: int, size: tuple[int, int]) -> list[Path]:
    """``clips`` consecutive clips of ``frames`` frames of ``video``, scaled to ``size`` (W, H)."""
    import cv2

    from bench.bench_predict import read_frames

    source = read_frames(video)
    paths = []
    for c in range(clips):
        path = folder / f"clip{c}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
        written = 0
        for frame in source:
            writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
            written += 1
            if written == frames:
                break
        writer.release()
        if written < frames:
            raise SystemExit(f"error: {video}: fewer than {clips * frames} frames for {clips} clips of {frames}")
        paths.append(path)
    return paths


def main(argv=None) -> dict:
    from bench.bench_predict import default_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=default_video())
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "release"))
    args = ap.parse_args(argv)
    if args.clips < 2:
        ap.error("--clips must be at least 2 (the first clip against the later ones)")
    size = tuple(int(v) for v in args.size.split("x"))

    from hofam_tf.tasks.predict import PredictOptions, run_predict

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        write_clips(args.video, folder, args.clips, args.frames, size)
        opts = PredictOptions(overlay_video=False, adapt_steps=args.steps, adapt_frames=args.frames)
        t0 = time.time()
        result = run_predict(folder, args.ckpt, Path(tmp) / "out", opts, progress=False)
        total = time.time() - t0
    rows = []
    for seq in result["sequences"]:
        seconds = seq["stages"]["ms_per_frame"]["adaptation"] * seq["frames"] / 1000
        rows.append({"clip": seq["sequence"], "frames": seq["frames"],
                     "adaptation_s": round(seconds, 2), "updates_per_s": round(args.steps / seconds, 2)})
    first, later = rows[0]["adaptation_s"], [r["adaptation_s"] for r in rows[1:]]
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor()},
        "video": args.video, "size": args.size, "ckpt": args.ckpt, "steps": args.steps,
        "clips": rows, "first_clip_adaptation_s": first,
        "later_clips_adaptation_s_mean": round(sum(later) / len(later), 2),
        "one_time_cost_s": round(first - sum(later) / len(later), 2), "predict_total_s": round(total, 1),
    }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
