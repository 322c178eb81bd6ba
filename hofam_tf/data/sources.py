"""Readers for the input datasets: CDnet 2014 / SBI 2015 folders, LASIESTA, plain frame folders
(with optional masks) and video files. Each yields frames in order with their label maps in the
CDnet scheme (see ``hofam_tf.data.composite``).

Label mappings (also in the README):
- CDnet / SBI: ground truth kept as is (0, 50, 85, 170, 255); pixels where ``ROI.bmp`` (read as
  grey, palette files included) is 0 become 85. Only frames inside ``temporalROI.txt`` are scored;
  a range that names missing frames (SBI IBMtest2 says ``0 90`` for frames 0-89) is clipped to the
  frames present. Earlier frames are still read where a HOP needs them as reference frames.
- LASIESTA: black -> 0; red, green, yellow (moving objects) -> 255; white (stopped object) -> 255;
  grey (uncertain) -> 170.
- Plain frame folders: a folder of images, with masks from ``masks_dir``; or a folder holding
  ``frames/`` and (optionally) ``masks/``. Masks match frames by file stem or frame number.
- Plain masks: kept as is if every value is in the CDnet scheme, otherwise > 127 -> 255, else 0.
- Sequences without masks (video files, frame folders without masks) are "unlabelled": their
  label map is 170 (unknown) everywhere, so training and scoring ignore them.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from hofam_tf.data.composite import CDNET_VALUES, MOVING, OUTSIDE_ROI, STATIC, UNKNOWN
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import IMAGE_SUFFIXES, list_images, read_image, read_image_raw
from hofam_tf.messages import warn

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")


@dataclasses.dataclass(frozen=True)
class CapturePolicy:
    """How cameras, streams and damaged files are read (``Sequence.iter_frames``).

    open_timeout: seconds to open a stream URL before it is an error (cameras fail at once);
    read_timeout: seconds without a frame before a stream counts as dropped;
    reconnect: attempts after a camera or stream drops (0: end cleanly where it dropped). The
    waits double from ``backoff`` up to ``max_backoff`` seconds; a successful reconnection resets
    them, and frames are numbered on without a gap. Ten attempts wait at most about 3.5 minutes:
    long enough for a camera or a network link to restart, short enough to notice one that is gone;
    skip_unreadable: a frame file that cannot be decoded (garbage, truncated) or a damaged packet
    of a video is skipped with a ``warning:`` line instead of being an error. The frames after it
    get consecutive positions (``Frame.index``), as if the bad frame were not there, so the flow
    and median history are not poisoned; ``max_bad_frames`` consecutive failures end a video.
    """

    open_timeout: float = 10.0
    read_timeout: float = 10.0
    reconnect: int = 10
    backoff: float = 0.5
    max_backoff: float = 30.0
    skip_unreadable: bool = False
    max_bad_frames: int = 25

    def __post_init__(self) -> None:
        if self.open_timeout <= 0 or self.read_timeout <= 0:
            raise HOFAMInputError(f"open and read timeouts must be positive seconds, got {self.open_timeout} "
                                  f"and {self.read_timeout}")
        if self.reconnect < 0:
            raise HOFAMInputError(f"reconnect must be 0 (off) or a number of attempts, got {self.reconnect}")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise HOFAMInputError(f"reconnect backoff must satisfy 0 <= backoff <= max_backoff, got "
                                  f"{self.backoff} and {self.max_backoff}")


STRICT = CapturePolicy()  # data preparation: a bad frame is an error, files are read to the end


@dataclasses.dataclass
class Frame:
    """One frame of a sequence. rgb uint8 [H,W,3] at native size; labels uint8 [H,W] or None."""

    index: int  # position in the sequence (0-based), used for the tau intervals
    frame_id: str  # name of the output files, e.g. "000600"
    rgb: np.ndarray
    labels: Optional[np.ndarray]
    scored: bool  # inside the temporal ROI: a composite is written for it
    from_stream: bool = False  # decoded from a video or stream: frame_id is the 0-based position


@dataclasses.dataclass
class Sequence:
    """A sequence found on disk. ``kind`` is cdnet | lasiesta | frames | video."""

    name: str
    kind: str
    path: Path
    labelled: bool
    frame_paths: list = dataclasses.field(default_factory=list)
    mask_paths: list = dataclasses.field(default_factory=list)  # parallel to frame_paths, None ok
    scored: list = dataclasses.field(default_factory=list)  # parallel: inside the temporal ROI
    roi_path: Optional[Path] = None
    url: Optional[str] = None  # kind "stream": a camera index ("0") or a URL OpenCV can open
    # what happened while reading (skipped frames, reconnections, why a stream ended), for summaries
    events: list = dataclasses.field(default_factory=list)
    # the frame rate a video, camera or stream announced when ``iter_frames`` opened it (None: unknown)
    fps: Optional[float] = None

    def iter_frames(self, lookback: int = 0, capture: CapturePolicy = STRICT) -> Iterator[Frame]:
        """Frames in order, starting ``lookback`` frames before the first scored one. ``capture``
        says how live sources and unreadable frames are handled; what happens is logged in
        ``events``."""
        if self.kind in ("video", "stream"):  # opened once: many cameras take one client at a time
            source, label = (self.path, None) if self.kind == "video" else \
                (int(self.url) if self.url.isdigit() else self.url, self.url)
            yield from _iter_video(source, label, capture, self.events,
                                   on_open=lambda cap: setattr(self, "fps", cap.get(cv2.CAP_PROP_FPS) or None))
            return
        first = next((i for i, s in enumerate(self.scored) if s), len(self.scored))
        last = max((i for i, s in enumerate(self.scored) if s), default=-1)
        roi = _read_roi(self.roi_path) if self.roi_path else None
        shape = None
        start = max(first - lookback, 0)
        skipped = 0
        for i in range(start, last + 1):
            path = self.frame_paths[i]
            try:
                rgb = read_image(path, "RGB")
            except HOFAMInputError as err:
                if not capture.skip_unreadable:
                    raise
                warn(f"{err}: frame skipped")
                self.events.append({"event": "skipped_frame", "frame": frame_id_of(path), "file": str(path)})
                skipped += 1
                continue
            if shape is None:
                shape = rgb.shape
            elif rgb.shape != shape:
                raise HOFAMInputError(
                    f"{path}: frame size {rgb.shape[1]}x{rgb.shape[0]} differs from the sequence's "
                    f"{shape[1]}x{shape[0]}"
                )
            labels = None
            if self.scored[i] and self.labelled:
                labels = self._labels(i, rgb.shape[:2], roi)
            yield Frame(i - skipped, frame_id_of(path), rgb, labels, self.scored[i])

    def iter_labels(self) -> Iterator[tuple[int, str, np.ndarray]]:
        """(index, frame id, labels) of every scored frame, reading only the masks (and ROI).
        For scoring; the frame/mask size check of ``iter_frames`` is not made."""
        roi = _read_roi(self.roi_path) if self.roi_path else None
        for i, scored in enumerate(self.scored):
            if scored:
                yield i, frame_id_of(self.frame_paths[i]), self._labels(i, None, roi)

    def count_scored(self) -> Optional[int]:
        if self.kind == "stream":
            return None
        if self.kind == "video":
            cap = cv2.VideoCapture(str(self.path))
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
            return n if n > 0 else None
        return sum(self.scored)

    def _labels(self, i: int, shape, roi) -> np.ndarray:
        mask_path = self.mask_paths[i]
        if mask_path is None:
            raise HOFAMInputError(f"{self.frame_paths[i]}: no ground-truth mask for this frame")
        if self.kind == "lasiesta":
            labels = lasiesta_to_labels(np.asarray(read_image_raw(mask_path).convert("RGB")))
        elif self.kind == "cdnet":
            labels = read_image(mask_path, "L").copy()
        else:
            labels = plain_mask_to_labels(read_image(mask_path, "L"))
        if shape is not None and labels.shape != tuple(shape):
            raise HOFAMInputError(
                f"{mask_path}: mask size {labels.shape[1]}x{labels.shape[0]} does not match frame "
                f"{self.frame_paths[i]} ({shape[1]}x{shape[0]})"
            )
        if roi is not None:
            if roi.shape != labels.shape:
                raise HOFAMInputError(
                    f"{self.roi_path}: ROI size {roi.shape[1]}x{roi.shape[0]} does not match the "
                    f"masks ({labels.shape[1]}x{labels.shape[0]})"
                )
            labels[roi == 0] = OUTSIDE_ROI
        return labels


def frame_number(path: Path) -> Optional[int]:
    """The last group of digits of a file stem ("in000600" -> 600, "I_SI_01-GT_12" -> 12)."""
    found = re.findall(r"\d+", Path(path).stem)
    return int(found[-1]) if found else None


def frame_id_of(path: Path) -> str:
    """Output name of a frame: CDnet's 'in000600' -> '000600'; otherwise the digits, else the stem."""
    found = re.findall(r"\d+", Path(path).stem)
    return found[-1] if found else Path(path).stem


