"""Hierarchical optical flow: estimators, the HOP encoding, Middlebury ``.flo`` files and colours.

Conventions (documented in the README, "Hierarchical optical flow"):
- Flows are computed on the 256x256 tile grid, after the frame is resized, so displacements are in
  tile pixels whatever the video's native size.
- For frame T and interval tau the flow goes from frame T to frame T-tau (backward flow), as the
  reference suggests for the original's SelFlow use; only its magnitude enters the HOP image.
- Frame indices are positions in the sorted sequence. For the first frames (T < tau) the reference
  frame is clamped to the first frame, max(T - tau, 0): frame 0 has an all-zero HOP, frame 1 has a
  real Op(tau1) and Op(tau2), Op(tau3) over the one interval available. Every frame gets a HOP.
- Encoding of one channel: ``clip(gain * round(scale * |F|), 0, 255)`` as uint8, with
  ``scale`` grey levels per pixel (default 6, so 42.5 px saturates) and per-channel ``gain``
  (default R 1, G 1, B 3 as in the authors' demo files). Channel order: R = Op(tau3), G = Op(tau2),
  B = Op(tau1); with ``FlowConfig.background_stride`` B is instead the difference from a median of
  earlier frames (``background_difference``).
- The background reference (``FlowConfig.reference_stride``, the opt-in third model input) is the
  per-pixel median RGB of earlier frames' tiles (``pixel_median``), clamped at the first frame
  like the intervals.
"""
from __future__ import annotations

import functools
import math
import threading
from pathlib import Path

import cv2
import numpy as np

from hofam_tf.config import TILE, FlowConfig
from hofam_tf.errors import HOFAMInputError

FLO_MAGIC = 202021.25
# name -> (OpenCV preset, finest scale override). "balanced" is OpenCV's ultrafast preset stopped
# at scale 1 (half resolution) instead of 2: on 256x256 tiles it measured 3x faster than "medium"
# with a lower sub-pixel endpoint error on a textured object (bench/ and tests/test_flow.py), but
# "medium" (the default) made HOP images that HOFAM generalised better from (README).
DIS_PRESETS = {
    "ultrafast": (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, None),
    "balanced": (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, 1),
    "fast": (cv2.DISOPTICAL_FLOW_PRESET_FAST, None),
    "medium": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, None),
}
_local = threading.local()


def resize_frame(rgb: np.ndarray, size: int = TILE) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [size,size,3]; area filter when shrinking, bilinear when enlarging."""
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def resize_labels(labels: np.ndarray, size: int = TILE) -> np.ndarray:
    """uint8 label map [H,W] -> [size,size] with nearest neighbour, so labels stay labels."""
    if labels.shape[:2] == (size, size):
        return labels
    return cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def estimate_flow(gray_t: np.ndarray, gray_ref: np.ndarray, cfg: FlowConfig) -> np.ndarray:
    """Flow from ``gray_t`` to ``gray_ref``: float32 [H,W,2] (dx, dy) in pixels, such that
    gray_t(x) ~ gray_ref(x + flow(x)). Thread-safe (one estimator per thread)."""
    if cfg.estimator == "dis":
        # one estimator per preset and image size: OpenCV's DIS lowers its patch size and scales for
        # good when it first meets a small image, which would change its later results on tiles
        key = f"dis_{cfg.dis_preset}_{gray_t.shape[0]}x{gray_t.shape[1]}"
        dis = getattr(_local, key, None)
        if dis is None:
            preset, finest = DIS_PRESETS[cfg.dis_preset]
            dis = cv2.DISOpticalFlow_create(preset)
            if finest is not None:
                dis.setFinestScale(finest)
            setattr(_local, key, dis)
        return dis.calc(gray_t, gray_ref, None)
    if cfg.estimator == "farneback":
        return cv2.calcOpticalFlowFarneback(gray_t, gray_ref, None, 0.5, 4, 15, 3, 5, 1.2, 0)
    raise HOFAMInputError("estimator 'flo' reads files; use read_flo / hop_from_flo_files")


LOG_SATURATION_PX = 64.0  # "log" encoding: displacement that maps to 255


def log_span(scale: float) -> float:
    """The "log" encoding's denominator: grey level 255 stands for log1p(scale * 64)."""
    return math.log1p(scale * LOG_SATURATION_PX)


def encode_magnitude(flow: np.ndarray, scale: float, gain: int, encoding: str = "linear") -> np.ndarray:
    """float32 [H,W,2] -> uint8 [H,W] motion map (``FlowConfig.encoding``): "linear" is
    clip(gain * round(scale * |flow|), 0, 255); "log" is
    clip(round(255 * log1p(scale * |flow|) / log1p(scale * 64)), 0, 255)."""
    mag = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
    if encoding == "log":
        quant = np.rint(255.0 * np.log1p(scale * mag) / log_span(scale))
        return np.clip(quant, 0, 255).astype(np.uint8)
    quant = np.rint(mag * scale)
    return np.clip(quant * gain, 0, 255).astype(np.uint8)


