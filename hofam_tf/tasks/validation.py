"""Validation during training: F-measure on held-out scenes at every threshold of a grid.

The validation set (``TrainConfig.val_pattern``, TFRecords of scenes kept out of training) is read
once into memory at tile size. ``Validator.evaluate(model)`` predicts it and scores it by CDnet
rules (label 255 foreground, 0 and 50 background, 85 and 170 ignored), per sequence, for every
threshold in ``THRESHOLDS`` at once (cumulative histograms of the probabilities), and returns the
threshold whose mean per-sequence F is highest. The training loop keeps the checkpoint with the
best validation F (``best.json`` in the run directory) and the test and predict phases use it and
its threshold by default.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hofam_tf.data.composite import is_cdnet_background, is_foreground
from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, model_inputs
from hofam_tf.tasks.metrics import f_from_counts

# 0.05 ... 0.95, then finer near 1: the class-in-scale loss weighs foreground up to 12.5x, so a
# model's best threshold on unseen scenes can sit above 0.95, and the longer a model trains the
# higher it goes (the release run's validation scenes: 0.95 at 500 updates, 0.99-0.997 at 3,000)
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (0.97, 0.98, 0.99, 0.995)
_BINS = 1000


@dataclasses.dataclass
class ValResult:
    f_measure: float  # mean per-sequence F at the best threshold
    threshold: float
    per_threshold: dict  # threshold -> mean per-sequence F


def f_by_threshold(counts: dict[str, tuple[np.ndarray, np.ndarray]], thresholds=THRESHOLDS) -> dict:
    """counts: sequence -> (histogram of foreground-pixel probabilities, same for background),
    each over ``_BINS`` equal bins of [0, 1]. Returns threshold -> mean per-sequence F."""
    out = {}
    for t in thresholds:
        cut = int(round(t * _BINS))
        fs = []
        for fg_hist, bg_hist in counts.values():
            tp = fg_hist[cut:].sum()
            fn = fg_hist[:cut].sum()
            fp = bg_hist[cut:].sum()
            fs.append(f_from_counts(tp, fp, fn))
        out[t] = float(np.nanmean(fs)) if not np.all(np.isnan(fs)) else 0.0
    return out


def histograms(prob: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability histograms of the foreground (255) and background (0, 50) pixels."""
    bins = np.minimum((prob * _BINS).astype(np.int64), _BINS - 1)
    fg = np.bincount(bins[is_foreground(labels)], minlength=_BINS)
    bg = np.bincount(bins[is_cdnet_background(labels)], minlength=_BINS)
    return fg, bg


class Validator:
    """Holds the validation examples; ``evaluate(model)`` scores a model on them. ``background``:
    also read the background reference (for the background-reference variant)."""

    def __init__(self, pattern, batch_size: int = 8, background: bool = False):
        from hofam_tf.data.dataset import read_examples

        self.batches = []
        for ex in read_examples(pattern, ignore_labels=True, batch_size=batch_size, background=background):
            keep = ex["labelled"].numpy().astype(bool)
            if keep.any():
                self.batches.append({
                    **{k: ex[k].numpy()[keep] for k in (FRAME_KEY, HOP_KEY, BACKGROUND_KEY) if k in ex},
                    "labels": ex["labels"].numpy()[keep],
                    "sequence": [s.decode() for s in ex["sequence"].numpy()[keep]],
                })
        self.frames = sum(len(b["labels"]) for b in self.batches)
        self._predict, self._model = None, None

    def _compiled(self, model):
        """One tf.function per model, traced once and reused at every validation."""
        if self._model is not model:
            from hofam_tf.model.hofam import tile_probabilities

            self._predict, self._model = tile_probabilities(model), model
        return self._predict

    def evaluate(self, model) -> ValResult:
        predict = self._compiled(model)
        counts: dict[str, list] = {}
        for b in self.batches:
            prob = predict(model_inputs(b[FRAME_KEY], b[HOP_KEY], b.get(BACKGROUND_KEY))).numpy()[..., 0]
            for p, labels, seq in zip(prob, b["labels"], b["sequence"]):
                fg, bg = histograms(p, labels)
                acc = counts.setdefault(seq or "unnamed", [np.zeros(_BINS, np.int64), np.zeros(_BINS, np.int64)])
                acc[0] += fg
                acc[1] += bg
        per = f_by_threshold({k: (v[0], v[1]) for k, v in counts.items()})
        best = max(per, key=lambda t: (per[t], -abs(t - 0.5)))
        return ValResult(per[best], best, per)

    def mask_agreement(self, model, other, threshold: float) -> float:
        """The fraction of the validation pixels (every pixel of every example) where the masks of
        ``model`` and ``other`` at ``threshold`` agree."""
        from hofam_tf.model.hofam import tile_probabilities

        predict_a, predict_b = tile_probabilities(model), tile_probabilities(other)
        same = total = 0
        for b in self.batches:
            x = model_inputs(b[FRAME_KEY], b[HOP_KEY], b.get(BACKGROUND_KEY))
            a, o = predict_a(x).numpy() >= threshold, predict_b(x).numpy() >= threshold
            same, total = same + int((a == o).sum()), total + a.size
        return same / total if total else 1.0
