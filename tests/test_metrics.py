import numpy as np
import pytest
from PIL import Image

from hofam_tf.tasks.metrics import Scorer, byte_threshold

LABELS = np.array([[255, 255, 0, 0],
                   [255, 170, 0, 50],
                   [85, 0, 0, 0],
                   [255, 0, 0, 0]], np.uint8)
PRED = np.array([[1, 0, 1, 0],
                 [1, 1, 0, 1],
                 [1, 0, 0, 0],
                 [0, 0, 0, 0]], bool)


def test_hand_computed_4x4():
    s = Scorer(0.5)
    s.add_foreground(PRED, LABELS, "a")
    s.add_foreground(np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8), "a")  # no GT, no FP: dropped
    r = s.result()
    p = r["paper"]
    # paper: only 0/255 count -> TP 2, FN 2, FP 1 (the 50 is ignored), TN 8
    assert p["counts"] == {"TP": 2, "FN": 2, "FP": 1, "TN": 8}
    assert p["images_counted"] == 1 and p["images_dropped"] == 1
    assert p["recall"] == pytest.approx(0.5) and p["precision"] == pytest.approx(2 / 3)
    assert p["f_measure"] == pytest.approx(4 / 7)
    assert p["dice"] == pytest.approx(4 / 7)
    assert p["pwc"] == pytest.approx(100 * 3 / 13)
    assert p["iou"] == pytest.approx(2 / 5)
    # CDnet: 50 is background -> FP 2; the empty image's 16 TN count; 85/170 ignored
    c = r["cdnet"]["per_sequence"]["a"]
    assert c["counts"] == {"TP": 2, "FN": 2, "FP": 2, "TN": 8 + 16}
    assert c["recall"] == pytest.approx(0.5) and c["precision"] == pytest.approx(0.5)
    assert c["fpr"] == pytest.approx(2 / 26) and c["specificity"] == pytest.approx(24 / 26)
    assert c["fnr"] == pytest.approx(0.5) and c["pwc"] == pytest.approx(100 * 4 / 30)
    assert c["f_measure"] == pytest.approx(0.5)
    assert r["cdnet"]["average"]["f_measure"] == pytest.approx(0.5)


def test_thresholds_on_probabilities_and_bytes():
    assert byte_threshold(15 / 255) == 15 and byte_threshold(0.5) == 128
    s1, s2 = Scorer(15 / 255), Scorer(15 / 255)
    prob = np.array([[14, 15], [16, 255]], np.float32) / 255
    labels = np.array([[255, 255], [0, 255]], np.uint8)
    s1.add_probability(prob, labels, "x")
    s2.add_bytes((prob * 255).round().astype(np.uint8), labels, "x")
    assert s1.result()["paper"]["counts"] == s2.result()["paper"]["counts"] == {"TP": 2, "FN": 1, "FP": 1, "TN": 0}


def test_real_cdnet_labels(shared_data):
    gt_dir = shared_data / "cdnet2014" / "baseline" / "pedestrians" / "groundtruth"
    perfect, shifted = Scorer(), Scorer()
    totals = {"TP": 0, "FP": 0, "FN": 0, "TN": 0}
    for path in sorted(gt_dir.glob("*.png"))[::5]:
        gt = np.asarray(Image.open(path).convert("L"))
        perfect.add_foreground(gt == 255, gt, "pedestrians")
        pred = np.roll(gt == 255, 3, axis=1)
        shifted.add_foreground(pred, gt, "pedestrians")
        pos, neg = gt == 255, np.isin(gt, [0, 50])
        totals["TP"] += int((pred & pos).sum())
        totals["FN"] += int((~pred & pos).sum())
        totals["FP"] += int((pred & neg).sum())
        totals["TN"] += int((~pred & neg).sum())
    assert {50, 170}.issubset(set(np.unique(gt)))
    r = perfect.result()
    assert r["paper"]["recall"] == 1.0 and r["paper"]["precision"] == 1.0
    assert r["cdnet"]["average"]["f_measure"] == 1.0 and r["cdnet"]["average"]["pwc"] == 0.0
    c = shifted.result()["cdnet"]["per_sequence"]["pedestrians"]
    assert c["counts"] == totals
    assert c["precision"] == pytest.approx(totals["TP"] / (totals["TP"] + totals["FP"]))


def test_score_phase_on_cdnet_folders(tmp_path, shared_data):
    """Predictions named like the GT files, scored against a CDnet-style folder (masks only read)."""
    from hofam_tf.tasks.evaluate import run_score

    gt_root = shared_data / "cdnet2014" / "baseline"
    pred = tmp_path / "pred" / "pedestrians"
    pred.mkdir(parents=True)
    tp = fn = 0
    for path in sorted((gt_root / "pedestrians" / "groundtruth").glob("*.png")):
        gt = np.asarray(Image.open(path).convert("L"))
        mask = np.where(gt == 255, 255, 0).astype(np.uint8)
        mask[:, : mask.shape[1] // 2] = 0  # miss the left half
        Image.fromarray(mask).save(pred / path.name)
        tp += int(((mask == 255) & (gt == 255)).sum())
        fn += int(((mask == 0) & (gt == 255)).sum())
    r = run_score(tmp_path / "pred", gt_root, tmp_path / "out", progress=False)
    assert r["skipped_sequences"] == ["highway", "office"]
    c = r["cdnet"]["per_sequence"]["pedestrians"]["counts"]
    assert (c["TP"], c["FN"], c["FP"]) == (tp, fn, 0)
    assert r["images"] == 51 and (tmp_path / "out" / "metrics.json").exists()


def test_cdnet_f_is_zero_not_undefined_when_nothing_is_marked():
    labels = np.zeros((4, 4), np.uint8)
    labels[:2, :2] = 255  # 4 foreground pixels
    scorer = Scorer()
    scorer.add_foreground(np.zeros((4, 4), bool), labels, "a")  # marks nothing
    pred = np.zeros((4, 4), bool)
    pred[0, :3] = True  # TP 2, FP 1, FN 2: P 2/3, R 1/2
    scorer.add_foreground(pred, labels, "b")
    scorer.add_foreground(np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8), "c")  # nothing to find, nothing marked
    per = scorer.result()["cdnet"]["per_sequence"]
    assert per["a"]["f_measure"] == 0.0 and per["a"]["recall"] == 0.0 and np.isnan(per["a"]["precision"])
    p, r = 2 / 3, 1 / 2
    assert per["b"]["f_measure"] == pytest.approx(2 * p * r / (p + r))
    assert np.isnan(per["c"]["f_measure"])
    assert scorer.result()["cdnet"]["average"]["f_measure"] == pytest.approx((0 + 2 * p * r / (p + r)) / 2)
