"""Classical baselines, segmented through the same streaming path as HOFAM (``--method``).

- ``mog2`` / ``knn``: OpenCV's MOG2 and KNN background subtractors with their default settings,
  run at the input's native resolution from the first frame read (cold start: no background
  model is learnt beforehand). Their shadow label (127) counts as background.
- ``hop``: no learning at all: foreground where the red HOP channel (the longest interval, tau3)
  is at least ``HOP_THRESHOLD`` grey levels, i.e. the frame moved by 2 tile pixels or more over
  tau3 frames; the tile mask is resized to the frame. Its HOP is fixed (``HOP_RULE_FLOW``: the
  linear encoding, DIS "balanced", no reverse check, tau 1, 5, 10), whatever HOFAM's defaults.
- ``median``: no learning at all: foreground where the frame's grey level differs by at least
  ``MEDIAN_THRESHOLD`` from the per-pixel median of the ``MEDIAN_FRAMES`` earlier frames
  ``MEDIAN_STRIDE`` apart (frames before the first read clamp to it), at native resolution. The
  same difference as the HOP's optional background channel (``FlowConfig.background_stride``).

Each segmenter turns the stream ``(frame, frame_tile, hop)`` into float foreground maps in [0, 1]
at native resolution, like the model's probabilities, so the same threshold (0.5) applies.
"""
from __future__ import annotations

import cv2
import numpy as np

from hofam_tf.config import FlowConfig
from hofam_tf.data.flow import pixel_median

METHODS = ("hofam", "mog2", "knn", "hop", "median")
HOP_THRESHOLD = 12
MEDIAN_STRIDE, MEDIAN_FRAMES, MEDIAN_THRESHOLD = 10, 9, 30
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


class MedianSegmenter:
    """|grey - median of earlier frames| >= ``MEDIAN_THRESHOLD``: sees every frame in order."""

    needs_all_frames = True

    def __init__(self):
        self.seen: dict[int, np.ndarray] = {}  # position -> grey frame, the last stride x frames
        self.next = 0

    def __call__(self, rgb: np.ndarray, hop: np.ndarray | None, index: int | None = None) -> np.ndarray:
        """Mask of the next frame; ``index``: its position, when frames in between were not given
        (missing earlier frames clamp to the nearest later one given, as before the first)."""
        return self.changed(self.observe(rgb, index)).astype(np.float32)

    def observe(self, rgb: np.ndarray, index: int | None = None) -> int:
        """Adds the next frame to the history (``index`` as in ``__call__``); returns its position."""
        t = self.next if index is None else index
        self.next = t + 1
        self.seen[t] = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        for old in [k for k in self.seen if k < t - MEDIAN_STRIDE * MEDIAN_FRAMES]:
            del self.seen[old]
        return t

    def changed(self, t: int) -> np.ndarray:
        """Boolean mask of the frame at position ``t``, the last one observed."""
        return median_changed(self.seen[t], self.earlier(t))

    def earlier(self, t: int) -> list:
        """The ``MEDIAN_FRAMES`` grey frames whose median is the background of the frame at
        position ``t``, the last one observed: ``MEDIAN_STRIDE`` apart before it, clamped to the
        earliest seen."""
        from hofam_tf.data.flow import reference_index

        first = min(self.seen)
        return [self.seen[min(k for k in self.seen if k >= max(reference_index(t, MEDIAN_STRIDE * j), first))]
                for j in range(1, MEDIAN_FRAMES + 1)]


def median_changed(gray: np.ndarray, earlier: list) -> np.ndarray:
    """The median rule's decision, pixel by pixel: |``gray`` - per-pixel median of ``earlier``| >=
    ``MEDIAN_THRESHOLD`` (any equally shaped windows of the frames)."""
    return np.abs(gray.astype(np.int16) - pixel_median(earlier).astype(np.int16)) >= MEDIAN_THRESHOLD


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
    if method == "median":
        return MedianSegmenter()
    raise ValueError(f"no classical segmenter {method!r}")
