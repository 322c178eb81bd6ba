import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hofam_tf.tasks.baselines import HOP_THRESHOLD
from hofam_tf.config import FlowConfig
from hofam_tf.tasks.evaluate import run_score
from hofam_tf.data.flow import hop_from_grays, resize_frame, to_gray
from hofam_tf.tasks.predict import PredictOptions, run_predict
from hofam_tf.data.synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A labelled frame folder at a non-tile size (frames/ + masks/)."""
    folder = tmp_path_factory.mktemp("scene") / "cam"
    images, masks = make_scene(seed=4, frames=14)
    for i, (img, m) in enumerate(zip(images, masks)):
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(cv2.resize(img, (200, 150))).save(folder / "frames" / f"{i:04d}.png")
        Image.fromarray(cv2.resize(m, (200, 150), interpolation=cv2.INTER_NEAREST)).save(folder / "masks" / f"{i:04d}.png")
    return folder


def _frames(scene):
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted((scene / "frames").glob("*.png"))]


def _mask(out, i):
    return np.asarray(Image.open(out / "cam" / "masks" / f"{i:04d}.png")) == 255


@pytest.mark.parametrize("method", ["mog2", "knn"])
def test_subtractor_masks_match_opencv_run_independently(tmp_path, scene, method):
    run_predict(scene, None, tmp_path, PredictOptions(method=method, overlay_video=False), progress=False)
    cv2.setRNGSeed(0)
    sub = cv2.createBackgroundSubtractorMOG2() if method == "mog2" else cv2.createBackgroundSubtractorKNN()
    for i, rgb in enumerate(_frames(scene)):
        expected = sub.apply(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)) == 255
        np.testing.assert_array_equal(_mask(tmp_path, i), expected)


def test_hop_threshold_mask_matches_an_independent_threshold(tmp_path, scene):
    run_predict(scene, None, tmp_path, PredictOptions(method="hop", overlay_video=False), progress=False)
    frames = _frames(scene)
    grays = {i: to_gray(resize_frame(f)) for i, f in enumerate(frames)}
    for i in (0, 3, 11):
        # the rule's own HOP, fixed whatever HOFAM's defaults
        hop = hop_from_grays(grays, i, FlowConfig(dis_preset="balanced", reverse_check=False, encoding="linear"))
        fg = cv2.resize((hop[..., 0] >= HOP_THRESHOLD).astype(np.float32), (200, 150)) >= 0.5
        np.testing.assert_array_equal(_mask(tmp_path, i), fg)
    assert _mask(tmp_path, 11).any() and not _mask(tmp_path, 0).any()  # frame 0 has no motion


def test_median_rule_matches_an_independent_median(tmp_path, scene, monkeypatch):
    import hofam_tf.tasks.baselines as baselines

    monkeypatch.setattr(baselines, "MEDIAN_STRIDE", 2)  # 14 frames: a span the scene can fill
    monkeypatch.setattr(baselines, "MEDIAN_FRAMES", 3)
    run_predict(scene, None, tmp_path, PredictOptions(method="median", overlay_video=False), progress=False)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(int) for f in _frames(scene)]
    for i, refs in ((11, (9, 7, 5)), (3, (1, 0, 0)), (0, (0, 0, 0))):  # before frame 0: frame 0
        median = np.sort(np.stack([grays[r] for r in refs]), axis=0)[1]
        np.testing.assert_array_equal(_mask(tmp_path, i), np.abs(grays[i] - median) >= baselines.MEDIAN_THRESHOLD)
    assert _mask(tmp_path, 11).any() and not _mask(tmp_path, 0).any()


def test_score_reads_predict_output_and_frame_folders_with_masks(tmp_path, scene):
    run_predict(scene, None, tmp_path / "pred", PredictOptions(method="hop", overlay_video=False), progress=False)
    metrics = run_score(tmp_path / "pred", scene, tmp_path / "score", progress=False)
    tp = fp = fn = 0
    for i in range(14):
        pred = _mask(tmp_path / "pred", i)
        gt = np.asarray(Image.open(scene / "masks" / f"{i:04d}.png")) == 255
        tp, fp, fn = tp + (pred & gt).sum(), fp + (pred & ~gt).sum(), fn + (~pred & gt).sum()
    assert metrics["cdnet"]["per_sequence"]["cam"]["f_measure"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert metrics["images"] == 14


def test_cli_baseline_then_score(tmp_path, scene):
    out = tmp_path / "knn"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=predict", "--method=knn",
                           f"--input={scene}", f"--output_dir={out}", "--nooverlay_video"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((out / "cam" / "masks").glob("*.png"))) == 14
    assert not (out / "cam" / "panels").exists()  # panels are opt-in for predict (--panels)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=score", f"--pred_dir={out}",
                           f"--gt_dir={scene}", f"--output_dir={tmp_path / 'score'}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CDnet avg: F" in proc.stdout and (tmp_path / "score" / "metrics.json").exists()
    # a labelled sequence without predictions is named on the console
    other = tmp_path / "two"
    other.mkdir()
    (other / "cam").symlink_to(scene)
    (other / "cam2").symlink_to(scene)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=score", f"--pred_dir={out}",
                           f"--gt_dir={other}", f"--output_dir={tmp_path / 'score2'}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped (no prediction folder): cam2" in proc.stdout


@pytest.mark.parametrize("count,levels", [(9, 256), (9, 3), (5, 256)])
def test_pixel_median_is_numpys_median(count, levels):
    from hofam_tf.tasks.baselines import pixel_median

    rng = np.random.default_rng(count * levels)
    images = [rng.integers(0, levels, (37, 53), dtype=np.uint8) for _ in range(count)]  # many ties with 3 levels
    got = pixel_median(images)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.median(np.stack(images), axis=0).astype(np.uint8))
