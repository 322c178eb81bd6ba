"""``run_predict``: segment any video file or frame folder with any supported checkpoint, or with
one of the classical baselines of ``hofam_tf.tasks.baselines`` (same outputs, for comparison).

Streams: frames are decoded one at a time, HOP images are computed on the fly with the run's flow
configuration (``RunConfig.flow``: estimator and tau set; DIS and Farneback only; DIS at predict's
own preset, ``PredictOptions.flow_preset``), the model runs
in batches, and per-frame outputs are written as soon as they are ready, so memory does not grow
with the length of the video (beyond the first ``calibrate_frames`` frames, held until the
scene-adaptive threshold is chosen on them). Outputs under ``output_dir/<sequence>/``:

    masks/<frame id>.png     0/255 mask at the input's native resolution
                             (probabilities resized bilinearly, thresholded at the scene-adaptive
                             threshold, optionally extended by hysteresis, trimmed by the
                             median gate: ``PredictOptions``)
    overlay.mp4              foreground tinted over the frames (MPEG-4): a preview, at native
                             size up to ``PredictOptions.video_max_side`` pixels on the longer
                             side, scaled down beyond it (the masks are always native)
    panels/<frame id>.png    optional [frame | GT | HOP | prediction] at 256 (GT tile: 170 grey)
    summary.json             written last: frames, seconds, frames/s
The HOP is computed on the 256x256 tile grid; models of a larger input size get the frame and
HOP resized up to their size.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hofam_tf.tasks.stages import StageTimes

from hofam_tf.model.graph_options import graph_options
from hofam_tf.data.composite import UNKNOWN
from hofam_tf.data.sources import CapturePolicy
from hofam_tf.config import TILE
from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.adapt import MAX_ADAPT_STEPS
from hofam_tf.files import atomic_path, safe_name, write_json, write_png
from hofam_tf.locks import folder_lock


NAMINGS = ("frame", "cdnet")


def post_kernel(post: str) -> int:
    """"none" -> 0; "medianK" -> K (odd, 3..31). Raises HOFAMInputError otherwise."""
    if post == "none":
        return 0
    import re

    m = re.fullmatch(r"median(\d+)", post)
    if not m or int(m.group(1)) % 2 == 0 or not 3 <= int(m.group(1)) <= 31:
        raise HOFAMInputError(f"unknown post-filter {post!r}: 'none' or 'medianK' with K odd in 3..31 (median5)")
    return int(m.group(1))


def mask_name(frame, naming: str) -> str:
    """File name of a frame's mask. "cdnet": ``bin`` + the input name's frame number on six digits
    (CDnet's comparator naming; ``in000600.jpg`` -> ``bin000600.png``); frames of a video or
    stream, which have no name, count from 1 as CDnet's frames do."""
    if naming == "cdnet":
        number = int(frame.frame_id) + (1 if frame.from_stream else 0) if frame.frame_id.isdigit() else frame.index + 1
        return f"bin{number:06d}.png"
    return f"{frame.frame_id}.png"


def read_roi(path, shape) -> np.ndarray:
    """ROI mask (white = watch) as bool [H,W] at a frame's size (nearest neighbour)."""
    from hofam_tf.files import read_image

    roi = read_image(path, "L") > 127
    if roi.shape != tuple(shape):
        roi = cv2.resize(roi.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    if not roi.any():
        raise HOFAMInputError(f"{path}: the ROI mask is all black (white marks the region to watch)")
    return roi


# HOFAM's defaults for unseen scenes (leave-scenes-out benchmark, README "Cross-scene quality"):
# the scene-adaptive threshold, chosen on the first CALIBRATE_FRAMES frames, and the median gate of
# MEDIAN_GATE tile pixels. ``calibrate_frames=0`` and ``median_gate=0`` give the plain model at the
# run's validated threshold.
CALIBRATE_FRAMES = 200
MEDIAN_GATE = 1.5
# scene adaptation (``PredictOptions.adapt_steps``, off by default) learns from the first frames
ADAPT_FRAMES = 200
# below this best agreement (Dice) the calibration frames say nothing about the threshold: nothing
# moved in them, or the rule and the model see different things (the benchmark's lowest: 0.13)
MIN_AGREEMENT = 0.1
# The frames held for the scene-adaptive threshold are bounded in bytes whatever the resolution:
# a 768x576 frame costs 2.4 MB (the frame, its median-gate mask, the 256x256 tile, HOP and
# probability), so all 200 are held (0.45 GiB); 1920x1080 costs 8.9 MB (119 frames held); a
# 3840x2160 (4K) frame costs 33.8 MB, so 4K video calibrates on its first 31 frames (1 GiB).
# See ``calibration_frames``.
CALIBRATION_BYTES = 1 << 30
# How the median gate trims HOFAM's mask (``apply_gate``): "pixel" keeps the mask's pixels near the
# rule's changes, "fill" also the pixels those enclose, "components" keeps or drops each connected
# component of the mask whole, by the share of its pixels near the rule's changes (at least
# GATE_OVERLAP; a fixed constant, not tuned on any scene).
GATE_MODES = ("pixel", "fill", "components")
GATE_OVERLAP = 0.2
# Hysteresis (``PredictOptions.hysteresis``, off by default: ``hysteresis_mask``) and the scene-adaptive
# threshold's bound (``calibrate_range``): the largest odds factor either takes.
MAX_HYSTERESIS = 1e6
# The DIS preset predict computes the HOP with ("run": the run's own ``FlowConfig.dis_preset``; the
# reverse check and every other flow setting are always the run's). "balanced" costs 43 % of
# "medium" per flow, and the leave-scenes-out benchmark found unseen-scene F with it within 0.005 of
# the run's own "medium" for the same trained models, thresholds and post-processing
# (docs/performance.md, "A cheaper flow at predict time"). Flows from another estimator are not changed.
FLOW_PRESET = "balanced"


def calibration_frames(opts: "PredictOptions", shape) -> int:
    """How many frames of size ``shape`` (H, W, 3) are held for the scene-adaptive threshold and
    scene adaptation: at most the more of ``calibrate_frames`` and ``adapt_frames`` (of those that
    are on), ``max_frames`` when set, and ``calibration_bytes`` (at least one frame)."""
    n = max(opts.calibrate_frames, opts.adapt_frames if opts.adapt_steps else 0)
    n = min(n, opts.max_frames) if opts.max_frames else n
    h, w = shape[:2]
    per_frame = h * w * 3 + h * w + 2 * TILE * TILE * 3 + TILE * TILE * 4  # frame, gate, tile + HOP, probability
    return max(1, min(n, opts.calibration_bytes // per_frame)) if n else 0


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    threshold: float = 0.5
    batch_size: int = 8
    panels: bool = False
    overlay_video: bool = True
    default_fps: float = 25.0  # for frame folders, and videos that do not say
    workers: int = 2
    method: str = "hofam"  # or a classical baseline: mog2, knn, hop (hofam_tf.tasks.baselines)
    max_frames: int = 0  # stop after this many frames per sequence (0: all); live sources
    roi: str | None = None  # mask image, white = watch; None: the input's own ROI.bmp if any
    naming: str = "frame"  # "frame": masks/<frame id>.png; "cdnet": masks/binNNNNNN.png
    post: str = "none"  # "none" or "medianK": a KxK median filter of the binary mask (K odd)
    side_by_side: bool = False  # also side_by_side.mp4 = [frame | mask | masked frame]
    # the videos are previews: a frame whose longer side exceeds this many pixels is scaled down to
    # it (the frame with an area filter, the mask with nearest neighbour) before it is tinted and
    # encoded, which at 1920x1080 costs a quarter of the native size's MP4 encoding; 0: native size
    video_max_side: int = 960
    # scene-adaptive threshold (HOFAM only; 0: off, use ``threshold``): see ``scene_threshold``;
    # at most ``max_frames`` when that is set
    calibrate_frames: int = CALIBRATE_FRAMES
    # the scene-adaptive threshold's bound: its odds within this factor of ``threshold``'s either way
    # (0: any threshold of the grid; see ``scene_threshold``)
    calibrate_range: float = 0.0
    # median gate (HOFAM only; 0: off): see ``median_gate_kernel``
    median_gate: float = MEDIAN_GATE
    # how the gate trims the mask (GATE_MODES, see ``apply_gate``)
    gate_mode: str = "pixel"
    # hysteresis (HOFAM only; 0: off): the factor K by which a pixel's odds may fall below the
    # threshold's and still be foreground when connected to a pixel above it (``hysteresis_mask``)
    hysteresis: float = 0.0
    # scene adaptation (HOFAM only; 0: off): this many updates of the model on pseudo-labels of the
    # sequence's first ``adapt_frames`` frames before any mask is written (``hofam_tf.tasks.adapt``)
    adapt_steps: int = 0
    adapt_frames: int = ADAPT_FRAMES
    # the updates split into this many rounds, each on pseudo-labels made afresh by the model as the
    # previous round left it (self-training; 1: every label from the checkpoint's model)
    adapt_rounds: int = 1
    # the adaptation is undone (the checkpoint's weights segment the sequence) when the adapted model
    # marks less than this share of the pseudo-foreground it learned from, or there was none: it
    # learned to erase what it was taught to find (0: always kept)
    adapt_min_recall: float = 0.0
    # what runs the model (hofam_tf.tasks.runtimes): "tf", or "onnxruntime" on an export folder
    runtime: str = "tf"
    # the DIS preset of predict's HOP: "run" (the run's own) or one of DIS_PRESETS (see ``predict_flow``)
    flow_preset: str = FLOW_PRESET
    # live sources (hofam_tf.data.sources.CapturePolicy): attempts after a drop (0: end cleanly),
    # the first wait between them (doubling), and the open / read timeouts in seconds
    reconnect: int = CapturePolicy.reconnect
    reconnect_backoff: float = CapturePolicy.backoff
    open_timeout: float = CapturePolicy.open_timeout
    read_timeout: float = CapturePolicy.read_timeout
    # the most bytes of frames held for the scene-adaptive threshold (see ``calibration_frames``)
    calibration_bytes: int = CALIBRATION_BYTES

    def capture(self) -> CapturePolicy:
        """How predict reads its sources: unreadable frames are skipped, never fatal."""
        return CapturePolicy(open_timeout=self.open_timeout, read_timeout=self.read_timeout,
                             reconnect=self.reconnect, backoff=self.reconnect_backoff, skip_unreadable=True)

    def __post_init__(self) -> None:
        if self.max_frames < 0:
            raise HOFAMInputError(f"max_frames must be 0 (all) or more, got {self.max_frames}")
        if self.naming not in NAMINGS:
            raise HOFAMInputError(f"unknown naming {self.naming!r} {NAMINGS}")
        post_kernel(self.post)
        if self.batch_size < 1:
            raise HOFAMInputError(f"eval batch size must be at least 1, got {self.batch_size}")
        if self.video_max_side < 0:
            raise HOFAMInputError(f"video_max_side must be 0 (native size) or more pixels, got {self.video_max_side}")
        if not 0 <= self.adapt_steps <= MAX_ADAPT_STEPS:
            raise HOFAMInputError(f"adapt_steps must be 0 (off) to {MAX_ADAPT_STEPS} updates, got {self.adapt_steps}")
        if self.adapt_frames < 1:
            raise HOFAMInputError(f"adapt_frames must be 1 or more, got {self.adapt_frames}")
        if not 1 <= self.adapt_rounds <= max(self.adapt_steps, 1):
            raise HOFAMInputError(f"adapt_rounds must be 1 to adapt_steps ({self.adapt_steps}) rounds, "
                                  f"got {self.adapt_rounds}")
        if not 0.0 <= self.adapt_min_recall <= 1.0:
            raise HOFAMInputError(f"adapt_min_recall must be a share from 0 (off) to 1, got {self.adapt_min_recall}")
        if self.calibrate_frames < 0:
            raise HOFAMInputError(f"calibrate_frames must be 0 (off) or more, got {self.calibrate_frames}")
        if not 0.0 <= self.median_gate <= 32:
            raise HOFAMInputError(f"median_gate must be a radius of 0 (off) to 32 tile pixels, got {self.median_gate}")
        if self.gate_mode not in GATE_MODES:
            raise HOFAMInputError(f"unknown gate mode {self.gate_mode!r}; the modes are {', '.join(GATE_MODES)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise HOFAMInputError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.calibrate_range != 0 and not 1.0 <= self.calibrate_range <= MAX_HYSTERESIS:
            raise HOFAMInputError(f"calibrate_range must be 0 (no bound) or an odds factor of 1 to "
                                  f"{MAX_HYSTERESIS:g}, got {self.calibrate_range}")
        if self.hysteresis != 0 and not 1.0 <= self.hysteresis <= MAX_HYSTERESIS:
            raise HOFAMInputError(f"hysteresis must be 0 (off) or an odds factor of 1 to {MAX_HYSTERESIS:g}, "
                                  f"got {self.hysteresis}")
        from hofam_tf.data.flow import DIS_PRESETS

        if self.flow_preset != "run" and self.flow_preset not in DIS_PRESETS:
            raise HOFAMInputError(f"unknown flow preset {self.flow_preset!r}; the presets are run, "
                                  f"{', '.join(DIS_PRESETS)}")
        if self.calibration_bytes < 0:
            raise HOFAMInputError(f"calibration_bytes must be 0 or more, got {self.calibration_bytes}")
        from hofam_tf.tasks.runtimes import RUNTIMES

        if self.runtime not in RUNTIMES:
            raise HOFAMInputError(f"unknown runtime {self.runtime!r}; the runtimes are {', '.join(RUNTIMES)}")
        self.capture()  # checks the timeouts and the reconnect settings


class _VideoSink:
    """MP4 writer that only appears under its final name when closed successfully. ``fps`` is a
    number, or a callable asked when the first frame arrives."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.writer = None
        self._ctx = atomic_path(path)
        self.tmp = self._ctx.__enter__()

    def write(self, rgb: np.ndarray) -> None:
        self.write_bgr(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def write_bgr(self, bgr: np.ndarray) -> None:
        """A frame already in OpenCV's BGR order."""
        if self.writer is None:
            h, w = bgr.shape[:2]
            fps = self.fps() if callable(self.fps) else self.fps
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not self.writer.isOpened():
                raise HOFAMInputError(f"{self.path}: cannot open an MP4 writer")
        self.writer.write(bgr)

    def close(self, ok: bool) -> None:
        if self.writer is not None:
            self.writer.release()
        if ok and self.writer is not None:
            self._ctx.__exit__(None, None, None)
        else:
            try:
                self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            except RuntimeError:
                pass


# Masks are encoded and written by MASK_THREADS threads and the videos by one thread (frames in
# order) beside the main loop; each keeps at most QUEUE_DEPTH frames pending, so memory stays bounded
# whatever the video's length (PNG encoding and OpenCV's writers release the GIL).
MASK_THREADS = 2
QUEUE_DEPTH = 16


class _Outputs:
    """The mask and video writing of one sequence, off the main thread (see ``QUEUE_DEPTH``). A
    writer's error is raised at the next call or at ``finish``."""

    def __init__(self, stages: StageTimes, sinks: dict, video_max_side: int = 0):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.stages, self.sinks, self.video_max_side = stages, sinks, video_max_side
        self._masks = ThreadPoolExecutor(MASK_THREADS, thread_name_prefix="masks")
        self._video = ThreadPoolExecutor(1, thread_name_prefix="video")
        self._pending = {"masks": deque(), "video": deque()}

    def _timed(self, stage, fn, *args):
        t = time.perf_counter()
        fn(*args)
        self.stages.add(stage, time.perf_counter() - t)

    def _submit(self, stage: str, pool, fn, *args) -> None:
        pending = self._pending[stage]
        while len(pending) >= QUEUE_DEPTH:
            pending.popleft().result()
        pending.append(pool.submit(self._timed, stage, fn, *args))

    def png(self, path: Path, array: np.ndarray) -> None:
        self._submit("masks", self._masks, write_png, path, array)

    def frame(self, rgb: np.ndarray, fg: np.ndarray) -> None:
        if self.sinks:
            self._submit("video", self._video, self._write_video, rgb, fg)

    def _write_video(self, rgb, fg) -> None:
        from hofam_tf.tasks.viz import overlay, side_by_side

        rgb, fg = preview_size(rgb, fg, self.video_max_side)
        if "overlay" in self.sinks:
            self.sinks["overlay"].write_bgr(overlay(rgb, fg, bgr=True))
        if "side_by_side" in self.sinks:
            self.sinks["side_by_side"].write(side_by_side(rgb, fg))

    def finish(self, raise_errors: bool = True) -> None:
        """Waits for every pending write; raises the first error unless ``raise_errors`` is False."""
        error = None
        for pending in self._pending.values():
            while pending:
                try:
                    pending.popleft().result()
                except Exception as err:  # noqa: BLE001 - re-raised below, after the rest finished
                    error = error or err
        self._masks.shutdown()
        self._video.shutdown()
        if error is not None and raise_errors:
            raise error


def preview_size(rgb: np.ndarray, fg: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame and its boolean mask as a preview video shows them: unchanged when the longer
    side is at most ``max_side`` (or ``max_side`` is 0), else scaled so that it is ``max_side``,
    each side rounded to an even count of pixels (what MPEG-4 encoders take); the frame with an
    area filter, the mask with nearest neighbour (it stays a mask)."""
    h, w = fg.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb, fg
    scale = max_side / max(h, w)
    size = (max(2, 2 * round(w * scale / 2)), max(2, 2 * round(h * scale / 2)))
    small = cv2.resize(fg.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), small


def native_probability(prob: np.ndarray, shape) -> np.ndarray:
    """``prob`` (the model's output size) bilinearly resized to a frame of ``shape``. The streams
    keep the model-size map until a frame is written, so the frames held for the scene-adaptive
    threshold cost the frame and a 256x256 map each, not a native-size float map."""
    if prob.shape[:2] == tuple(shape[:2]):
        return prob
    return cv2.resize(prob, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def median_gate_kernel(radius: float, shape) -> np.ndarray | None:
    """Structuring element of the median gate (``PredictOptions.median_gate``), or None when off.

    With the gate on, a pixel of a HOFAM mask stays foreground only if it lies within ``radius``
    tile pixels of a pixel that the median-background rule (``baselines.MedianSegmenter``) marks
    as changed: the flow behind the HOP smears moving objects into halos (about the flow's
    smoothing radius, in tile pixels), and the rule, which compares each frame with the scene's
    recent past, has no halo. The radius is given on the 256x256 tile and scaled to the frame
    (frame side / 256), because the halos come from flows computed on the tile."""
    if not radius:
        return None
    r = int(round(radius * max(shape[:2]) / TILE))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def apply_gate(fg: np.ndarray, gate: np.ndarray, mode: str = "pixel") -> np.ndarray:
    """HOFAM's mask ``fg`` (bool [H,W]) trimmed by the median gate's mask ``gate`` (GATE_MODES).

    "pixel": the pixels of ``fg`` in ``gate``. The median rule marks the edges and texture of an
    object, not the inside of a plain surface (a shirt, a car roof), so this can leave an object
    hollow where the model's own mask was solid.
    "fill": also the pixels of ``fg`` that the trimmed mask encloses: interiors come back, and the
    halos around objects, which no trimmed pixel encloses, stay trimmed.
    "components": each 8-connected component of ``fg`` is kept whole when at least GATE_OVERLAP of
    its pixels lie in ``gate``, else dropped: no interior is ever cut, and blobs the rule sees
    nothing of (rippling water, a flow artefact) go; a halo attached to an object stays with it."""
    if mode == "components":
        n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
        if n <= 1:
            return fg.copy()
        size = np.bincount(labels.ravel(), minlength=n)
        near = np.bincount(labels[gate & fg], minlength=n)
        keep = near >= GATE_OVERLAP * size
        keep[0] = False
        return keep[labels]
    gated = fg & gate
    if mode != "fill" or not gated.any():
        return gated
    return fg & fill_holes(gated)


def low_threshold(threshold: float, hysteresis: float) -> float:
    """The probability whose odds are ``hysteresis`` times lower than ``threshold``'s (odds p/(1-p));
    ``threshold`` itself when hysteresis is off (0) or 1."""
    if hysteresis <= 1 or not 0.0 < threshold < 1.0:
        return threshold
    return threshold / (threshold + hysteresis * (1.0 - threshold))


def hysteresis_mask(prob: np.ndarray, threshold: float, hysteresis: float) -> np.ndarray:
    """Foreground of the probability map ``prob`` by hysteresis, as Canny's edges: the pixels at or
    above ``threshold`` seed objects, and each 8-connected region of pixels at or above
    ``low_threshold(threshold, hysteresis)`` that holds a seed is kept whole; a region with no seed
    is dropped. The threshold that suits one unseen scene does not suit another: a scene unlike
    the training scenes gets lower probabilities over its whole objects, and a high threshold keeps
    only their cores. Hysteresis extends a sure core to the object's extent without letting the
    weak blobs that have no sure pixel (a ripple, a shadow, flow noise) through. Plain thresholding
    when ``hysteresis`` is 0 or 1."""
    seeds = prob >= threshold
    low = low_threshold(threshold, hysteresis)
    if low == threshold or not seeds.any():
        return seeds
    n, labels = cv2.connectedComponents((prob >= low).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[labels[seeds]] = True
    keep[0] = False
    return keep[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool [H,W]) with every background region it encloses filled: the background
    4-connected to the border stays, the rest becomes foreground (scipy's ``binary_fill_holes``,
    by one flood fill: 7 ms at 1920x1080 against 100 ms)."""
    h, w = mask.shape
    outside = np.ones((h + 2, w + 2), np.uint8)  # a 1-pixel frame joins every border region
    outside[1:-1, 1:-1] = ~mask
    cv2.floodFill(outside, None, (0, 0), 0, flags=4)
    return mask | (outside[1:-1, 1:-1] > 0)


# The median gate computes the rule's decision only on blocks of GATE_BLOCK x GATE_BLOCK pixels near
# the mask it trims (``MedianGate.near``); the result there is exactly the whole frame's.
GATE_BLOCK = 64


class MedianGate:
    """The median gate of one frame (``median_gate_kernel``): the median rule's changed pixels
    (``baselines.median_changed`` of the frame's grey image against its ``earlier`` frames) dilated
    by ``kernel``. ``apply_gate`` reads the gate only at the pixels of the mask it trims, and a
    dilated pixel depends only on the changed pixels within the kernel's radius, so ``near(fg)``
    computes the rule only on the blocks within that radius of ``fg`` and the dilation only over
    their bounding box: exactly the whole frame's gate at every pixel of ``fg``, at a cost that
    follows the size of the foreground, not of the frame (the median of 9 frames is most of the
    gate's time at 1920x1080). ``full()`` computes the whole frame's gate once and lets the grey
    frames go (for masks held a long time, e.g. while the scene-adaptive threshold is chosen)."""

    def __init__(self, gray: np.ndarray, earlier: list, kernel: np.ndarray):
        self.gray, self.earlier, self.kernel = gray, earlier, kernel
        self.mask: np.ndarray | None = None

    def full(self) -> "MedianGate":
        from hofam_tf.tasks.baselines import median_changed

        if self.mask is None:
            changed = median_changed(self.gray, self.earlier).astype(np.uint8)
            self.mask = cv2.dilate(changed, self.kernel) > 0
            self.gray = self.earlier = None
        return self

    def near(self, fg: np.ndarray) -> np.ndarray:
        """bool [H,W]: the gate, exact at every pixel of ``fg`` (elsewhere possibly False)."""
        from hofam_tf.tasks.baselines import median_changed

        if self.mask is not None:
            return self.mask
        h, w = fg.shape
        out = np.zeros((h, w), bool)
        if not fg.any():
            return out
        r, b = self.kernel.shape[0] // 2, GATE_BLOCK
        nby, nbx = -(-h // b), -(-w // b)
        padded = np.zeros((nby * b, nbx * b), bool)
        padded[:h, :w] = fg
        blocks = padded.reshape(nby, b, nbx, b).any(axis=(1, 3)).astype(np.uint8)
        m = -(-r // b)  # blocks within the kernel's radius of a foreground block
        blocks = cv2.dilate(blocks, np.ones((2 * m + 1, 2 * m + 1), np.uint8)) > 0
        changed = np.zeros((h, w), np.uint8)
        for by in np.flatnonzero(blocks.any(axis=1)):
            row = np.concatenate([[False], blocks[by], [False]])
            starts, ends = np.flatnonzero(row[1:] & ~row[:-1]), np.flatnonzero(~row[1:] & row[:-1])
            ys = slice(by * b, min((by + 1) * b, h))
            for x0, x1 in zip(starts, ends):  # a run of needed blocks in this block row
                win = (ys, slice(x0 * b, min(x1 * b, w)))
                changed[win] = median_changed(self.gray[win], [e[win] for e in self.earlier])
        rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
        win = (slice(max(rows[0] - r, 0), min(rows[-1] + r + 1, h)), slice(max(cols[0] - r, 0), min(cols[-1] + r + 1, w)))
        out[win] = cv2.dilate(changed[win], self.kernel) > 0
        return out


def _gate_tap(frames, opts: PredictOptions, keep: dict, stages: StageTimes, held: bool):
    """Passes ``frames`` through, feeding each one (scored or not) to the median rule and storing
    the ``MedianGate`` of each scored frame in ``keep`` under its index; ``held``: the frames'
    results are held a long time (the scene-adaptive threshold), so each gate is computed whole at
    once (``MedianGate.full``) rather than kept as grey frames until its mask asks."""
    from hofam_tf.tasks.baselines import MedianSegmenter

    rule, kernel = MedianSegmenter(), None
    for fr in frames:
        with stages.timed("gate"):
            t = rule.observe(fr.rgb, fr.index)
            if fr.scored:
                if kernel is None:
                    kernel = median_gate_kernel(opts.median_gate, fr.rgb.shape)
                gate = MedianGate(rule.seen[t], rule.earlier(t), kernel)
                keep[fr.index] = gate.full() if held else gate
        yield fr


def predict_flow(flow, preset: str):
    """The flow settings predict computes the HOP with: the run's ``flow`` (a ``FlowConfig``) with
    its DIS preset replaced by ``preset`` (``PredictOptions.flow_preset``; "run" keeps it). Only the
    preset changes: the estimator, intervals, encoding and reverse check stay the run's, and flows
    of another estimator are left as they are."""
    if preset == "run" or flow.estimator != "dis":
        return flow
    return dataclasses.replace(flow, dis_preset=preset)


def fit_tiles(tiles: np.ndarray, size, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Tiles [N, 256, 256, ...] resized to a model's input ``size`` (H, W); as they are at 256x256."""
    if tuple(size) == (TILE, TILE):
        return tiles
    return np.stack([cv2.resize(t, (size[1], size[0]), interpolation=interpolation) for t in tiles])


def _hofam_stream(model, flow, seq, opts: PredictOptions, stages: StageTimes):
    """Yields ``(frame, frame_tile, hop, probability, gate)`` for every scored frame, running the
    model (a ``runtimes`` runner) in batches of ``opts.batch_size``: the probability at the model's size
    (``native_probability``), ``gate`` the frame's ``MedianGate``, or None. ``flow``: the
    flow settings of the HOP (``predict_flow``)."""
    from hofam_tf.data.flow import iter_hop

    if flow.estimator == "flo":
        raise HOFAMInputError("predict computes flows itself: the run's flow estimator must be dis or farneback")
    h_model, w_model = model.size
    batch: list = []

    def flush():
        frames = np.stack([item[1] for item in batch])
        hops = np.stack([item[2] for item in batch])
        backgrounds = np.stack([item[3] for item in batch]) if batch[0][3] is not None else None
        if (h_model, w_model) != (TILE, TILE):
            frames, hops = fit_tiles(frames, model.size), fit_tiles(hops, model.size)
            backgrounds = fit_tiles(backgrounds, model.size) if backgrounds is not None else None
        with stages.timed("model"):
            prob = model(frames, hops, backgrounds)
        done = [(fr, tile, hop, p, keep.pop(fr.index, None)) for (fr, tile, hop, _), p in zip(batch, prob)]
        batch.clear()
        return done

    keep: dict = {}
    frames = stages.timed_iter("decode", seq.iter_frames(lookback=flow.history, capture=opts.capture()))
    if opts.median_gate:
        frames = _gate_tap(frames, opts, keep, stages, held=bool(opts.calibrate_frames or opts.adapt_steps))
    for item in iter_hop(frames, flow, workers=opts.workers, stages=stages):
        batch.append(item)
        if len(batch) >= opts.batch_size:
            yield from flush()
    if batch:
        yield from flush()


def _adapt_to_scene(model, cfg, head: list, opts: PredictOptions) -> tuple[list, dict]:
    """Scene adaptation (``hofam_tf.tasks.adapt``) of the runner ``model`` on the first
    ``opts.adapt_frames`` held items of ``head`` at ``opts.threshold``, in ``opts.adapt_rounds``
    rounds (``adapt.round_steps``) whose pseudo-labels each come from the weights the previous round
    left; returns every held item with its probability from the adapted weights, and the record of
    summary.json's "adaptation". With ``opts.adapt_min_recall``, the adaptation is undone (the
    checkpoint's weights given back, the held items returned as they were) when the adapted model
    marks less than that share of the last round's pseudo-foreground, or there was none."""
    from hofam_tf.tasks.adapt import ADAPT_SEED, pseudo_labels, round_steps

    def probabilities(items: list) -> list:
        out = []
        for i in range(0, len(items), opts.batch_size):
            part = items[i:i + opts.batch_size]
            out += list(model(fit_tiles(np.stack([item[1] for item in part]), model.size),
                              fit_tiles(np.stack([item[2] for item in part]), model.size)))
        return out

    used = head[:opts.adapt_frames]
    tiles = np.stack([item[1] for item in used])
    hops = np.stack([item[2] for item in used])
    probs = [item[3] for item in used]
    held = model.model.get_weights() if opts.adapt_min_recall else None  # to undo it
    adapter = model.adapter(cfg.loss, cfg.model.balanced_head)  # traced on the run's first sequence only
    losses, shares = [], []
    for r, steps in enumerate(round_steps(opts.adapt_steps, opts.adapt_rounds)):
        if r:
            probs = probabilities(used)
        at_tile = np.stack([native_probability(p, (TILE, TILE)) for p in probs])  # at the tile, as the labels
        labels = pseudo_labels(tiles, [item[0].index for item in used], at_tile, opts.threshold)
        losses += adapter(fit_tiles(tiles, model.size), fit_tiles(hops, model.size),
                          fit_tiles(labels, model.size, cv2.INTER_NEAREST), steps, seed=ADAPT_SEED + r)
        labelled = labels != UNKNOWN
        shares.append(float((labels == 255).sum() / max(labelled.sum(), 1)))
    fresh = probabilities(used)  # the held frames it learned from first: they decide whether it stays
    taught = labels == 255
    adapted = np.stack([native_probability(p, (TILE, TILE)) for p in fresh]) >= opts.threshold
    recall = float(adapted[taught].mean()) if taught.any() else None
    undone = bool(opts.adapt_min_recall) and (recall is None or recall < opts.adapt_min_recall)
    if undone:  # the checkpoint's weights and probabilities; the rest of the held frames are not run again
        model.model.set_weights(held)
        again = head
    else:
        again = [(item[0], item[1], item[2], p, *item[4:])
                 for item, p in zip(head, fresh + probabilities(head[len(used):]))]
    record = {"steps": opts.adapt_steps, "rounds": opts.adapt_rounds, "frames": len(used),
              "foreground_share": shares[0], "foreground_share_per_round": shares,
              "labelled_share": float(labelled.mean()), "taught_recall": recall, "undone": undone,
              "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
    return again, record


def within_odds(threshold: float, reference: float, factor: float) -> bool:
    """Whether ``threshold``'s odds lie within ``factor`` times of ``reference``'s either way
    (always when ``factor`` is 0: no bound)."""
    if not factor:
        return True
    odds = lambda p: min(max(p, 1e-6), 1 - 1e-6) / (1 - min(max(p, 1e-6), 1 - 1e-6))  # noqa: E731
    ratio = odds(threshold) / odds(reference)
    return 1 / factor - 1e-9 <= ratio <= factor + 1e-9


def scene_threshold(items: list, roi: np.ndarray | None, fallback: float,
                    odds_range: float = 0.0) -> tuple[float, dict]:
    """The scene-adaptive threshold (``PredictOptions.calibrate_frames``), chosen without labels:
    ``items`` are the first scored frames of a sequence as ``(frame, tile, hop, probability, ...)``
    (the probability at any size: ``native_probability``); each frame is also segmented by the
    median-background rule (``baselines.MedianSegmenter``, on these frames alone), and the threshold of
    ``validation.THRESHOLDS`` whose masks agree best with the rule's (Dice over all the frames,
    inside ``roi``) is returned with the agreement per threshold. HOFAM's probabilities lean
    towards foreground by an amount that depends on the scene (object size under the
    class-in-scale loss, halos of the flow), so the threshold that fits one scene does not fit
    another; the rule knows nothing of motion or appearance but finds the frame's changed pixels,
    and where the model's masks match them best is where they neither swell into halos nor lose
    the objects. ``fallback`` when the best agreement is under ``MIN_AGREEMENT`` (e.g. a video that
    starts with an empty scene, where the rule's few noisy pixels would otherwise pick a threshold
    at random). ``odds_range`` (``PredictOptions.calibrate_range``): only thresholds whose odds lie
    within that factor of ``fallback``'s (the run's validated threshold) either way may be chosen,
    so a scene whose background the rule sees as changed (water, snow) cannot pull the threshold
    far from the validated one; 0: any threshold of the grid."""
    from hofam_tf.tasks.baselines import MedianSegmenter
    from hofam_tf.tasks.validation import THRESHOLDS

    rule = MedianSegmenter()
    both = np.zeros(len(THRESHOLDS))
    model_fg = np.zeros(len(THRESHOLDS))
    rule_fg = 0
    for fr, _, _, prob, *_ in items:
        prob = native_probability(prob, fr.rgb.shape)
        changed = rule(fr.rgb, None, fr.index) > 0
        inside = np.ones(changed.shape, bool) if roi is None else roi
        changed &= inside
        rule_fg += int(changed.sum())
        for i, t in enumerate(THRESHOLDS):
            fg = (prob >= t) & inside
            both[i] += int((fg & changed).sum())
            model_fg[i] += int(fg.sum())
    total = model_fg + rule_fg
    dice = np.divide(2 * both, total, out=np.zeros_like(both), where=total > 0)
    agreement = {str(t): round(float(d), 4) for t, d in zip(THRESHOLDS, dice)}
    allowed = np.array([within_odds(t, fallback, odds_range) for t in THRESHOLDS])
    if not allowed.any() or dice[allowed].max() < MIN_AGREEMENT:
        return fallback, agreement
    return float(THRESHOLDS[int(np.argmax(np.where(allowed, dice, -1.0)))]), agreement


def _classic_stream(method: str, seq, opts: PredictOptions, stages: StageTimes):
    """The same stream for a classical baseline (``hofam_tf.tasks.baselines``); its segmenter's
    time counts as "model"."""
    from hofam_tf.tasks.baselines import HOP_RULE_FLOW, make_segmenter
    from hofam_tf.data.flow import iter_hop, resize_frame

    segment = make_segmenter(method)
    flow = HOP_RULE_FLOW
    frames = stages.timed_iter("decode", seq.iter_frames(lookback=flow.history, capture=opts.capture()))
    if segment.needs_all_frames:
        blank = np.zeros((TILE, TILE, 3), np.uint8)
        for fr in frames:
            with stages.timed("model"):
                fg = segment(fr.rgb, None)
            if fr.scored:
                with stages.timed("resize"):
                    tile = resize_frame(fr.rgb)
                yield fr, tile, blank, fg, None
    else:
        for fr, tile, hop, _ in iter_hop(frames, flow, workers=opts.workers, stages=stages):
            with stages.timed("model"):
                fg = segment(fr.rgb, hop)
            yield fr, tile, hop, fg, None


class _StopOnCtrlC:
    """While installed (main thread only), a first Ctrl-C only asks the frame loop to stop after
    the frame in hand, so no frame is left half-written; a second one interrupts at once."""

    def __init__(self):
        import signal
        import threading

        self.requested, self._previous = False, None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def predict_sequence(model, cfg, seq, output_dir: Path, opts: PredictOptions, progress: bool = True) -> dict:
    """Segments one sequence with ``model`` (``opts.method`` "hofam") or a classical baseline
    (``model`` and ``cfg`` unused) and writes its outputs (module docstring). Ctrl-C ends the
    sequence cleanly: what was written stays complete and ``summary.json`` says ``interrupted``."""
    from hofam_tf.tasks.viz import test_panel

    out = output_dir / safe_name(seq.name, "sequence name")
    (out / "summary.json").unlink(missing_ok=True)
    stages = StageTimes({"flows": opts.workers, "masks": MASK_THREADS, "video": 1})
    flow = predict_flow(cfg.flow, opts.flow_preset) if opts.method == "hofam" else None
    stream = (_hofam_stream(model, flow, seq, opts, stages) if opts.method == "hofam"
              else _classic_stream(opts.method, seq, opts, stages))
    # a video, camera or stream is opened once only (many cameras take one client at a time): its
    # frame rate is read when the frame stream opens it, before the first frame reaches a writer
    fps = lambda: seq.fps if seq.fps and 1 <= seq.fps <= 240 else opts.default_fps  # noqa: E731
    sinks = {}
    if opts.overlay_video:
        sinks["overlay"] = _VideoSink(out / "overlay.mp4", fps)
    if opts.side_by_side:
        sinks["side_by_side"] = _VideoSink(out / "side_by_side.mp4", fps)
    roi_path = opts.roi or seq.roi_path
    roi, kernel = None, post_kernel(opts.post)
    hysteresis = opts.hysteresis if opts.method == "hofam" else 0.0
    t0, count, ok, interrupted = time.time(), 0, False, False
    total = seq.count_scored()
    if opts.max_frames:
        total = min(total, opts.max_frames) if total else opts.max_frames
    threshold, agreement, held, adaptation = opts.threshold, None, 0, None
    bar = tqdm(total=total, desc=seq.name, unit="frame", disable=not progress)
    outputs = _Outputs(stages, sinks, opts.video_max_side)
    stop = _StopOnCtrlC()
    try:
        if (opts.calibrate_frames or opts.adapt_steps) and opts.method == "hofam":  # the first frames are kept, then replayed
            import itertools

            first = next(stream, None)
            n = calibration_frames(opts, first[0].rgb.shape) if first is not None else 0
            head = ([first] if first is not None else []) + list(itertools.islice(stream, max(n - 1, 0)))
            held = len(head)
            if head and roi_path is not None:
                roi = read_roi(roi_path, head[0][0].rgb.shape[:2])
            if opts.adapt_steps and head:
                with stages.timed("adaptation"):
                    head, adaptation = _adapt_to_scene(model, cfg, head, opts)
            if opts.calibrate_frames:
                with stages.timed("calibration"):
                    threshold, agreement = scene_threshold(head[:opts.calibrate_frames], roi, opts.threshold,
                                                           opts.calibrate_range)
            stream = itertools.chain(head, stream)
        for fr, tile, hop, prob, gate in stream:
            with stages.timed("post"):
                native = native_probability(prob, fr.rgb.shape)
                fg = hysteresis_mask(native, threshold, hysteresis)
            if gate is not None:
                with stages.timed("gate"):
                    near = gate.near(fg)
            with stages.timed("post"):
                if gate is not None:
                    fg = apply_gate(fg, near, opts.gate_mode)
                if kernel:
                    fg = cv2.medianBlur(fg.astype(np.uint8) * 255, kernel) > 127
                if roi_path is not None:
                    if roi is None:
                        roi = read_roi(roi_path, fg.shape)
                    fg &= roi
            name = safe_name(mask_name(fr, opts.naming), f"frame name in {seq.path}")
            outputs.png(out / "masks" / name, np.where(fg, 255, 0).astype(np.uint8))
            outputs.frame(fr.rgb, fg)
            if opts.panels:
                p256 = cv2.resize(native, (TILE, TILE), interpolation=cv2.INTER_AREA)
                outputs.png(out / "panels" / name, test_panel(tile, np.full((TILE, TILE), UNKNOWN, np.uint8), hop, p256))
            count += 1
            bar.update(1)
            if progress and count % 25 == 0:  # live readout: the frame rate and the stage that bounds it
                bar.set_postfix(fps=f"{count / (time.time() - t0):.1f}", bound=stages.bound(), refresh=False)
            if stop.requested:  # Ctrl-C: the frame in hand is complete, stop here
                interrupted = True
                break
            if opts.max_frames and count >= opts.max_frames:
                break
        outputs.finish()  # every mask and video frame of the loop is written before the videos close
        ok = count > 0
    except KeyboardInterrupt:  # a second Ctrl-C, or one while waiting for the next frame
        outputs.finish()
        interrupted, ok = True, count > 0
    except BaseException:
        outputs.finish(raise_errors=False)
        raise
    finally:
        stop.restore()
        bar.close()
        for sink in sinks.values():
            sink.close(ok)
    seconds = time.time() - t0
    summary = {"sequence": seq.name, "source": seq.url or str(seq.path), "method": opts.method, "frames": count,
               "seconds": seconds, "frames_per_second": count / seconds if seconds else None,
               "interrupted": interrupted,
               "overlay_video": str(out / "overlay.mp4") if "overlay" in sinks and ok else None,
               "side_by_side_video": str(out / "side_by_side.mp4") if "side_by_side" in sinks and ok else None,
               "masks": str(out / "masks"), "threshold": threshold, "post": opts.post,
               "calibrate_frames": opts.calibrate_frames, "calibrate_range": opts.calibrate_range,
               "calibration_frames_held": held,
               "adaptation": adaptation,
               "agreement_by_threshold": agreement,
               "median_gate": opts.median_gate if opts.method == "hofam" else 0.0,
               "gate_mode": opts.gate_mode if opts.median_gate and opts.method == "hofam" else None,
               "hysteresis": hysteresis, "low_threshold": low_threshold(threshold, hysteresis),
               "runtime": opts.runtime if opts.method == "hofam" else None,
               "flow": _flow_record(flow) if flow is not None else None,
               "roi": str(roi_path) if roi_path is not None else None, "naming": opts.naming,
               "skipped_frames": sum(e["event"] == "skipped_frame" for e in seq.events),
               "reconnects": sum(e["event"] == "reconnect" for e in seq.events),
               "ended": next((e["reason"] for e in seq.events if e["event"] == "end"),
                             "interrupted" if interrupted else "end of input"),
               "events": seq.events,
               "stages": stages.summary(count, seconds)}
    write_json(out / "summary.json", summary)
    return summary


def _flow_record(flow) -> dict:
    """The flow settings a HOFAM run of predict computed its HOP with, for summary.json."""
    return {"estimator": flow.estimator, "dis_preset": flow.dis_preset if flow.estimator == "dis" else None,
            "reverse_check": flow.reverse_check, "taus": list(flow.taus)}


@graph_options()
def run_predict(input_path, ckpt, output_dir, opts: PredictOptions = PredictOptions(),
                model_overrides: dict | None = None, progress: bool = True, precision: str | None = None,
                loaded: tuple | None = None) -> dict:
    """Segments every sequence found at ``input_path`` (a video file or a frame folder) with the
    model in ``ckpt``, or with the classical baseline ``opts.method`` (then ``ckpt`` is unused).
    Each sequence goes to ``output_dir/<sequence>/``, except that an ``output_dir`` already named
    after the only sequence is used as it is. ``loaded``: the ``(runner, RunConfig)`` that
    ``runtimes.load_runner`` returned for ``ckpt``, used instead of loading it again (many calls on
    one checkpoint then load it and trace its inference and scene adaptation once)."""
    from contextlib import nullcontext

    from hofam_tf.tasks.adapt import check_adaptable, restored_weights
    from hofam_tf.tasks.baselines import METHODS
    from hofam_tf.data.sources import discover

    if opts.method not in METHODS:
        raise HOFAMInputError(f"unknown method {opts.method!r} {METHODS}")
    sequences = discover(input_path)
    model = cfg = None
    if opts.method == "hofam":
        from hofam_tf.tasks.runtimes import load_runner

        model, cfg = loaded or load_runner(ckpt, opts.runtime, model_overrides, precision)
        if opts.adapt_steps:
            check_adaptable(model, cfg)
    if opts.roi is not None and not Path(opts.roi).is_file():
        raise HOFAMInputError(f"{opts.roi}: ROI mask not found")
    import shutil

    root = Path(output_dir)
    if len(sequences) == 1 and root.name == sequences[0].name:
        root = root.parent  # --input=X.avi --output_dir=out/X writes out/X/masks, not out/X/X/masks
    root_created = not root.exists()
    results = []
    try:
        with folder_lock(root, "predict"):  # a second predict into the same folder is refused
            for seq in sequences:
                out = root / safe_name(seq.name, "sequence name")
                created = not out.exists()
                try:
                    with restored_weights(model.model) if opts.adapt_steps and model is not None else nullcontext():
                        results.append(predict_sequence(model, cfg, seq, root, opts, progress))
                except Exception:
                    if created:  # a sequence that failed leaves nothing that looks like a result
                        shutil.rmtree(out, ignore_errors=True)
                    raise
                if results[-1]["interrupted"]:
                    break  # Ctrl-C: the sequence in hand was closed cleanly; do not start the next one
    finally:
        if root_created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    return {"sequences": results, "output_dir": str(root)}
