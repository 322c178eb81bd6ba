"""--phase=predict on what users bring: live streams, regions of interest, CDnet names, clean-up."""
import functools
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.predict import PredictOptions, run_predict
from hofam_tf.data.synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("srv")
    images, _ = make_scene(seed=2, frames=40)
    writer = cv2.VideoWriter(str(folder / "cam.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for img in images:
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    return folder / "cam.avi"


@pytest.fixture(scope="module")
def cdnet_like(tmp_path_factory):
    """A CDnet-style folder whose ROI.bmp blacks out the left half."""
    folder = tmp_path_factory.mktemp("cd") / "scene"
    images, masks = make_scene(seed=6, frames=16, objects=3)
    (folder / "input").mkdir(parents=True)
    (folder / "groundtruth").mkdir()
    for i, (img, m) in enumerate(zip(images, masks)):
        Image.fromarray(img).save(folder / "input" / f"in{i + 1:06d}.png")
        Image.fromarray(m).save(folder / "groundtruth" / f"gt{i + 1:06d}.png")
    roi = np.full((256, 256), 255, np.uint8)
    roi[:, :128] = 0
    Image.fromarray(roi).convert("P").save(folder / "ROI.bmp")
    return folder


def test_loopback_http_stream_with_max_frames(tmp_path, tiny_model, video):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.avi"
        result = run_predict(url, tiny_model, tmp_path, PredictOptions(max_frames=12, batch_size=4), progress=False)
    finally:
        server.shutdown()
    summary = result["sequences"][0]
    assert summary["sequence"] == "cam" and summary["frames"] == 12 and summary["source"] == url
    assert len(list((tmp_path / "cam" / "masks").glob("*.png"))) == 12
    cap = cv2.VideoCapture(str(tmp_path / "cam" / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_unreachable_stream_is_one_error(tmp_path, tiny_model):
    with pytest.raises(HOFAMInputError, match="127.0.0.1:9/none.avi: cannot open"):
        run_predict("http://127.0.0.1:9/none.avi", tiny_model, tmp_path, progress=False)


def _masks(folder):
    return {p.name: np.asarray(Image.open(p)) > 127 for p in sorted(folder.glob("*.png"))}


def test_roi_file_and_the_inputs_own_roi(tmp_path, cdnet_like):
    plain = tmp_path / "plain_roi"
    roi = np.zeros((256, 256), np.uint8)
    roi[:, 128:] = 255
    Image.fromarray(roi).save(tmp_path / "roi.png")
    run_predict(cdnet_like, None, tmp_path / "own", PredictOptions(method="hop", overlay_video=False), progress=False)
    run_predict(cdnet_like, None, tmp_path / "given", PredictOptions(method="hop", overlay_video=False,
                                                                     roi=str(tmp_path / "roi.png")), progress=False)
    # unrestricted reference: the same folder without its ROI.bmp
    bare = tmp_path / "bare" / "scene"
    bare.mkdir(parents=True)
    for sub in ("input", "groundtruth"):
        (bare / sub).symlink_to(cdnet_like / sub)
    run_predict(bare, None, plain, PredictOptions(method="hop", overlay_video=False), progress=False)
    ref = _masks(plain / "scene" / "masks")
    for variant in ("own", "given"):
        got = _masks(tmp_path / variant / "scene" / "masks")
        assert got.keys() == ref.keys()
        for name, mask in got.items():
            assert not mask[:, :128].any()
            np.testing.assert_array_equal(mask[:, 128:], ref[name][:, 128:])
    assert any(m[:, :128].any() for m in ref.values())  # the ROI did remove foreground


def test_cdnet_naming_and_median_post_filter(tmp_path, cdnet_like, video):
    bare = tmp_path / "bare" / "scene"  # the same frames without ROI.bmp: the unrestricted masks
    bare.mkdir(parents=True)
    for sub in ("input", "groundtruth"):
        (bare / sub).symlink_to(cdnet_like / sub)
    run_predict(bare, None, tmp_path / "raw", PredictOptions(method="hop", overlay_video=False), progress=False)
    run_predict(cdnet_like, None, tmp_path / "cd", PredictOptions(method="hop", overlay_video=False,
                                                                  naming="cdnet", post="median5"), progress=False)
    raw = _masks(tmp_path / "raw" / "scene" / "masks")
    got = _masks(tmp_path / "cd" / "scene" / "masks")
    assert sorted(got) == [f"bin{i:06d}.png" for i in range(1, 17)]
    for i in range(1, 17):
        expected = cv2.medianBlur(raw[f"{i:06d}.png"].astype(np.uint8) * 255, 5) > 127
        expected[:, :128] = False  # the folder's ROI.bmp, applied after the filter
        np.testing.assert_array_equal(got[f"bin{i:06d}.png"], expected)
    # CDnet's own scoring reads the output as it is
    from hofam_tf.tasks.evaluate import run_score

    metrics = run_score(tmp_path / "cd", cdnet_like, tmp_path / "score", progress=False)
    assert metrics["images"] == 16
    run_predict(video, None, tmp_path / "v", PredictOptions(method="hop", overlay_video=False, naming="cdnet"),
                progress=False)
    assert (tmp_path / "v" / "cam" / "masks" / "bin000001.png").exists()
    assert (tmp_path / "v" / "cam" / "masks" / "bin000040.png").exists()


def test_side_by_side_video(tmp_path, video):
    run_predict(video, None, tmp_path, PredictOptions(method="hop", side_by_side=True), progress=False)
    cap = cv2.VideoCapture(str(tmp_path / "cam" / "side_by_side.mp4"))
    ok, frame = cap.read()
    assert ok and frame.shape[:2] == (256, 768) and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40


def test_bad_options_are_refused():
    with pytest.raises(HOFAMInputError, match="post-filter"):
        PredictOptions(post="median4")
    with pytest.raises(HOFAMInputError, match="naming"):
        PredictOptions(naming="bin")
    with pytest.raises(HOFAMInputError, match="max_frames"):
        PredictOptions(max_frames=-1)


@pytest.mark.slow
def test_ctrl_c_ends_cleanly_with_complete_outputs(tmp_path, video):
    long = tmp_path / "long.avi"
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    writer = cv2.VideoWriter(str(long), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for _ in range(60):
        for f in frames:
            writer.write(f)
    writer.release()
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--phase=predict", "--method=mog2",
                             f"--input={long}", f"--output_dir={out}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "long" / "masks").glob("*.png"))) < 20:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads((out / "long" / "summary.json").read_text())
    assert summary["interrupted"] and 20 <= summary["frames"] < 2400
    assert len(list((out / "long" / "masks").glob("*.png"))) == summary["frames"]
    assert not list(out.rglob(".tmp-*"))
    cap = cv2.VideoCapture(str(out / "long" / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]