def lasiesta_to_labels(rgb: np.ndarray) -> np.ndarray:
    """LASIESTA colour-coded GT uint8 [H,W,3] -> CDnet labels [H,W] (see module docstring)."""
    rgb = rgb.astype(np.int16)
    r, g = rgb[..., 0], rgb[..., 1]
    spread = rgb.max(-1) - rgb.min(-1)
    mean = rgb.mean(-1)
    labels = np.full(r.shape, STATIC, np.uint8)
    labels[(r > 127) | (g > 127)] = MOVING  # red, green, yellow objects, white stopped object
    labels[(spread < 40) & (mean > 64) & (mean < 192)] = UNKNOWN  # grey: uncertain
    return labels


def plain_mask_to_labels(gray: np.ndarray) -> np.ndarray:
    values = set(np.unique(gray).tolist())
    if values <= CDNET_VALUES:
        return gray.copy()
    return np.where(gray > 127, MOVING, STATIC).astype(np.uint8)


def _read_roi(path: Path) -> np.ndarray:
    # Palette ('P') files: convert to grey first; the raw palette indices are not the mask.
    return np.asarray(read_image_raw(path).convert("L"))


def _read_temporal_roi(path: Path) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in path.read_text().split()[:2])
    except (ValueError, OSError) as err:
        raise HOFAMInputError(f"{path}: expected two frame numbers 'first last' ({err})") from None
    return a, b