def encode_hop(flows_by_tau: dict[int, np.ndarray], cfg: FlowConfig,
               background: np.ndarray | None = None) -> np.ndarray:
    """Flows keyed by tau -> uint8 [H,W,3] HOP image, R = tau3, G = tau2, B = tau1; with
    ``cfg.background_stride`` channel B is ``background`` (``background_difference``) instead."""
    t1, t2, t3 = cfg.taus
    g_r, g_g, g_b = cfg.gains
    if cfg.background_stride:
        if background is None:
            raise ValueError("this flow configuration's channel B is the background difference: pass it")
        b = background
    else:
        b = encode_magnitude(flows_by_tau[t1], cfg.scale, g_b, cfg.encoding)
    return np.stack(
        [
            encode_magnitude(flows_by_tau[t3], cfg.scale, g_r, cfg.encoding),
            encode_magnitude(flows_by_tau[t2], cfg.scale, g_g, cfg.encoding),
            b,
        ],
        axis=-1,
    )


@functools.lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y coordinates of every pixel, float32 [h,w] each (read-only, shared)."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


def confirm_by_reverse(forward: np.ndarray, reverse: np.ndarray) -> np.ndarray:
    """``FlowConfig.reverse_check``: ``forward`` (frame T -> T-tau) rescaled so that its magnitude at
    x is min(|forward(x)|, |reverse(x + forward(x))|), ``reverse`` being the flow T-tau -> T
    (sampled bilinearly, edges replicated). Both float32 [H,W,2]."""
    gx, gy = _pixel_grid(*forward.shape[:2])
    back = cv2.remap(reverse, gx + forward[..., 0], gy + forward[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    mag = np.sqrt(forward[..., 0] ** 2 + forward[..., 1] ** 2)
    kept = np.minimum(mag, np.sqrt(back[..., 0] ** 2 + back[..., 1] ** 2))
    ratio = np.divide(kept, mag, out=np.zeros_like(mag), where=mag > 0)
    return (forward * ratio[..., None]).astype(np.float32)


CHANGE_WINDOW = 5  # FlowConfig.change_gate: side of the box the frame difference is averaged over


def change_weight(grays: dict[int, np.ndarray], t: int, taus, gate: float) -> np.ndarray:
    """``FlowConfig.change_gate``: float32 [H,W] in [0, 1], clip(r / gate - 1, 0, 1) where r is the
    largest over ``taus`` of the box-averaged |gray_t - gray_(t-tau)|."""
    now = grays[t].astype(np.float32)
    change = np.zeros_like(now)
    for tau in taus:
        diff = np.abs(now - grays[reference_index(t, tau)].astype(np.float32))
        change = np.maximum(change, cv2.blur(diff, (CHANGE_WINDOW, CHANGE_WINDOW)))
    return np.clip(change / gate - 1.0, 0.0, 1.0)


def reference_index(t: int, tau: int) -> int:
    """Index of the earlier frame paired with frame ``t`` for interval ``tau`` (clamped at 0)."""
    return max(t - tau, 0)


def background_indices(t: int, cfg: FlowConfig) -> list[int]:
    """``FlowConfig.background_stride``: the earlier frames whose median is frame ``t``'s
    background (clamped at 0); empty when the setting is off."""
    if not cfg.background_stride:
        return []
    return [reference_index(t, cfg.background_stride * k) for k in range(1, cfg.background_frames + 1)]


def reference_indices(t: int, cfg: FlowConfig, first: int = 0) -> list[int]:
    """``FlowConfig.reference_stride``: the earlier frames whose median RGB is frame ``t``'s
    background reference, ``first`` being the first frame read; empty when the setting is off.
    Frames before ``first`` clamp to it, or with ``cfg.reference_spread``, while ``t - first`` is
    shorter than the span, the frames spread evenly over ``first .. t - 1``."""
    if not cfg.reference_stride:
        return []
    n, span = cfg.background_frames, cfg.reference_stride * cfg.background_frames
    if cfg.reference_spread and t - first < span:
        return [t - -(-(t - first) * k // n) for k in range(1, n + 1)]  # t - ceil((t - first) k / n)
    return [max(t - cfg.reference_stride * k, first) for k in range(1, n + 1)]


# compare-exchange pairs of a sorting network that leaves the median of 9 values at position 4
_MEDIAN9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
            (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def pixel_median(images: list) -> np.ndarray:
    """Per-pixel median of equally shaped uint8 images (an odd number of them); for 9 images a
    sorting network of 19 element-wise min/max pairs (about 35 times faster than ``np.median`` at
    768x576), else ``np.median``."""
    if len(images) != 9:
        return np.median(np.stack(images), axis=0).astype(images[0].dtype)
    v = list(images)
    for i, j in _MEDIAN9:
        v[i], v[j] = np.minimum(v[i], v[j]), np.maximum(v[i], v[j])
    return v[4]


def background_difference(grays: dict[int, np.ndarray], t: int, cfg: FlowConfig) -> np.ndarray:
    """uint8 [H,W]: |gray_t - per-pixel median of the frames ``background_indices(t, cfg)``|."""
    median = pixel_median([grays[i] for i in background_indices(t, cfg)])  # an odd count: one frame's level
    return np.abs(grays[t].astype(np.float32) - median).astype(np.uint8)


def flows_from_grays(grays: dict[int, np.ndarray], t: int, cfg: FlowConfig,
                     taus: tuple[int, ...] | None = None) -> dict[int, np.ndarray]:
    """The flows {tau: float32 [H,W,2]} of frame index ``t`` for ``taus`` (default: all three)
    given grey frames by position; all-zero where the reference frame is ``t`` itself (frame 0).
    With ``cfg.reverse_check`` each is the forward flow with the magnitude the reverse flow
    confirms (``confirm_by_reverse``); with ``cfg.change_gate`` each is then weighted by
    ``change_weight``."""
    flows = {}
    for tau in cfg.taus if taus is None else taus:
        ref = reference_index(t, tau)
        if ref == t:
            flows[tau] = np.zeros(grays[t].shape + (2,), np.float32)
        else:
            flows[tau] = estimate_flow(grays[t], grays[ref], cfg)
            if cfg.reverse_check:
                flows[tau] = confirm_by_reverse(flows[tau], estimate_flow(grays[ref], grays[t], cfg))
    if cfg.change_gate > 0:
        weight = change_weight(grays, t, cfg.taus, cfg.change_gate)[..., None]
        flows = {tau: flow * weight for tau, flow in flows.items()}  # float32 stays float32
    return flows


def hop_from_grays(grays: dict[int, np.ndarray], t: int, cfg: FlowConfig) -> np.ndarray:
    """HOP image of frame index ``t`` given grey 256x256 frames indexed by position (those of
    ``iter_gray_windows``: the tau references, and the background's frames when it is on)."""
    background = background_difference(grays, t, cfg) if cfg.background_stride else None
    return encode_hop(flows_from_grays(grays, t, cfg, cfg.flow_taus), cfg, background)


# ----------------------------------------------------------------------------- .flo files
def read_flo(path: str | Path) -> np.ndarray:
    """Reads a Middlebury ``.flo`` file -> float32 [H,W,2]. Clear errors for bad files."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HOFAMInputError(f"{path}: flow file not found") from None
    if len(data) < 12:
        raise HOFAMInputError(f"{path}: truncated .flo header ({len(data)} bytes)")
    magic = np.frombuffer(data, "<f4", 1, 0)[0]
    if magic != np.float32(FLO_MAGIC):
        raise HOFAMInputError(f"{path}: not a Middlebury .flo file (magic {magic!r})")
    w, h = (int(v) for v in np.frombuffer(data, "<i4", 2, 4))
    if w <= 0 or h <= 0 or w > 100000 or h > 100000:
        raise HOFAMInputError(f"{path}: implausible .flo size {w}x{h}")
    need = 12 + w * h * 2 * 4
    if len(data) != need:
        raise HOFAMInputError(f"{path}: .flo of {w}x{h} needs {need} bytes, file has {len(data)}")
    flow = np.frombuffer(data, "<f4", w * h * 2, 12).reshape(h, w, 2).astype(np.float32)
    if not np.isfinite(flow).all():
        bad = int((~np.isfinite(flow)).any(-1).sum())
        raise HOFAMInputError(f"{path}: {bad} flow vectors are NaN or infinite")
    return flow


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Writes float32 [H,W,2] as a Middlebury ``.flo`` file (atomically)."""
    from hofam_tf.files import atomic_path

    flow = np.asarray(flow, np.float32)
    h, w = flow.shape[:2]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.array([FLO_MAGIC], "<f4").tofile(f)
            np.array([w, h], "<i4").tofile(f)
            flow.astype("<f4").tofile(f)


def resize_flow(flow: np.ndarray, size: int = TILE) -> np.ndarray:
    """Resizes a native-resolution flow field to the tile grid, scaling the vectors with it."""
    h, w = flow.shape[:2]
    if (h, w) == (size, size):
        return flow
    out = cv2.resize(flow, (size, size), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= size / w
    out[..., 1] *= size / h
    return out


# ----------------------------------------------------------------------------- colours
def _colour_wheel() -> np.ndarray:
    """The Middlebury colour wheel: 55 hues (RY 15, YG 6, GC 4, CB 11, BM 13, MR 6), RGB 0..255."""
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    rows = []
    for n, start, end in segments:
        t = np.arange(n, dtype=np.float64)[:, None] / n
        rows.append(np.array(start)[None] * (1 - t) + np.array(end)[None] * t)
    return np.concatenate(rows)


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """float [H,W,2] -> uint8 RGB [H,W,3] in the Middlebury convention: hue = direction,
    saturation = magnitude / max_magnitude (default: the field's largest), zero motion white."""
    wheel = _colour_wheel()
    ncols = len(wheel)
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    mag = np.sqrt(u * u + v * v)
    if max_magnitude is None:
        max_magnitude = float(mag.max()) if mag.size else 0.0
    rad = mag / max(max_magnitude, 1e-9)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] / 255 + f * wheel[k1] / 255
    r = np.minimum(rad, 1)[..., None]
    col = 1 - r * (1 - col)
    col[rad > 1] *= 0.75
    return np.clip(np.rint(col * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- streaming
def iter_gray_windows(frames, cfg: FlowConfig, stages=None):
    """For every scored ``hofam_tf.data.sources.Frame`` yields ``(frame, frame_tile, grays,
    reference_tiles)``: ``frame_tile`` uint8 [256,256,3] is the resized RGB frame and ``grays``
    holds exactly the grey tiles ``hop_from_grays(grays, frame.index, cfg)`` needs: the tau
    references and the background's frames. ``reference_tiles`` is the list of RGB tiles whose
    ``pixel_median`` is the frame's background reference (``cfg.reference_stride``), or None
    when that is off. Only the last ``cfg.history`` frames are kept, so memory does not grow
    with the sequence. A sequence read from a later start (lookback) uses its earliest frame read in
    place of frames before it. ``stages`` (``hofam_tf.tasks.stages.StageTimes``), when given,
    counts the resizing as "resize".
    """
    import time

    history = cfg.history
    window: dict[int, np.ndarray] = {}
    colour: dict[int, np.ndarray] = {}  # RGB tiles, kept only for the background reference
    for fr in frames:
        t = time.perf_counter()
        tile = resize_frame(fr.rgb)
        window[fr.index] = to_gray(tile)
        if cfg.reference_stride:
            colour[fr.index] = tile
        if stages is not None:
            stages.add("resize", time.perf_counter() - t)
        for old in [k for k in window if k < fr.index - history]:
            del window[old]
            colour.pop(old, None)
        if not fr.scored:
            continue
        first = min(window)
        needed = {fr.index: window[fr.index]}
        refs = [reference_index(fr.index, tau) for tau in cfg.taus] + background_indices(fr.index, cfg)
        for ref in refs:
            needed[ref] = window[max(ref, first)]
        reference = ([colour[i] for i in reference_indices(fr.index, cfg, first)]
                     if cfg.reference_stride else None)
        yield fr, tile, needed, reference


def iter_hop(frames, cfg: FlowConfig, workers: int = 2, max_pending: int = 16, stages=None):
    """Streams HOP images for a sequence of ``hofam_tf.data.sources.Frame`` objects, in order.

    Yields ``(frame, frame_tile, hop, reference)`` for every scored frame (see
    ``iter_gray_windows``), ``hop`` uint8 [256,256,3] and ``reference`` the background reference
    uint8 [256,256,3] (``pixel_median``), or None unless ``cfg.reference_stride``. Flows and
    medians run on ``workers`` threads (OpenCV and NumPy release the GIL), at most ``max_pending``
    frames ahead. ``stages`` (``hofam_tf.tasks.stages.StageTimes``), when given, counts their
    compute time on the workers as "flows".

    No flow is computed twice: frame T's HOP needs the flows between T and T - tau (and back) for
    its own three intervals, and no other scored frame needs a flow between that same pair of
    frames (frame T' needs pairs ending at T' != T), so there is nothing for a later frame to reuse.
    """
    import time
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    def inputs(grays, index, tiles):
        t = time.perf_counter()
        out = hop_from_grays(grays, index, cfg), (pixel_median(tiles) if tiles is not None else None)
        if stages is not None:
            stages.add("flows", time.perf_counter() - t)
        return out

    pending: deque = deque()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for fr, tile, grays, tiles in iter_gray_windows(frames, cfg, stages):
            pending.append((fr, tile, pool.submit(inputs, grays, fr.index, tiles)))
            while len(pending) >= max_pending:
                f0, t0, fut = pending.popleft()
                yield (f0, t0, *fut.result())
        while pending:
            f0, t0, fut = pending.popleft()
            yield (f0, t0, *fut.result())
