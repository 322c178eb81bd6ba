"""Classical baselines, segmented through the same streaming path as HOFAM (``--method``).

- ``mog2`` / ``knn``: OpenCV's MOG2 and KNN background subtractors with their default settings,
  run at the input's native resolution from the first frame read (cold start: no background
  model is learnt beforehand). Their shadow label (127) counts as background.
- ``hop``: no learning at all: foreground where the red HOP channel (the longest interval, tau3)
  is at least ``HOP_THRESHOLD`` grey levels, i.e. the frame moved by 2 tile pixels or more over
  tau3 frames; the tile mask is resized to the frame. Its HOP is fixed (``HOP_RULE_FLOW``: the
  linear encoding, DIS "balanced", no reverse check, tau 1, 5, 10), whatever HOFAM's defaults.

Each segmenter turns the stream ``(frame, frame_tile, hop)`` into float foreground maps in [0, 1]
at native resolution, like the model's probabilities, so the same threshold (0.5) applies.
"""
from __future__ import annotations

import cv2
import numpy as np

from hofam_tf.config import FlowConfig

METHODS = ("hofam", "mog2", "knn", "hop")
HOP_THRESHOLD = 12
HOP_RULE_FLOW = FlowConfig(taus=(1, 5, 10), dis_preset="balanced", reverse_check=False, encoding="linear",
                           scale=6.0, gains=(1, 1, 3))


class SubtractorSegmenter:
    """MOG2 / KNN: must see every frame in order, scored or not (they learn the background)."""

    needs_all_frames = True

    def __init__(self, method: str):
        cv2.setRNGSeed(0)  # KNN samples at random: the same video gives the same masks
        self.sub = cv2.createBackgroundSubtractorMOG2() if method == "mog2" else cv2.createBackgroundSubtractorKNN()

    def __call__(self, rgb: np.ndarray, hop: np.ndarray | None) -> np.ndarray:
        fg = self.sub.apply(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return (fg == 255).astype(np.float32)


class HopSegmenter:
    """Threshold of the red HOP channel (``HOP_RULE_FLOW``), resized to the frame."""

    needs_all_frames = False

    def __call__(self, rgb: np.ndarray, hop: np.ndarray) -> np.ndarray:
        fg = (hop[..., 0] >= HOP_THRESHOLD).astype(np.float32)
        return cv2.resize(fg, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)


def make_segmenter(method: str):
    if method in ("mog2", "knn"):
        return SubtractorSegmenter(method)
    if method == "hop":
        return HopSegmenter()
    raise ValueError(f"no classical segmenter {method!r}")
