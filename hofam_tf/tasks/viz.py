"""Pictures for people: the original's 4-tile test panel, error maps, TensorBoard images."""
from __future__ import annotations

import numpy as np

from hofam_tf.data.composite import IGNORED_LABELS, binarize_gt, is_cdnet_background, is_foreground

FP_COLOUR = (0, 255, 0)  # green, as in the paper's figures
FN_COLOUR = (255, 0, 0)  # red
IGNORED_COLOUR = (96, 96, 96)


def grey3(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(x, np.uint8)[..., None], 3, axis=-1)


def prob_to_bytes(prob: np.ndarray) -> np.ndarray:
    """float [H,W] in [0,1] -> uint8 round(255 p)."""
    return np.clip(np.rint(np.asarray(prob, np.float32) * 255), 0, 255).astype(np.uint8)


def test_panel(frame: np.ndarray, labels: np.ndarray, hop: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """The original test output (model.py:L575-594): [frame | GT | HOP | prediction], uint8
    [H, 4W, 3]. GT shown binarised (> 200), prediction as round(255 p) without min-max stretch."""
    gt = binarize_gt(labels)
    return np.concatenate([frame, grey3(gt), hop, grey3(prob_to_bytes(prob))], axis=1)


def error_map(pred_fg: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3]: true positives white, true negatives black, false positives green,
    false negatives red, ignored pixels (85 / 170) dark grey. Shadow (50) counts as background."""
    out = np.zeros(labels.shape + (3,), np.uint8)
    pos, neg = is_foreground(labels), is_cdnet_background(labels)
    out[pred_fg & pos] = 255
    out[pred_fg & neg] = FP_COLOUR
    out[~pred_fg & pos] = FN_COLOUR
    out[np.isin(labels, IGNORED_LABELS)] = IGNORED_COLOUR
    return out


def overlay(frame: np.ndarray, pred_fg: np.ndarray, colour=(255, 0, 64), alpha: float = 0.5,
            bgr: bool = False) -> np.ndarray:
    """Foreground tinted over the RGB ``frame``, uint8 [H,W,3]: uint8((1 - alpha) x + alpha colour)
    in float32 where ``pred_fg``, the frame elsewhere; ``bgr``: returned in OpenCV's BGR order (what
    a video writer takes), with no second conversion of the whole frame. The tint of each of the
    256 levels is computed once per channel (a lookup table) and applied with OpenCV, which releases
    the GIL, and only inside the bounding box of ``pred_fg``: a 1920x1080 frame with a few objects
    costs a copy of the frame, not three passes over it."""
    import cv2

    colour = np.asarray(colour, np.float32)[::-1] if bgr else np.asarray(colour, np.float32)
    levels = np.arange(256, dtype=np.float32)[:, None]
    lut = ((1 - alpha) * levels + alpha * colour).astype(np.uint8)  # [256, 3]
    frame = np.ascontiguousarray(frame, np.uint8)
    out = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if bgr else frame.copy()
    mask = np.ascontiguousarray(pred_fg, np.uint8)
    x, y, w, h = cv2.boundingRect(mask)  # of the non-zero pixels; (0, 0, 0, 0) when there are none
    if w and h:
        box = out[y:y + h, x:x + w]  # a view: copyTo writes into out
        cv2.copyTo(cv2.LUT(box, lut[None]), mask[y:y + h, x:x + w], box)
    return out


def side_by_side(frame: np.ndarray, pred_fg: np.ndarray) -> np.ndarray:
    """[frame | mask | masked frame] uint8 [H,3W,3]: what a user sends to a colleague."""
    mask = grey3(np.where(pred_fg, 255, 0))
    masked = np.where(pred_fg[..., None], frame, 0).astype(np.uint8)
    return np.concatenate([frame, mask, masked], axis=1)
