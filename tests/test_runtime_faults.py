"""Faults of long-running use, through the command line: streams that drop or stall, corrupt
frames, a full disk, cameras that never open, and two runs on one folder."""
import errno
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HIGHWAY = ("cdnet2014", "baseline", "highway", "input")


def _run(*args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=timeout)


def _predict(*args, timeout=600):
    return _run(ROOT / "main.py", "--phase=predict", "--inference_precision=float32", *args, timeout=timeout)


def _messages_start_lines(stderr: str) -> None:
    """Every warning: and error: starts a line (after a newline or a carriage return)."""
    for word in ("warning:", "error:"):
        at = stderr.find(word)
        while at >= 0:
            assert at == 0 or stderr[at - 1] in "\n\r", repr(stderr[max(0, at - 120):at + 40])
            at = stderr.find(word, at + 1)


def _masks(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((folder / "masks").iterdir())]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, shared_data):
    """The highway frames as an MJPG AVI (each frame one JPEG: a damaged frame stays local)."""
    import cv2

    folder = tmp_path_factory.mktemp("clip")
    frames = [cv2.imread(str(p)) for p in sorted(shared_data.joinpath(*HIGHWAY).glob("*.jpg"))]
    for name, keep in (("clip.avi", range(len(frames))), ("clip_without_20.avi", [i for i in range(51) if i != 20])):
        w = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"MJPG"), 25, frames[0].shape[1::-1])
        for i in keep:
            w.write(frames[i])
        w.release()
    return folder


class _Server:
    """A loopback HTTP server of one file whose connections misbehave in turn: each entry of
    ``plan`` says what connection k does: ("cut", n) sends n bytes and closes, ("stall", n) sends n
    bytes and then nothing, "full" sends the whole file, "refuse" answers 503. Connections past
    the plan are refused."""

    def __init__(self, data: bytes, plan: list):
        server = self
        self.data, self.plan, self.connections = data, list(plan), 0
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                k = server.connections
                server.connections += 1
                what = server.plan[k] if k < len(server.plan) else "refuse"
                if what == "refuse":
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.send_header("Content-Length", str(len(server.data)))
                self.end_headers()
                try:
                    if what == "full":
                        self.wfile.write(server.data)
                        return
                    kind, n = what
                    self.wfile.write(server.data[:n])
                    self.wfile.flush()
                    if kind == "stall":
                        server.release.wait(60)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cam.avi"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()


