"""Confusion counts -> the paper's metrics and CDnet 2014's seven metrics.

Paper metrics, exactly as the original ``test_results.py`` (reference §7.3):
- only pixels whose GT is exactly 255 (positive) or exactly 0 (negative) count; every other
  value (50, 85, 170, anti-aliased edges) is ignored;
- an image with TP = FN = FP = 0 (no GT foreground and no false alarm) is dropped entirely
  (its TN are not accumulated and it is not in the Dice mean) -- kept deliberately (bug B12),
  without the original's double counting of unreadable images (we raise instead);
- Recall, Precision, F-measure, IoU ("mIOU"), Specificity, FPR, FNR, PWC, Accuracy from counts
  pooled over all images; Dice is the mean of per-image 2TP / (2TP + FN + FP).

CDnet 2014 (official rules): 255 positive; 0 and 50 (shadow) negative; 85 and 170 ignored.
Recall, Specificity, FPR, FNR, PWC, Precision, F-measure per sequence from that sequence's
pooled counts, then the plain average over sequences.

Predictions are foreground where probability >= threshold (bytes: value / 255 >= threshold).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from hofam_tf.data.composite import is_cdnet_background, is_foreground, is_paper_background


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def f_from_counts(tp: float, fp: float, fn: float) -> float:
    """F (Dice) as 2TP / (2TP + FP + FN): 2PR / (P + R) wherever precision and recall are both
    defined, 0 (not undefined) when nothing is marked on foreground (recall 0, precision 0/0),
    NaN only when there is no foreground and nothing is marked."""
    return _div(2 * tp, 2 * tp + fp + fn)


def byte_threshold(threshold: float) -> int:
    """Smallest byte value v with v / 255 >= threshold (15 for 15/255)."""
    return int(math.ceil(threshold * 255 - 1e-6))


def paper_confusion(pred_fg: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    pos, neg = is_foreground(labels), is_paper_background(labels)
    return {
        "TP": int(np.sum(pred_fg & pos)), "FN": int(np.sum(~pred_fg & pos)),
        "FP": int(np.sum(pred_fg & neg)), "TN": int(np.sum(~pred_fg & neg)),
    }


def cdnet_confusion(pred_fg: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    pos, neg = is_foreground(labels), is_cdnet_background(labels)
    return {
        "TP": int(np.sum(pred_fg & pos)), "FN": int(np.sum(~pred_fg & pos)),
        "FP": int(np.sum(pred_fg & neg)), "TN": int(np.sum(~pred_fg & neg)),
    }


def seven_metrics(c: dict[str, int]) -> dict[str, float]:
    """CDnet's seven metrics of one set of counts (F by ``f_from_counts``)."""
    tp, fp, fn, tn = c["TP"], c["FP"], c["FN"], c["TN"]
    recall, precision = _div(tp, tp + fn), _div(tp, tp + fp)
    return {
        "recall": recall, "specificity": _div(tn, tn + fp), "fpr": _div(fp, fp + tn),
        "fnr": _div(fn, tp + fn), "pwc": 100.0 * _div(fn + fp, tp + fn + fp + tn),
        "precision": precision, "f_measure": f_from_counts(tp, fp, fn),
    }


class Scorer:
    """Accumulates per-image results; ``result()`` returns the JSON-ready metrics."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.paper = {"TP": 0, "FN": 0, "FP": 0, "TN": 0}
        self.dice: list[float] = []
        self.images = 0
        self.dropped = 0
        self.cdnet: dict[str, dict[str, int]] = defaultdict(lambda: {"TP": 0, "FN": 0, "FP": 0, "TN": 0})

    def add_probability(self, prob: np.ndarray, labels: np.ndarray, sequence: str) -> None:
        """prob float [H,W] in [0,1]; labels uint8 [H,W] in the CDnet scheme."""
        self.add_foreground(np.asarray(prob) >= self.threshold, labels, sequence)

    def add_bytes(self, pred: np.ndarray, labels: np.ndarray, sequence: str) -> None:
        """pred uint8 [H,W] (foreground bright)."""
        self.add_foreground(np.asarray(pred) >= byte_threshold(self.threshold), labels, sequence)

    def add_foreground(self, pred_fg: np.ndarray, labels: np.ndarray, sequence: str) -> None:
        if pred_fg.shape != labels.shape:
            raise ValueError(f"prediction {pred_fg.shape} and labels {labels.shape} differ in shape")
        self.images += 1
        c = paper_confusion(pred_fg, labels)
        if c["TP"] == c["FN"] == c["FP"] == 0:
            self.dropped += 1  # test_results.py drops such images entirely
        else:
            for k in self.paper:
                self.paper[k] += c[k]
            self.dice.append(f_from_counts(c["TP"], c["FP"], c["FN"]))
        cd = cdnet_confusion(pred_fg, labels)
        for k in cd:
            self.cdnet[sequence][k] += cd[k]

    def result(self) -> dict:
        c = self.paper
        tp, fp, fn, tn = c["TP"], c["FP"], c["FN"], c["TN"]
        p_count, n_count = tp + fn, tn + fp
        recall, precision = _div(tp, p_count), _div(tp, tp + fp)
        paper = {
            "recall": recall, "precision": precision,
            "f_measure": _div(2 * recall * precision, recall + precision),
            "dice": float(np.mean(self.dice)) if self.dice else float("nan"),
            "iou": _div(tp, tp + fn + fp), "specificity": _div(tn, tn + fp),
            "fpr": _div(fp, n_count), "fnr": _div(fn, fn + tp),
            "pwc": 100.0 * _div(fn + fp, p_count + n_count),
            "accuracy": _div(tp + tn, p_count + n_count),
            "counts": dict(c), "images_counted": len(self.dice), "images_dropped": self.dropped,
        }
        per_seq = {name: {**seven_metrics(cnt), "counts": dict(cnt)} for name, cnt in sorted(self.cdnet.items())}
        keys = ["recall", "specificity", "fpr", "fnr", "pwc", "precision", "f_measure"]
        average = {k: float(np.nanmean([m[k] for m in per_seq.values()])) if per_seq else float("nan")
                   for k in keys}
        return {"threshold": self.threshold, "images": self.images, "paper": paper,
                "cdnet": {"per_sequence": per_seq, "average": average}}


def to_json_safe(obj):
    """NaN -> None recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