def _match_masks(frames: list[Path], mask_dir: Path) -> list[Optional[Path]]:
    masks = list_images(mask_dir) if mask_dir.is_dir() else []
    by_number = {frame_number(m): m for m in masks}
    by_stem = {m.stem: m for m in masks}
    out = []
    for f in frames:
        out.append(by_stem.get(f.stem) or by_number.get(frame_number(f)))
    return out


def _cdnet(path: Path, name: str) -> Sequence:
    frames = sorted(list_images(path / "input"), key=lambda p: (frame_number(p) or 0, p.name))
    if not frames:
        raise HOFAMInputError(f"{path / 'input'}: no frames")
    masks = _match_masks(frames, path / "groundtruth")
    troi = path / "temporalROI.txt"
    if troi.exists():
        a, b = _read_temporal_roi(troi)
        scored = [a <= (frame_number(f) or 0) <= b for f in frames]
    else:
        scored = [True] * len(frames)
    labelled = (path / "groundtruth").is_dir()
    if labelled:
        missing = [f.name for f, m, s in zip(frames, masks, scored) if s and m is None]
        if missing:
            raise HOFAMInputError(
                f"{path / 'groundtruth'}: no mask for {len(missing)} scored frame(s), e.g. {missing[:3]}"
            )
    roi = path / "ROI.bmp"
    return Sequence(name, "cdnet", path, labelled, frames, masks, scored, roi if roi.exists() else None)


