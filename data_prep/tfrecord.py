"""Composite PNGs -> sharded TFRecords, split by whole sequences.

    python data_prep/tfrecord.py --input_dir OUT --output_dir REC [--test_sequences a,b |
        --test_fraction 0.2] [--seed 12138] [--examples_per_shard 256] [--gzip]

Writes ``REC/train-00000-of-0000N.tfrecord`` ..., ``REC/test-...`` and ``REC/dataset.json``
(splits, sequences, counts). Every shard is written under a hidden temporary name and renamed
when complete. A sequence goes to train or to test, never both (cross-scene evaluation).
Sequences without masks are left out unless ``--include_unlabelled``.
``--input_dir`` may also be a flat folder of the original's 256x768 composites (the authors'
``demo_data``): sequences are then inferred from runs of consecutive frame numbers
(``flat_sequences``). The work is ``hofam_tf.data.records.write_tfrecords``.
"""
from __future__ import annotations

from pathlib import Path

from absl import flags

from hofam_tf.cli import run_tool
from hofam_tf.config import DEFAULT_COMPOSITES_DIR, DEFAULT_RECORDS_DIR
from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.records import DEFAULT_TEST_FRACTION, write_tfrecords

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags of this tool; defined only when it runs as a program, so importing is side-effect free."""
    flags.DEFINE_string("input_dir", None, "Composites folder written by data_prep/merge.py, or a flat folder "
                        f"of the original's composites (default {DEFAULT_COMPOSITES_DIR}).")
    flags.DEFINE_string("output_dir", None, f"Where the shards and dataset.json go (default {DEFAULT_RECORDS_DIR}).")
    flags.DEFINE_list("test_sequences", [], "Sequences that form the test split.")
    flags.DEFINE_float("test_fraction", DEFAULT_TEST_FRACTION, "Fraction of sequences (seeded choice) for "
                       "test, used when --test_sequences is not given (0: everything in train).")
    flags.DEFINE_integer("seed", 12138, "Seed of the sequence split and of the example order.")
    flags.DEFINE_integer("examples_per_shard", 256, "Examples per shard.")
    flags.DEFINE_bool("gzip", False, "GZIP-compress the shards (.tfrecord.gz).")
    flags.DEFINE_bool("include_unlabelled", False, "Also write sequences without masks.")


def main(argv):
    del argv
    input_dir = FLAGS.input_dir or DEFAULT_COMPOSITES_DIR
    output_dir = FLAGS.output_dir or DEFAULT_RECORDS_DIR
    if not FLAGS.input_dir:
        if not Path(input_dir).is_dir():
            raise HOFAMInputError(f"{input_dir}: the default composites folder does not exist; make it with "
                                  "python data_prep/merge.py --dataset_dir=DATASET (or pass --input_dir)")
        print(f"reading composites from the default folder {input_dir}")
    if not FLAGS.output_dir:
        print(f"records go to the default folder {output_dir}")
    info = write_tfrecords(input_dir, output_dir, FLAGS.test_sequences,
                           FLAGS.test_fraction, FLAGS.seed, FLAGS.examples_per_shard, FLAGS.gzip,
                           FLAGS.include_unlabelled)
    for split, s in info["splits"].items():
        print(f"{split}: {s['examples']} examples from {len(s['sequences'])} sequences "
              f"in {len(s['shards'])} shard(s)")
    return 0


def run():
    run_tool(define_flags, main)


if __name__ == "__main__":
    run()
