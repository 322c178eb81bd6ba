"""The TFRecord schema: keys, dtypes, shard names. The only place that knows them.

Original keys (reference §3, written exactly as ``tfrecode.py`` did, so the original reader can
consume our files):
    img_raw     bytes  256*256*3 uint8, RGB frame
    img_flow    bytes  256*256*3 uint8, HOP image (R = tau3, G = tau2, B = tau1)
    img_gt      bytes  256*256*1 uint8, GT binarised: 255 where label > 200, else 0
    label       int64  always 0 (the original's class-folder index)
    target_num  int64  number of 8-connected foreground components of img_gt
Extras (self-describing; absent from the original's files, and the reader copes):
    height, width     int64    tile size (256, 256)
    sequence          bytes    sequence name
    frame_id          bytes    frame name, e.g. b"000600"
    taus              int64[3] frame intervals (tau1, tau2, tau3)
    gt_labels         bytes    256*256 uint8 full CDnet label map (0/50/85/170/255)
    labelled          int64    1 if the sequence has ground truth
    img_background    bytes    256*256*3 uint8, RGB background reference (only in records made with
                               ``FlowConfig.reference_stride``, for the background-reference variant)
"""
from __future__ import annotations

import cv2
import numpy as np

from hofam_tf.data.composite import binarize_gt
from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, TILE

KEY_FRAME = "img_raw"
KEY_HOP = "img_flow"
KEY_GT = "img_gt"
KEY_LABEL = "label"
KEY_TARGET_NUM = "target_num"
KEY_HEIGHT = "height"
KEY_WIDTH = "width"
KEY_SEQUENCE = "sequence"
KEY_FRAME_ID = "frame_id"
KEY_TAUS = "taus"
KEY_GT_LABELS = "gt_labels"
KEY_LABELLED = "labelled"
KEY_BACKGROUND = "img_background"
REQUIRED_KEYS = (KEY_FRAME, KEY_HOP, KEY_GT)  # the reader's defaults cover every other key

SHARD_SUFFIX = ".tfrecord"
GZIP_SUFFIX = ".tfrecord.gz"


def shard_name(split: str, index: int, count: int, gzip: bool = False) -> str:
    """``{split}-{i:05d}-of-{n:05d}.tfrecord`` (``.tfrecord.gz`` when GZIP-compressed)."""
    return f"{split}-{index:05d}-of-{count:05d}{GZIP_SUFFIX if gzip else SHARD_SUFFIX}"


SHARD_PATTERN = r"(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord(\.gz)?"
DATASET_INFO = "dataset.json"  # written last by data_prep/tfrecord.py: a shard set without it is incomplete


def parse_shard_name(name: str):
    """(split, index, count) of a file named by ``shard_name``, else None."""
    import re

    m = re.fullmatch(SHARD_PATTERN, name)
    return (m["split"], int(m["index"]), int(m["count"])) if m else None


def compression_of(path: str) -> str:
    """"GZIP" for ``*.gz`` files, else "" (uncompressed)."""
    return "GZIP" if str(path).endswith(".gz") else ""


def count_instances(gt_binary: np.ndarray) -> int:
    """8-connected foreground components of a binarised GT (the original's Target_num)."""
    n, _ = cv2.connectedComponents((gt_binary > 0).astype(np.uint8), connectivity=8)
    return int(n - 1)