def _frames(path: Path, name: str, masks_dir: Optional[Path], kind: str = "frames") -> Sequence:
    frames = sorted(list_images(path), key=lambda p: (frame_number(p) or 0, p.name))
    if not frames:
        raise HOFAMInputError(f"{path}: no image frames")
    if masks_dir is None:
        return Sequence(name, kind, path, False, frames, [None] * len(frames), [True] * len(frames))
    if not masks_dir.is_dir():
        raise HOFAMInputError(f"{masks_dir}: masks folder does not exist")
    masks = _match_masks(frames, masks_dir)
    missing = [f.name for f, m in zip(frames, masks) if m is None]
    if missing:
        raise HOFAMInputError(f"{masks_dir}: no mask for {len(missing)} frame(s), e.g. {missing[:3]}")
    return Sequence(name, kind, path, True, frames, masks, [True] * len(frames))


def open_capture(source, label: str | None, capture: CapturePolicy = STRICT) -> "cv2.VideoCapture":
    """Opens a video file, a camera (int index) or a stream URL (within ``capture.open_timeout``,
    reads then time out after ``capture.read_timeout``). Raises HOFAMInputError naming it."""
    if isinstance(source, str) and is_stream(source):
        ms = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(capture.open_timeout * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(capture.read_timeout * 1000)]
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, ms)
    else:
        cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        cap.release()
        if label:
            raise HOFAMInputError(f"{label}: cannot open the camera or stream (no such device, refused, or no "
                                  f"answer within {capture.open_timeout:g} s)")
        raise HOFAMInputError(f"{source}: cannot open video (not a video, or no decoder for it)")
    return cap


