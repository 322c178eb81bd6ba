"""Dataset folders -> composite PNGs ``OUT/<sequence>/<frame id>.png`` = [frame | HOP | GT].

    python data_prep/merge.py --dataset_dir DIR --output_dir OUT [--taus 1,5,10]
        [--estimator dis|farneback|flo] [--dis_preset balanced] [--flo_dir F] [--masks_dir M]

DIR may be a CDnet 2014 / SBI 2015 video folder or a tree of them, a LASIESTA sequence (``NAME``
beside ``NAME-GT``), a plain folder of frames (masks from ``--masks_dir``), or a video file.
Each sequence folder gets a ``sequence.json`` last: a folder without one is incomplete and
``data_prep/tfrecord.py`` refuses it.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from absl import flags
from tqdm import tqdm

from hofam_tf.cli import parse_ints, run_tool
from hofam_tf.composite import UNKNOWN, compose
from hofam_tf.config import DEFAULT_COMPOSITES_DIR, HOP_ENCODINGS, TILE, FlowConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import write_json, write_png
from hofam_tf.flow import encode_hop, iter_hop, read_flo, resize_flow, resize_labels
from hofam_tf.files import safe_name
from hofam_tf.sources import Sequence, discover, warn

SEQUENCE_META = "sequence.json"


def _hop_from_flo(seq: Sequence, cfg: FlowConfig, flo_dir: Path):
    """(frame, tile, hop) from precomputed .flo files in ``flo_dir/<sequence>/`` (or flo_dir)."""
    from hofam_tf.flow import resize_frame

    folder = flo_dir / seq.name if (flo_dir / seq.name).is_dir() else flo_dir
    for fr in seq.iter_frames(0):
        if not fr.scored:
            continue
        flows = {}
        for tau in cfg.taus:
            path = folder / cfg.flo_pattern.format(frame_id=fr.frame_id, tau=tau)
            flows[tau] = resize_flow(read_flo(path))
        yield fr, resize_frame(fr.rgb), encode_hop(flows, cfg)


def merge_sequence(seq: Sequence, output_dir: str | Path, cfg: FlowConfig, workers: int = 2,
                   flo_dir: str | Path | None = None, progress: bool = True) -> int:
    """Writes the composites of one sequence and its sequence.json into a hidden temporary folder
    that is renamed to ``output_dir/<sequence>`` only when complete (an earlier one is replaced);
    on any error it is removed. Returns the frame count."""
    final = Path(output_dir) / safe_name(seq.name, "sequence name")
    if not seq.labelled:
        warn(f"{seq.path}: no ground truth found; merged as unlabelled (GT tile 170 = unknown), which "
             "data_prep/tfrecord.py leaves out unless --include_unlabelled")
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
        stream = iter_hop(seq.iter_frames(lookback=max(cfg.taus)), cfg, workers=workers)
    frame_ids, native = [], None
    unknown = np.full((TILE, TILE), UNKNOWN, np.uint8)
    bar = tqdm(total=seq.count_scored(), desc=seq.name, unit="frame", disable=not progress,
               leave=False)

    def write(frame_id, tile, hop, labels):
        write_png(out / f"{frame_id}.png", compose(tile, hop, labels))

    # PNG encoding runs on writer threads (OpenCV releases the GIL); at most 2 x workers pending.
    with bar, ThreadPoolExecutor(max(1, workers)) as pool:  # the bar is cleared on errors too
        pending: deque = deque()
        for fr, tile, hop in stream:
            native = native or list(fr.rgb.shape[:2])
            labels = resize_labels(fr.labels) if fr.labels is not None else unknown
            pending.append(pool.submit(write, fr.frame_id, tile, hop, labels))
            frame_ids.append(fr.frame_id)
            while len(pending) > 2 * workers or (pending and pending[0].done()):
                pending.popleft().result()
                bar.update(1)
        while pending:
            pending.popleft().result()
            bar.update(1)
    if not frame_ids:
        raise HOFAMInputError(f"{seq.path}: no frame to write (empty sequence or temporal ROI)")
    write_json(out / SEQUENCE_META, {
        "name": seq.name, "kind": seq.kind, "source": str(seq.path), "labelled": seq.labelled,
        "native_size": native, "frames": frame_ids, "flow": dataclasses.asdict(cfg),
    })
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


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags of this tool; defined only when it runs as a program, so importing is side-effect free."""
    flags.DEFINE_string("dataset_dir", None, "Dataset folder, sequence folder or video file.")
    flags.DEFINE_string("output_dir", None, f"Where OUT/<sequence>/<frame id>.png go (default {DEFAULT_COMPOSITES_DIR}).")
    flags.DEFINE_string("masks_dir", None, "Masks folder parallel to a plain frames folder.")
    flags.DEFINE_string("taus", "1,5,10", "Frame intervals tau1<tau2<tau3 (R=tau3, G=tau2, B=tau1).")
    flags.DEFINE_enum("estimator", "dis", ["dis", "farneback", "flo"], "Optical flow estimator.")
    flags.DEFINE_enum("dis_preset", "balanced", ["balanced", "ultrafast", "fast", "medium"], "OpenCV DIS preset.")
    flags.DEFINE_float("flow_scale", 6.0, "Grey levels per pixel of displacement (256 grid).")
    flags.DEFINE_string("flow_gains", "1,1,3", "Per-channel multipliers R,G,B after rounding.")
    flags.DEFINE_enum("hop_encoding", FlowConfig().encoding, list(HOP_ENCODINGS), "How flow magnitude becomes HOP grey levels.")
    flags.DEFINE_string("flo_dir", None, "Precomputed .flo files (estimator=flo).")
    flags.DEFINE_string("flo_pattern", "{frame_id}_tau{tau}.flo", ".flo file name pattern.")
    flags.DEFINE_integer("workers", 2, "Flow threads.")


def main(argv):
    del argv
    if not FLAGS.dataset_dir:
        raise HOFAMInputError("--dataset_dir is required (a dataset folder, sequence folder or video)")
    output_dir = FLAGS.output_dir or DEFAULT_COMPOSITES_DIR
    if not FLAGS.output_dir:
        print(f"composites go to the default folder {output_dir}")
    cfg = FlowConfig(taus=parse_ints(FLAGS.taus, "taus"), estimator=FLAGS.estimator,
                     dis_preset=FLAGS.dis_preset, scale=FLAGS.flow_scale,
                     gains=parse_ints(FLAGS.flow_gains, "flow_gains"), flo_pattern=FLAGS.flo_pattern,
                     encoding=FLAGS.hop_encoding)
    done = merge_dataset(FLAGS.dataset_dir, output_dir, cfg, FLAGS.masks_dir, FLAGS.workers,
                         FLAGS.flo_dir)
    for name, n in done.items():
        print(f"{name}: {n} composites")
    print(f"wrote {sum(done.values())} composites to {output_dir}")
    return 0


def run():
    run_tool(define_flags, main)


if __name__ == "__main__":
    run()
