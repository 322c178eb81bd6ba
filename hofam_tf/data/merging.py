"""Dataset folders -> composite PNGs ``OUT/<sequence>/<frame id>.png`` = [frame | HOP | GT]
(| background reference, with ``FlowConfig.reference_stride``).

The library side of ``data_prep/merge.py``. A dataset folder may be a CDnet 2014 / SBI 2015 video
folder or a tree of them, a LASIESTA sequence, a plain folder of frames (masks from
``masks_dir``) or a video file (``hofam_tf.data.sources``). Each sequence folder gets its
``sequence.json`` (``hofam_tf.data.sequence_meta``) last, and the folder appears under its final name
only when complete.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hofam_tf.data.composite import UNKNOWN, compose
from hofam_tf.config import TILE, FlowConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import safe_name, write_png
from hofam_tf.data.flow import (background_difference, encode_hop, iter_gray_windows, iter_hop, pixel_median,
                                read_flo, resize_flow, resize_labels)
from hofam_tf.data.sequence_meta import SequenceMeta
from hofam_tf.data.sources import Sequence, discover
from hofam_tf.messages import warn


def _hop_from_flo(seq: Sequence, cfg: FlowConfig, flo_dir: Path):
    """(frame, tile, hop, reference) from precomputed .flo files in ``flo_dir/<sequence>/`` (or flo_dir)."""
    folder = flo_dir / seq.name if (flo_dir / seq.name).is_dir() else flo_dir
    # with the background setting, earlier frames are read too (its median), not their flow files
    for fr, tile, grays, tiles in iter_gray_windows(seq.iter_frames(lookback=cfg.history), cfg):
        flows = {}
        for tau in cfg.flow_taus:
            path = folder / cfg.flo_pattern.format(frame_id=fr.frame_id, tau=tau)
            flows[tau] = resize_flow(read_flo(path))
        background = background_difference(grays, fr.index, cfg) if cfg.background_stride else None
        yield fr, tile, encode_hop(flows, cfg, background), pixel_median(tiles) if tiles is not None else None


def merge_sequence(seq: Sequence, output_dir: str | Path, cfg: FlowConfig, workers: int = 2,
                   flo_dir: str | Path | None = None, progress: bool = True) -> int:
    """Writes the composites of one sequence and its sequence.json into a hidden temporary folder
    that is renamed to ``output_dir/<sequence>`` only when complete (an earlier one is replaced);
    on any error it is removed. Returns the frame count."""
    final = Path(output_dir) / safe_name(seq.name, "sequence name")
    if not seq.labelled:
        warn(f"{seq.path}: no ground truth found; merged as unlabelled (GT tile 170 = unknown), which "
             "the TFRecord writer leaves out unless --include_unlabelled")
    out = Path(output_dir) / f".tmp-{uuid.uuid4().hex[:8]}-{seq.name}"
    out.mkdir(parents=True)
    try:
        count = _write_sequence(seq, out, cfg, workers, flo_dir, progress)
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
        return count
    finally:
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)


def _write_sequence(seq: Sequence, out: Path, cfg: FlowConfig, workers: int, flo_dir, progress: bool) -> int:
    if cfg.estimator == "flo":
        if flo_dir is None:
            raise HOFAMInputError("--estimator=flo needs --flo_dir")
        stream = _hop_from_flo(seq, cfg, Path(flo_dir))
    else:
        stream = iter_hop(seq.iter_frames(lookback=cfg.history), cfg, workers=workers)
    frame_ids, native = [], None
    unknown = np.full((TILE, TILE), UNKNOWN, np.uint8)
    bar = tqdm(total=seq.count_scored(), desc=seq.name, unit="frame", disable=not progress,
               leave=False)

    def write(frame_id, tile, hop, labels, reference):
        write_png(out / f"{frame_id}.png", compose(tile, hop, labels, reference))

    # PNG encoding runs on writer threads (OpenCV releases the GIL); at most 2 x workers pending.
    with bar, ThreadPoolExecutor(max(1, workers)) as pool:  # the bar is cleared on errors too
        pending: deque = deque()
        for fr, tile, hop, reference in stream:
            native = native or list(fr.rgb.shape[:2])
            labels = resize_labels(fr.labels) if fr.labels is not None else unknown
            pending.append(pool.submit(write, fr.frame_id, tile, hop, labels, reference))
            frame_ids.append(fr.frame_id)
            while len(pending) > 2 * workers or (pending and pending[0].done()):
                pending.popleft().result()
                bar.update(1)
        while pending:
            pending.popleft().result()
            bar.update(1)
    if not frame_ids:
        raise HOFAMInputError(f"{seq.path}: no frame to write (empty sequence or temporal ROI)")
    SequenceMeta(name=seq.name, kind=seq.kind, source=str(seq.path), labelled=seq.labelled,
                 native_size=native, frames=frame_ids, flow=dataclasses.asdict(cfg)).save(out)
    return len(frame_ids)


def merge_dataset(dataset_dir, output_dir, cfg: FlowConfig, masks_dir=None, workers: int = 2,
                  flo_dir=None, progress: bool = True) -> dict[str, int]:
    """Every sequence under ``dataset_dir`` -> composites under ``output_dir``. {name: frames}."""
    sequences = discover(dataset_dir, masks_dir)
    created = not Path(output_dir).exists()
    done = {}
    try:
        for seq in tqdm(sequences, desc="sequences", unit="seq", disable=not progress or len(sequences) < 2):
            done[seq.name] = merge_sequence(seq, output_dir, cfg, workers, flo_dir, progress)
    finally:
        if created and Path(output_dir).is_dir() and not any(Path(output_dir).iterdir()):
            Path(output_dir).rmdir()  # nothing written: leave no empty folder behind
    return done