def _iter_video(path, label: str | None = None, capture: CapturePolicy = STRICT,
                events: list | None = None, on_open=None) -> Iterator[Frame]:
    """Decodes a video file, a camera (int index) or a stream URL frame by frame. A live source
    (``label`` given) that drops is reopened per ``capture.reconnect``; a file's undecodable
    packets are skipped when ``capture.skip_unreadable``. ``events`` receives what happened."""
    events = [] if events is None else events
    cap = open_capture(path, label, capture)
    if on_open is not None:
        on_open(cap)
    name = label or path
    announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not label else 0
    index = position = 0  # frames yielded (the history position); frames the source has produced
    pending: list[int] = []  # positions that failed since the last good frame (a damaged packet, or the end)
    skipped = 0
    try:
        while True:
            ok, bgr = cap.read()
            if ok:
                for p in pending:  # a good frame after them: they were damaged packets, skipped
                    warn(f"{name}: frame {p} could not be decoded (damaged packet): frame skipped")
                    events.append({"event": "skipped_frame", "frame": f"{p:06d}", "file": str(name)})
                skipped += len(pending)
                pending = []
                yield Frame(index, f"{position:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, True, True)
                index += 1
                position += 1
                continue
            if not label:  # a file: a damaged packet (a good frame follows), or the end
                if (capture.skip_unreadable and index > 0 and position < announced
                        and len(pending) < capture.max_bad_frames):
                    pending.append(position)
                    position += 1
                    continue
                break
            cap.release()
            if not capture.reconnect:
                events.append({"event": "end", "after_frame": index,
                               "reason": "the stream ended or dropped (reconnect off)"})
                break
            cap = _reconnect(path, label, capture, index, events)
            if cap is None:
                break
    finally:
        if cap is not None:
            cap.release()
    if index == 0:
        raise HOFAMInputError(f"{name}: no frame could be decoded")
    if not label and announced > 0 and index + skipped < announced:  # failures up to the end: truncated
        warn(f"{name}: decoded {index} of the {announced} frames its header announces (truncated or damaged file)")


def _reconnect(source, label: str, capture: CapturePolicy, index: int, events: list):
    """Reopens a dropped live source with doubling waits; the capture, or None after
    ``capture.reconnect`` failed attempts (logged in ``events``)."""
    import time

    t0, delay = time.monotonic(), capture.backoff
    for attempt in range(1, capture.reconnect + 1):
        warn(f"{label}: stream dropped after {index} frames; reconnecting in {delay:g} s "
             f"(attempt {attempt} of {capture.reconnect})")
        time.sleep(delay)
        try:
            cap = open_capture(source, label, capture)
        except HOFAMInputError:
            delay = min(max(2 * delay, 0.1), capture.max_backoff)
            continue
        events.append({"event": "reconnect", "after_frame": index, "attempts": attempt,
                       "gap_seconds": round(time.monotonic() - t0, 3)})
        return cap
    events.append({"event": "end", "after_frame": index,
                   "reason": f"the stream dropped and {capture.reconnect} reconnection attempts failed"})
    warn(f"{label}: gave up after {capture.reconnect} reconnection attempts; ending with the {index} frames read")
    return None


def discover(dataset_dir: str | Path, masks_dir: str | Path | None = None) -> list[Sequence]:
    """Finds every sequence under ``dataset_dir`` (a video file, a sequence folder, or nested
    category/video folders). Raises HOFAMInputError if nothing usable is found."""
    if is_stream(dataset_dir):
        return [Sequence(stream_name(str(dataset_dir)), "stream", Path(str(dataset_dir)), False, url=str(dataset_dir))]
    root = Path(dataset_dir)
    if not root.exists():
        raise HOFAMInputError(f"{root}: does not exist")
    masks = Path(masks_dir) if masks_dir else None
    found: list[Sequence] = []
    _discover(root, root, masks, found)
    if not found:
        raise HOFAMInputError(
            f"{root}: no sequences found (expected a video file, a folder of frames, a CDnet-style "
            "folder with input/ and groundtruth/, or folders of those)"
        )
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise HOFAMInputError(f"{root}: sequence names collide: {sorted(names)}")
    return found


STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def is_stream(source) -> bool:
    """A camera index ("0", "1", ...) or a stream URL (rtsp, rtmp, http(s), udp, tcp)."""
    text = str(source)
    return text.isdigit() or text.lower().startswith(STREAM_SCHEMES)


def stream_name(source: str) -> str:
    """Output folder name of a live source: ``camera0``, or the URL's last path part (else host)."""
    if source.isdigit():
        return f"camera{source}"
    rest = source.split("://", 1)[1].split("?", 1)[0].rstrip("/")
    part = rest.rsplit("/", 1)[-1] if "/" in rest else rest
    stem = part.rsplit(".", 1)[0] if "." in part and "/" in rest else part
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem).strip("._") or "stream"


def _name(root: Path, path: Path) -> str:
    rel = path.relative_to(root) if path != root else Path(path.stem if path.is_file() else path.name)
    parts = list(rel.parts)
    if path.is_file():
        parts[-1] = Path(parts[-1]).stem
    return "_".join(parts) or root.name


def _discover(root: Path, path: Path, masks: Optional[Path], found: list) -> None:
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(Sequence(_name(root, path), "video", path, False))
        return
    if (path / "input").is_dir():
        found.append(_cdnet(path, _name(root, path)))
        return
    if (path / "frames").is_dir():
        mask_folder = path / "masks"
        found.append(_frames(path / "frames", _name(root, path), mask_folder if mask_folder.is_dir() else None))
        return
    gt_sibling = path.parent / f"{path.name}-GT"
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())
    if has_images and gt_sibling.is_dir():
        found.append(_frames(path, _name(root, path), gt_sibling, kind="lasiesta"))
        return
    if has_images:
        found.append(_frames(path, _name(root, path), masks if path == root else None))
        return
    for child in sorted(path.iterdir()):
        if child.name.startswith(".") or (child.is_dir() and child.name.endswith("-GT")):
            continue
        _discover(root, child, masks, found)
