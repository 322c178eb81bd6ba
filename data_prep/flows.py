"""Hierarchical optical flow of a video or frame folder, as images people can look at.

    python data_prep/flows.py --input VIDEO_OR_FOLDER --output_dir OUT [--taus 1,5,10]
        [--estimator dis|farneback] [--dis_preset balanced] [--save_flo]

Writes ``OUT/hop/<frame>.png`` (the HOP image: R = Op(tau3), G = Op(tau2), B = Op(tau1)),
``OUT/color_tau<k>/<frame>.png`` (Middlebury colour rendering of each flow) and, with
``--save_flo``, ``OUT/flo/<frame>_tau<k>.flo`` in the layout ``merge.py --estimator=flo`` reads.
The estimators, the encoding and the first-frame rule live in ``hofam_tf.flow``.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from absl import flags
from tqdm import tqdm

from hofam_tf.cli import parse_ints, run_tool
from hofam_tf.config import FlowConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import write_png
from hofam_tf.flow import encode_hop, flow_to_color, flows_from_grays, iter_gray_windows, write_flo
from hofam_tf.sources import discover


def write_flows(input_path, output_dir, cfg: FlowConfig, save_flo: bool = False, progress: bool = True) -> int:
    """Writes HOP images and flow colour images of the first sequence found at ``input_path``."""
    sequences = discover(input_path)
    if len(sequences) != 1:
        raise HOFAMInputError(f"{input_path}: expected one video or frame folder, found {len(sequences)} sequences")
    seq = sequences[0]
    out = Path(output_dir)
    count = 0
    frames = seq.iter_frames(lookback=max(cfg.taus))
    for fr, _, grays in tqdm(iter_gray_windows(frames, cfg), desc=seq.name, unit="frame", total=seq.count_scored(),
                             disable=not progress):
        flows = flows_from_grays(grays, fr.index, cfg)
        for tau, flow in flows.items():
            write_png(out / f"color_tau{tau}" / f"{fr.frame_id}.png", flow_to_color(flow))
            if save_flo:
                write_flo(out / "flo" / f"{fr.frame_id}_tau{tau}.flo", flow)
        write_png(out / "hop" / f"{fr.frame_id}.png", encode_hop(flows, cfg))
        count += 1
    return count


FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("input", None, "Video file or folder of frames.")
    flags.DEFINE_string("output_dir", None, "Output folder.")
    flags.DEFINE_string("taus", "1,5,10", "Frame intervals tau1<tau2<tau3.")
    flags.DEFINE_enum("estimator", "dis", ["dis", "farneback"], "Optical flow estimator.")
    flags.DEFINE_enum("dis_preset", "balanced", ["balanced", "ultrafast", "fast", "medium"], "OpenCV DIS preset.")
    flags.DEFINE_float("flow_scale", 6.0, "Grey levels per pixel of displacement (256 grid).")
    flags.DEFINE_bool("save_flo", False, "Also write Middlebury .flo files.")


def main(argv):
    del argv
    if not FLAGS.input or not FLAGS.output_dir:
        raise HOFAMInputError("--input and --output_dir are required")
    cfg = FlowConfig(taus=parse_ints(FLAGS.taus, "taus"), estimator=FLAGS.estimator,
                     dis_preset=FLAGS.dis_preset, scale=FLAGS.flow_scale)
    n = write_flows(FLAGS.input, FLAGS.output_dir, cfg, FLAGS.save_flo)
    print(f"wrote HOP and flow images of {n} frames to {FLAGS.output_dir}")
    return 0


def run():
    run_tool(define_flags, main)


if __name__ == "__main__":
    run()