def encode_example(frame: np.ndarray, hop: np.ndarray, labels: np.ndarray, sequence: str,
                   frame_id: str, taus, labelled: bool = True, background: np.ndarray | None = None) -> bytes:
    """Arrays of one composite -> serialized ``tf.train.Example``.

    frame, hop uint8 [256,256,3]; labels uint8 [256,256] in the CDnet scheme; background uint8
    [256,256,3] (the background reference) or None (no ``img_background`` key).
    """
    import tensorflow as tf

    gt = binarize_gt(labels)

    def b(v: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(*v: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))

    feature = {
        KEY_LABEL: i(0),
        KEY_TARGET_NUM: i(count_instances(gt)),
        KEY_FRAME: b(np.ascontiguousarray(frame, np.uint8).tobytes()),
        KEY_HOP: b(np.ascontiguousarray(hop, np.uint8).tobytes()),
        KEY_GT: b(gt.tobytes()),
        KEY_HEIGHT: i(frame.shape[0]),
        KEY_WIDTH: i(frame.shape[1]),
        KEY_SEQUENCE: b(sequence.encode()),
        KEY_FRAME_ID: b(frame_id.encode()),
        KEY_TAUS: i(*taus),
        KEY_GT_LABELS: b(np.ascontiguousarray(labels, np.uint8).tobytes()),
        KEY_LABELLED: i(1 if labelled else 0),
    }
    if background is not None:
        feature[KEY_BACKGROUND] = b(np.ascontiguousarray(background, np.uint8).tobytes())
    # deterministic: protobuf's map order otherwise changes between processes (same seed, same bytes)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def _features():
    import tensorflow as tf

    s = tf.io.FixedLenFeature([], tf.string, default_value="")
    return {
        KEY_FRAME: tf.io.FixedLenFeature([], tf.string),
        KEY_HOP: tf.io.FixedLenFeature([], tf.string),
        KEY_GT: tf.io.FixedLenFeature([], tf.string),
        KEY_LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        KEY_TARGET_NUM: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        KEY_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=TILE),
        KEY_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=TILE),
        KEY_SEQUENCE: s,
        KEY_FRAME_ID: s,
        KEY_TAUS: tf.io.FixedLenFeature([3], tf.int64, default_value=[0, 0, 0]),
        KEY_GT_LABELS: s,
        KEY_LABELLED: tf.io.FixedLenFeature([], tf.int64, default_value=1),
        KEY_BACKGROUND: s,
    }


def sequence_names(serialized):
    """A batch of serialized examples [B] -> their ``sequence`` names, string [B] ("" when a record
    has only the original keys); nothing else is decoded."""
    import tensorflow as tf

    return tf.io.parse_example(serialized, {KEY_SEQUENCE: _features()[KEY_SEQUENCE]})[KEY_SEQUENCE]


def decode_examples(serialized, background: bool = False) -> dict:
    """A batch of serialized examples [B] -> its arrays (inside tf.data or eagerly); nothing more.

    frame, hop: uint8 [B,256,256,3]; gt: uint8 [B,256,256,1] (binarised, 0/255); labels: uint8
    [B,256,256], the full label map (img_gt when a record has only the original keys);
    target_num: int64 [B] (-1 when absent); sequence, frame_id: string [B]; labelled: int64 [B];
    taus: int64 [B,3]; with ``background``, also background uint8 [B,256,256,3] (every record must
    then hold ``img_background``). Records with only the five original keys decode too. ``hofam_tf.data.dataset``
    turns these into model inputs, masks and loss weights.
    """
    import tensorflow as tf

    p = tf.io.parse_example(serialized, _features())
    frame = tf.reshape(tf.io.decode_raw(p[KEY_FRAME], tf.uint8), [-1, TILE, TILE, 3])
    hop = tf.reshape(tf.io.decode_raw(p[KEY_HOP], tf.uint8), [-1, TILE, TILE, 3])
    gt = tf.reshape(tf.io.decode_raw(p[KEY_GT], tf.uint8), [-1, TILE, TILE, 1])
    # full label map where present, else the binarised GT (same byte length, so one decode)
    source = tf.where(tf.strings.length(p[KEY_GT_LABELS]) > 0, p[KEY_GT_LABELS], p[KEY_GT])
    labels = tf.reshape(tf.io.decode_raw(source, tf.uint8), [-1, TILE, TILE])
    out = {
        FRAME_KEY: frame, HOP_KEY: hop, "gt": gt, "labels": labels,
        "target_num": p[KEY_TARGET_NUM], "sequence": p[KEY_SEQUENCE],
        "frame_id": p[KEY_FRAME_ID], "labelled": p[KEY_LABELLED], "taus": p[KEY_TAUS],
    }
    if background:
        out[BACKGROUND_KEY] = tf.reshape(tf.io.decode_raw(p[KEY_BACKGROUND], tf.uint8), [-1, TILE, TILE, 3])
    return out
