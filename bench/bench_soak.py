"""Soak: predict's defaults on a long live stream, memory sampled as it runs; prints JSON.

    python -m bench.bench_soak [--frames 20000] [--size 768x576] [--clip FOLDER_OR_VIDEO] [--ckpt RUN]

A loopback HTTP server plays a real clip (default: CDnet 2014 ``baseline/highway`` from
``../shared/data``), scaled to ``--size`` and looped without end, as an MJPEG stream
(``multipart/x-mixed-replace``, what many IP cameras serve). ``python main.py --phase=predict
--input=<that URL> --max_frames=N`` runs on it as a user would run it on a camera: the shipped
model (or ``--ckpt``), predict's defaults (scene-adaptive threshold, median gate, masks and
overlay.mp4 written). The child's resident memory (``VmRSS``) is sampled with the number of masks
written; the report gives RSS at 1k, 5k, 10k and 20k frames (the samples nearest, with their frame counts), the growth
after warm-up (from the 1,000th frame to the end; the target is under 50 MB), the peak, and the
frame rate.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "cdnet2014" / "baseline" / "highway"
MARKS = (1000, 5000, 10000, 20000)


def _jpegs(clip: str, size: tuple[int, int]) -> list[bytes]:
    import cv2

    from hofam_tf.data.sources import discover

    frames = [cv2.cvtColor(fr.rgb, cv2.COLOR_RGB2BGR) for fr in discover(clip)[0].iter_frames()]
    return [cv2.imencode(".jpg", cv2.resize(f, size, interpolation=cv2.INTER_LINEAR))[1].tobytes() for f in frames]


def serve_mjpeg(jpegs: list[bytes]) -> tuple[http.server.ThreadingHTTPServer, str]:
    """An endless MJPEG stream of ``jpegs`` in a loop, on a loopback port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
            self.end_headers()
            i = 0
            try:
                while True:
                    j = jpegs[i % len(jpegs)]
                    i += 1
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j)
                                     + j + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/live.mjpg"


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _count(folder: Path) -> int:
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--size", default="768x576", help="WxH of the stream")
    ap.add_argument("--clip", default=str(CLIP), help="a video or a frame folder predict can read")
    ap.add_argument("--ckpt", default=None, help="default: the shipped release model")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between memory samples")
    ap.add_argument("--work", default=None, help="output folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    server, url = serve_mjpeg(_jpegs(args.clip, (w, h)))
    tmp = tempfile.TemporaryDirectory() if args.work is None else None
    out = Path(args.work or tmp.name)
    cmd = [sys.executable, str(ROOT / "main.py"), "--phase=predict", f"--input={url}", f"--output_dir={out}",
           f"--max_frames={args.frames}"] + ([f"--ckpt={args.ckpt}"] if args.ckpt else [])
    samples = []
    t0 = time.time()
    log = open(out.parent / f".soak-{os.getpid()}.log", "w+") if args.work is None else open(out / "soak.log", "w+")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, text=True, cwd=ROOT)  # a file: a pipe would fill up
    masks = out / "live" / "masks"
    while proc.poll() is None:
        rss = _rss_mb(proc.pid)
        if rss is not None:
            samples.append((_count(masks), rss, time.time() - t0))
        time.sleep(args.every)
    server.shutdown()
    log.seek(0)
    tail = log.read()[-2000:]
    log.close()
    if args.work is None:
        os.unlink(log.name)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}): {tail}")
    summary = json.loads((out / "live" / "summary.json").read_text())
    if tmp is not None:
        tmp.cleanup()

    def at(n):
        """[frames written, RSS MB] of the sample nearest to n frames (sampled every --every s)."""
        if not samples:
            return None
        near = min(samples, key=lambda s: abs(s[0] - n))
        return [near[0], round(near[1], 1)]

    after = [s[1] for s in samples if s[0] >= 1000]
    report = {
        "frames": summary["frames"], "size": args.size, "seconds": round(summary["seconds"], 1),
        "frames_per_second": round(summary["frames_per_second"], 2), "threshold": summary["threshold"],
        "rss_mb_at": {str(n): at(n) for n in MARKS if n <= args.frames},
        "rss_growth_after_1000_frames_mb": round(after[-1] - after[0], 1) if len(after) > 1 else None,
        "rss_peak_mb": round(max(s[1] for s in samples), 1) if samples else None,
        "rss_max_after_1000_frames_mb": round(max(after), 1) if after else None,
        "samples": len(samples), "command": " ".join(cmd[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
