"""Hierarchical optical flow of a video or frame folder, as images people can look at.

    python data_prep/flows.py --input VIDEO_OR_FOLDER --output_dir OUT [--taus 1,5,10]
        [--estimator dis|farneback] [--dis_preset balanced] [--save_flo]

Writes ``OUT/hop/<frame>.png`` (the HOP image: R = Op(tau3), G = Op(tau2), B = Op(tau1)),
``OUT/color_tau<k>/<frame>.png`` (Middlebury colour rendering of each flow) and, with
``--save_flo``, ``OUT/flo/<frame>_tau<k>.flo`` in the layout ``merge.py --estimator=flo`` reads.
The estimators, the encoding and the first-frame rule live in ``hofam_tf.data.flow``.
"""
from __future__ import annotations

from absl import flags

from hofam_tf.cli import run_tool
from hofam_tf.config_flags import config_from_flags, define_config_flags
from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.flow_images import write_flows

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("input", None, "Video file or folder of frames.")
    flags.DEFINE_string("output_dir", None, "Output folder.")
    define_config_flags(("flow",))  # --taus, --estimator, --dis_preset, --flow_scale, --hop_encoding, ...
    flags.DEFINE_bool("save_flo", False, "Also write Middlebury .flo files.")


def main(argv):
    del argv
    if not FLAGS.input or not FLAGS.output_dir:
        raise HOFAMInputError("--input and --output_dir are required")
    cfg = config_from_flags(names=("flow",)).flow
    n = write_flows(FLAGS.input, FLAGS.output_dir, cfg, FLAGS.save_flo)
    print(f"wrote HOP and flow images of {n} frames to {FLAGS.output_dir}")
    return 0


def run():
    run_tool(define_flags, main)


if __name__ == "__main__":
    run()
