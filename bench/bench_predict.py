"""Predict throughput on a real video, with a per-stage profile, printed as JSON.

    python -m bench.bench_predict [--video VIDEO_OR_FRAME_FOLDER]
        [--sizes 320x240,768x576,1920x1080] [--frames 300] [--ckpt checkpoints/release | --ngf 64]
        [--batch 8] [--long 5000] [--flow_preset run|balanced|medium|...]

The video is vtest.avi (Debian's opencv-doc, 768x576 pedestrians) where installed, else CDnet
2014's highway from ../shared/data (320x240 traffic, looped). For each size the video's first
``--frames`` frames are scaled to it (a real clip, re-encoded to a
temporary MJPG file) and segmented by ``--phase=predict``'s code twice, each in its own process so
each has its own peak memory: with the plain model (``calibrate_frames=0, median_gate=0``) and with
predict's defaults (scene-adaptive threshold and median gate). Each row gives the end-to-end
frames/s, the peak resident memory, and the stage profile that run recorded in its
``summary.json`` (``hofam_tf.tasks.stages``: ms per frame of decode, resize, flows on the flow
threads, gate, model, calibration, post, mask and video writing, and the stage that bounds it).
"model only" is batched inference on the same 256x256 inputs. ``--long N`` adds a row for an
N-frame stream (the clip looped) at the middle size, with peak memory after 1/5 and all of it.
The model is the release model (width 8) by default; ``--ngf`` measures an untrained one of that
width instead (speed does not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
# without Debian's opencv-doc: CDnet 2014's highway (320x240, real traffic), looped
FALLBACK = ROOT.parent / "shared" / "data" / "cdnet2014" / "baseline" / "highway" / "input"


def default_video() -> str:
    return VTEST if Path(VTEST).is_file() else str(FALLBACK)


def read_frames(video: str):
    """BGR frames of a video file or of a folder of images (sorted by name)."""
    import cv2

    if Path(video).is_dir():
        for path in sorted(p for p in Path(video).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")):
            yield cv2.imread(str(path))
        return
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        sys.exit(f"error: {video}: cannot open video")
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        yield frame
    cap.release()


def write_clip(video: str, path: Path, size: tuple[int, int], frames: int) -> int:
    """The first ``frames`` frames of ``video`` (looped when shorter), scaled to ``size`` (w, h)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    n = 0
    while n < frames:
        read = 0
        for frame in read_frames(video):
            if n >= frames:
                break
            writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if frame.shape[1::-1] != size else frame)
            n += 1
            read += 1
        if read == 0:
            sys.exit(f"error: {video}: no frames")
    writer.release()
    return n


def one_run(clip: str, ckpt: str, out: str, mode: str, batch: int, rss_at: int, flow_preset: str = "",
            video_max_side: int | None = None) -> dict:
    """One predict run in this process: frames/s, peak RSS and the stage profile. ``flow_preset``:
    predict's DIS preset ("": predict's default); ``video_max_side``: the overlay video's size cap
    (None: predict's default)."""
    from hofam_tf.model.checkpoints import stored_post, stored_threshold
    from hofam_tf.tasks.predict import PredictOptions, run_predict

    opts = dict(batch_size=batch, threshold=stored_threshold(ckpt), **stored_post(ckpt))  # predict's defaults
    if mode == "plain":
        opts.update(calibrate_frames=0, median_gate=0)
    if flow_preset:
        opts.update(flow_preset=flow_preset)
    if video_max_side is not None:
        opts.update(video_max_side=video_max_side)
    rss_early = None
    if rss_at:  # the long stream: peak memory after its first rss_at frames too
        run_predict(clip, ckpt, out + "_early", PredictOptions(**opts, max_frames=rss_at), progress=False)
        rss_early = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    summary = run_predict(clip, ckpt, out, PredictOptions(**opts), progress=False)["sequences"][0]
    seconds = time.perf_counter() - t
    return {"mode": mode, "frames": summary["frames"], "end_to_end_fps": summary["frames"] / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **({"peak_rss_mib_after_first": {str(rss_at): rss_early}} if rss_at else {}),
            "flow": summary["flow"], "stages": summary["stages"]}


