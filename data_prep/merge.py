"""Dataset folders -> composite PNGs ``OUT/<sequence>/<frame id>.png`` = [frame | HOP | GT].

    python data_prep/merge.py --dataset_dir DIR --output_dir OUT [--taus 1,5,10]
        [--estimator dis|farneback|flo] [--dis_preset balanced] [--flo_dir F] [--masks_dir M]

DIR may be a CDnet 2014 / SBI 2015 video folder or a tree of them, a LASIESTA sequence (``NAME``
beside ``NAME-GT``), a plain folder of frames (masks from ``--masks_dir``), or a video file.
Each sequence folder gets a ``sequence.json`` last: a folder without one is incomplete and
``data_prep/tfrecord.py`` refuses it. The work is ``hofam_tf.data.merging.merge_dataset``; every
``FlowConfig`` field is a flag (``hofam_tf.config_flags``).
"""
from __future__ import annotations

from absl import flags

from hofam_tf.cli import run_tool
from hofam_tf.config import DEFAULT_COMPOSITES_DIR
from hofam_tf.config_flags import config_from_flags, define_config_flags
from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.merging import merge_dataset

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags of this tool; defined only when it runs as a program, so importing is side-effect free."""
    flags.DEFINE_string("dataset_dir", None, "Dataset folder, sequence folder or video file.")
    flags.DEFINE_string("output_dir", None, f"Where OUT/<sequence>/<frame id>.png go (default {DEFAULT_COMPOSITES_DIR}).")
    flags.DEFINE_string("masks_dir", None, "Masks folder parallel to a plain frames folder.")
    define_config_flags(("flow",))  # --taus, --estimator, --dis_preset, --flow_scale, --flow_gains, ...
    flags.DEFINE_string("flo_dir", None, "Precomputed .flo files (estimator=flo).")
    flags.DEFINE_integer("workers", 2, "Flow threads.")


def main(argv):
    del argv
    if not FLAGS.dataset_dir:
        raise HOFAMInputError("--dataset_dir is required (a dataset folder, sequence folder or video)")
    output_dir = FLAGS.output_dir or DEFAULT_COMPOSITES_DIR
    if not FLAGS.output_dir:
        print(f"composites go to the default folder {output_dir}")
    cfg = config_from_flags(names=("flow",)).flow
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
