"""The original's composite PNG layout (reference §2.1): RGB 256 (H) x 768 (W) = [frame | HOP | GT].

With a background reference (``FlowConfig.reference_stride``, the opt-in model variant) a fourth
tile follows: 256 x 1024 = [frame | HOP | GT | background]. Readers take both widths.

This module is the only place that knows the tile offsets. The GT tile holds CDnet 2014 label
values replicated over the three channels: 0 static, 50 shadow, 85 outside ROI, 170 unknown,
255 moving. The original read the GT from the red channel, and so does ``split_composite``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hofam_tf.config import TILE
from hofam_tf.errors import HOFAMInputError

# CDnet 2014 label scheme, kept in the GT tile and in the TFRecord's full label map.
STATIC, SHADOW, OUTSIDE_ROI, UNKNOWN, MOVING = 0, 50, 85, 170, 255
IGNORED_LABELS = (OUTSIDE_ROI, UNKNOWN)
CDNET_VALUES = frozenset((STATIC, SHADOW, OUTSIDE_ROI, UNKNOWN, MOVING))


# The label rules, in one place. CDnet 2014 scoring: moving is foreground, static and shadow are
# background, outside-ROI and unknown are ignored. The original's test_results.py (paper
# metrics) counts only exact 255 and exact 0. Training takes GT > 200 as foreground.
def is_foreground(labels):
    return labels == MOVING


def is_cdnet_background(labels):
    return (labels == STATIC) | (labels == SHADOW)


def is_paper_background(labels):
    return labels == STATIC
COMPOSITE_SHAPE = (TILE, 3 * TILE, 3)
REFERENCE_COMPOSITE_SHAPE = (TILE, 4 * TILE, 3)  # with the background reference tile


def compose(frame: np.ndarray, hop: np.ndarray, labels: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """frame uint8 [256,256,3], hop uint8 [256,256,3], labels uint8 [256,256] -> [256,768,3];
    with ``background`` uint8 [256,256,3] (the background reference) -> [256,1024,3]."""
    tiles = (("frame", frame, (TILE, TILE, 3)), ("hop", hop, (TILE, TILE, 3)), ("labels", labels, (TILE, TILE)))
    if background is not None:
        tiles += (("background", background, (TILE, TILE, 3)),)
    for name, arr, shape in tiles:
        if arr.shape != shape or arr.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8 {shape}, got {arr.dtype} {arr.shape}")
    gt = np.repeat(labels[..., None], 3, axis=-1)
    return np.concatenate([frame, hop, gt] + ([background] if background is not None else []), axis=1)


def split_composite_tiles(composite: np.ndarray, source: str | Path = "composite"):
    """uint8 [256,768,3] or [256,1024,3] -> (frame [256,256,3], hop [256,256,3], labels [256,256],
    background [256,256,3] or None when the composite has no fourth tile).

    The labels are the red channel of the GT tile, unmodified (the authors' demo GT of clip 260
    is anti-aliased: threshold it, as the TFRecord writer does with > 200, before using it).
    ``source`` names the file in the error raised for a wrong shape.
    """
    if composite.shape not in (COMPOSITE_SHAPE, REFERENCE_COMPOSITE_SHAPE):
        raise HOFAMInputError(
            f"{source}: composite must be {COMPOSITE_SHAPE[0]}x{COMPOSITE_SHAPE[1]} RGB "
            f"([frame | HOP | GT] tiles of 256; {REFERENCE_COMPOSITE_SHAPE[1]} wide with a background tile), "
            f"got shape {composite.shape}"
        )
    frame = composite[:, :TILE]
    hop = composite[:, TILE : 2 * TILE]
    labels = composite[:, 2 * TILE : 3 * TILE, 0]
    background = composite[:, 3 * TILE :] if composite.shape == REFERENCE_COMPOSITE_SHAPE else None
    return frame, hop, labels, background


def split_composite(composite: np.ndarray, source: str | Path = "composite"):
    """(frame, hop, labels) of a composite; see ``split_composite_tiles``."""
    return split_composite_tiles(composite, source)[:3]


def read_composite_tiles(path: str | Path):
    """Reads a composite PNG and splits it; see ``split_composite_tiles``."""
    from hofam_tf.files import read_image

    return split_composite_tiles(read_image(path, "RGB"), path)


def read_composite(path: str | Path):
    """(frame, hop, labels) of a composite PNG; see ``split_composite_tiles``."""
    return read_composite_tiles(path)[:3]


def binarize_gt(labels: np.ndarray) -> np.ndarray:
    """The original's training GT (tfrecode.py:L45-46): 255 where labels > 200, else 0."""
    return np.where(labels > 200, 255, 0).astype(np.uint8)