@pytest.mark.slow
def test_a_stream_that_drops_and_stalls_is_reconnected_and_numbered_on(tmp_path, clip):
    """The first connection is cut after about 15 frames, the second stalls after about 10
    more, the third serves the whole clip: predict reconnects twice, names the 60 masks
    000000..000059 without a gap or a repeat, and says so in summary.json."""
    data = (clip / "clip.avi").read_bytes()
    per_frame = len(data) // 51
    server = _Server(data, [("cut", 16 * per_frame), ("stall", 12 * per_frame), "full"])
    try:
        proc = _predict(f"--input={server.url}", f"--output_dir={tmp_path / 'out'}", "--max_frames=60",
                        "--read_timeout=2", "--reconnect_backoff=0.2", "--calibrate_frames=20")
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "cam"
    names = sorted(p.name for p in (out / "masks").iterdir())
    assert names == [f"{i:06d}.png" for i in range(60)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reconnects"] == 2 and summary["frames"] == 60
    gaps = [e for e in summary["events"] if e["event"] == "reconnect"]
    assert gaps[0]["after_frame"] < gaps[1]["after_frame"] < 60 and gaps[1]["gap_seconds"] > 0
    assert proc.stderr.count("warning:") == 2 and "stream dropped" in proc.stderr
    _messages_start_lines(proc.stderr)


@pytest.mark.slow
def test_with_reconnect_off_a_dropped_stream_ends_cleanly(tmp_path, clip):
    data = (clip / "clip.avi").read_bytes()
    server = _Server(data, [("cut", len(data) // 3)])
    try:
        proc = _predict(f"--input={server.url}", f"--output_dir={tmp_path / 'out'}", "--reconnect=0",
                        "--calibrate_frames=5")
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "cam"
    summary = json.loads((out / "summary.json").read_text())
    n = summary["frames"]
    assert 5 < n < 51 and len(list((out / "masks").iterdir())) == n
    assert "reconnect off" in summary["ended"] and summary["reconnects"] == 0
    assert (out / "overlay.mp4").is_file() and not list(out.rglob(".tmp-*"))


@pytest.mark.slow
def test_a_garbage_frame_in_a_folder_is_skipped_and_does_not_poison_the_history(tmp_path, shared_data):
    src = shared_data.joinpath(*HIGHWAY)
    bad, clean = tmp_path / "bad" / "input", tmp_path / "clean" / "input"
    shutil.copytree(src, bad)
    shutil.copytree(src, clean)
    (bad / "in000625.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    (clean / "in000625.jpg").unlink()
    runs = {}
    for name, folder in (("bad", bad), ("clean", clean)):
        proc = _predict(f"--input={folder}", f"--output_dir={tmp_path / ('out_' + name)}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = proc
    assert runs["bad"].stderr.count("warning:") == 1 and "in000625.jpg" in runs["bad"].stderr
    _messages_start_lines(runs["bad"].stderr)
    summary = json.loads((tmp_path / "out_bad" / "input" / "summary.json").read_text())
    assert summary["skipped_frames"] == 1 and summary["frames"] == 50
    bad_masks, clean_masks = (tmp_path / f"out_{n}" / "input" / "masks" for n in ("bad", "clean"))
    assert sorted(p.name for p in bad_masks.iterdir()) == sorted(p.name for p in clean_masks.iterdir())
    for p in sorted(clean_masks.iterdir()):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(bad_masks / p.name)))


@pytest.mark.slow
def test_a_damaged_packet_in_a_video_is_skipped(tmp_path, clip):
    """Frame 20's JPEG is overwritten with garbage: it is skipped with one warning, and the masks
    of the other 50 frames equal a run on the video written without frame 20."""
    data = bytearray((clip / "clip.avi").read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    data[starts[20]:starts[20] + 4000] = bytes([0x55]) * 4000
    (tmp_path / "damaged.avi").write_bytes(bytes(data))
    runs = {}
    for name in ("damaged", "without"):
        video = tmp_path / "damaged.avi" if name == "damaged" else clip / "clip_without_20.avi"
        proc = _predict(f"--input={video}", f"--output_dir={tmp_path / ('out_' + name)}", "--nooverlay_video")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = proc
    assert runs["damaged"].stderr.count("warning:") == 1 and "frame 20" in runs["damaged"].stderr
    summary = json.loads((tmp_path / "out_damaged" / "damaged" / "summary.json").read_text())
    assert summary["skipped_frames"] == 1 and summary["frames"] == 50
    names = sorted(p.name for p in (tmp_path / "out_damaged" / "damaged" / "masks").iterdir())
    assert "000020.png" not in names and names[-1] == "000050.png"
    damaged = _masks(tmp_path / "out_damaged" / "damaged")
    without = _masks(tmp_path / "out_without" / "clip_without_20")
    assert len(damaged) == len(without) == 50
    for a, b in zip(damaged, without):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["camera", "refused", "silent"])
def test_a_camera_that_never_opens_is_one_error_line_in_bounded_time(tmp_path, source):
    listener = None
    if source == "camera":
        url = "57"
    elif source == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/live"  # closed again: connections are refused
    else:  # accepts the connection and never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/live"
    out = tmp_path / "out"
    t0 = time.monotonic()
    try:
        proc = _predict(f"--input={url}", f"--output_dir={out}", "--open_timeout=2", timeout=120)
    finally:
        if listener is not None:
            listener.close()
    elapsed = time.monotonic() - t0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "cannot open the camera or stream" in errors[0] and url in errors[0]
    assert "Traceback" not in proc.stderr and "[tcp @" not in proc.stderr
    assert not out.exists()
    assert elapsed < 60  # model loading plus at most two 2-second opens


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _lock(folder: Path, pid: int):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".hofam.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "what": "predict",
                                                   "started": "2026-01-01T00:00:00"}))


@pytest.mark.slow
def test_a_second_predict_on_the_same_output_folder_is_refused(tmp_path, shared_data):
    owner = _sleeper()
    try:
        _lock(tmp_path / "out", owner.pid)
        proc = _predict(f"--input={shared_data.joinpath(*HIGHWAY)}", f"--output_dir={tmp_path / 'out'}",
                        "--method=median")
    finally:
        owner.kill()
        owner.wait()
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert str(tmp_path / "out") in errors[0] and f"pid {owner.pid}" in errors[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".hofam.lock"]  # nothing written
    # the owner is gone now: its lock is stale and taken over, with a warning
    proc = _predict(f"--input={shared_data.joinpath(*HIGHWAY)}", f"--output_dir={tmp_path / 'out'}",
                    "--method=median")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stale lock" in proc.stderr and not (tmp_path / "out" / ".hofam.lock").exists()
    assert len(list((tmp_path / "out" / "input" / "masks").iterdir())) == 51


@pytest.fixture(scope="module")
def demo_pattern(tmp_path_factory, shared_data) -> str:
    """--train_pattern of TFRecords of the authors' demo composites, made once for this module."""
    rec = tmp_path_factory.mktemp("demo_records")
    proc = _run(ROOT / "data_prep" / "tfrecord.py", f"--input_dir={shared_data / 'hofam_demo'}", f"--output_dir={rec}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return f"--train_pattern={rec}/train-*.tfrecord"


def _train(pattern, run_dir, steps):
    return _run(ROOT / "main.py", "--phase=train", pattern, f"--ckpt_dir={run_dir}", "--ngf=2", f"--steps={steps}",
                "--ckpt_every=2", "--image_every=0", "--batch_size=2")


@pytest.mark.slow
def test_a_second_train_on_the_same_run_directory_is_refused(tmp_path, demo_pattern):
    pattern = demo_pattern
    owner = _sleeper()
    try:
        _lock(tmp_path / "run", owner.pid)
        proc = _train(pattern, tmp_path / "run", 2)
    finally:
        owner.kill()
        owner.wait()
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "in use by another" in errors[0] and f"pid {owner.pid}" in errors[0]
    assert not (tmp_path / "run" / "ckpt").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (mount needs root: skipped, saying so, where it is not allowed)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): the full-disk test needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path, leave: int) -> Path:
    """Fills the file system of ``folder`` up to ``leave`` free bytes."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(free - leave, 0))
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
def test_a_full_disk_stops_training_cleanly_and_it_resumes_once_space_is_freed(small_disk, demo_pattern):
    pattern = demo_pattern
    run = small_disk / "run"
    first = _train(pattern, run, 2)
    assert first.returncode == 0, first.stderr[-2000:]
    filler = _fill(small_disk, leave=16 * 1024)
    full = _train(pattern, run, 4)
    errors = [ln for ln in full.stderr.splitlines() if ln.startswith("error:")]
    assert full.returncode == 2 and len(errors) == 1, full.stderr[-2000:]
    assert f"{run / 'ckpt'}: no space left on device while writing checkpoint 4" in errors[0]
    assert "SaveV2" not in full.stderr and "function_node" not in full.stderr and "Traceback" not in full.stderr
    _messages_start_lines(full.stderr)
    filler.unlink()
    again = _train(pattern, run, 4)
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(again.stdout[again.stdout.index("{"):again.stdout.rindex("}") + 1])
    assert result["resumed_from"] == 2 and result["steps"] == 4


def test_the_calibration_buffer_is_bounded_in_bytes_whatever_the_resolution(tmp_path, shared_data):
    """The frames held for the scene-adaptive threshold are capped by bytes: 200 at 768x576,
    119 at 1080p, 31 at 4K under the default 1 GiB; a run with a small cap holds what the cap
    allows, and summary.json says how many it held."""
    from hofam_tf.tasks.predict import CALIBRATION_BYTES, PredictOptions, calibration_frames, run_predict

    opts = PredictOptions()
    assert CALIBRATION_BYTES == 1 << 30
    assert [calibration_frames(opts, s) for s in ((576, 768, 3), (1080, 1920, 3), (2160, 3840, 3))] == [200, 119, 31]
    for shape in ((576, 768, 3), (1080, 1920, 3), (2160, 3840, 3), (4320, 7680, 3)):
        h, w = shape[:2]
        held = calibration_frames(opts, shape) * (4 * h * w + 2 * 256 * 256 * 3 + 256 * 256 * 4)
        assert held <= CALIBRATION_BYTES or calibration_frames(opts, shape) == 1
    per_frame = 4 * 240 * 320 + 2 * 256 * 256 * 3 + 256 * 256 * 4  # highway is 320x240
    small = PredictOptions(calibration_bytes=7 * per_frame + 100, calibrate_frames=200, threshold=0.9)
    result = run_predict(shared_data.joinpath(*HIGHWAY), ROOT / "checkpoints" / "release", tmp_path / "out", small,
                         progress=False, precision="float32")
    (summary,) = result["sequences"]
    assert summary["calibration_frames_held"] == 7 and summary["frames"] == 51