def model_only_fps(ckpt: str, batch: int) -> float:
    import numpy as np

    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.model.graph_options import graph_options
    from hofam_tf.model.precision import RUN_PRECISION
    from hofam_tf.tasks.runtimes import TFRunner

    model, _ = load_for_inference(ckpt, precision=RUN_PRECISION)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (batch, 256, 256, 3), np.uint8)
    hops = rng.integers(0, 256, (batch, 256, 256, 3), np.uint8)
    with graph_options():
        runner = TFRunner(model)
        runner(frames, hops)
        reps = max(3, 64 // batch)
        t = time.perf_counter()
        for _ in range(reps):
            runner(frames, hops)
        return reps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=None, help="a video file or a frame folder (default: vtest.avi, else "
                                                  "CDnet highway from ../shared/data)")
    ap.add_argument("--sizes", default="320x240,768x576,1920x1080")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "release"))
    ap.add_argument("--ngf", type=int, default=0, help="an untrained model of this width instead of --ckpt")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--long", type=int, default=0, help="add an N-frame stream at the middle size")
    ap.add_argument("--flow_preset", default="", help="predict's DIS preset: run (the model's own) or a preset "
                                                      "(default: predict's, hofam_tf.tasks.predict.FLOW_PRESET)")
    ap.add_argument("--video_max_side", type=int, default=None,
                    help="the preview videos' size cap (default: predict's, PredictOptions.video_max_side; 0: native)")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # clip,ckpt,out,mode,rss_at: one run, JSON out
    args = ap.parse_args()
    if args.one:
        clip, ckpt, out, mode, rss_at = args.one.split(",")
        print(json.dumps(one_run(clip, ckpt, out, mode, args.batch, int(rss_at), args.flow_preset,
                                 args.video_max_side)))
        return

    args.video = args.video or default_video()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.ckpt
        if args.ngf:
            from hofam_tf.config import ModelConfig, RunConfig
            from hofam_tf.model.hofam import build_hofam

            build_hofam(ngf=args.ngf).save(tmp / "model.keras")
            RunConfig(model=ModelConfig(ngf=args.ngf)).save(tmp / "config.json")
            ckpt = str(tmp / "model.keras")

        def run(clip, mode, name, rss_at=0):
            cmd = [sys.executable, "-m", "bench.bench_predict", f"--batch={args.batch}",
                   f"--flow_preset={args.flow_preset}",
                   *([f"--video_max_side={args.video_max_side}"] if args.video_max_side is not None else []),
                   f"--one={clip},{ckpt},{tmp / name},{mode},{rss_at}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                return {"mode": mode, "error": proc.stderr[-800:]}
            return json.loads(proc.stdout.strip().splitlines()[-1])

        rows = []
        for w, h in sizes:
            clip = tmp / f"clip_{w}x{h}.avi"
            n = write_clip(args.video, clip, (w, h), args.frames)
            for mode in ("plain", "defaults"):
                rows.append({"size": f"{w}x{h}", **run(clip, mode, f"{w}x{h}_{mode}")})
        if args.long:
            w, h = sizes[len(sizes) // 2]
            clip = tmp / f"long_{w}x{h}.avi"
            write_clip(args.video, clip, (w, h), args.long)
            rows.append({"size": f"{w}x{h}", "long_stream": True,
                         **run(clip, "defaults", f"long_{w}x{h}", rss_at=args.long // 5)})
        model_fps = model_only_fps(ckpt, args.batch)
    from hofam_tf.tasks.predict import PredictOptions

    for r in rows:
        if "end_to_end_fps" in r:
            r["fraction_of_model_only"] = r["end_to_end_fps"] / model_fps
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "video": args.video, "frames": n, "ckpt": args.ckpt if not args.ngf else None, "ngf": args.ngf or None,
        "batch": args.batch, "model_only_fps": model_fps, "rows": rows,
        "video_max_side": args.video_max_side if args.video_max_side is not None else PredictOptions.video_max_side,
    }, indent=2))


if __name__ == "__main__":
    main()
