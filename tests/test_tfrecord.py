import hashlib
import json

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from hofam_tf.data.records import split_sequences, write_tfrecords
from hofam_tf.data import schema
from hofam_tf.data.composite import binarize_gt, read_composite
from hofam_tf.data.dataset import build_dataset, check_tfrecords, list_tfrecords, read_examples
from hofam_tf.errors import HOFAMInputError


def test_round_trip_is_exact_and_split_by_sequence(cdnet_records):
    comp, rec, info = cdnet_records["composites"], cdnet_records["records"], cdnet_records["info"]
    assert info["splits"]["test"]["sequences"] == ["baseline_office"]
    assert info["splits"]["train"]["sequences"] == ["baseline_highway", "baseline_pedestrians"]
    assert info["splits"]["train"]["examples"] == 102 and len(info["splits"]["train"]["shards"]) == 3
    assert (rec / "train-00000-of-00003.tfrecord").exists()
    seen = {"train": set(), "test": set()}
    for split in ("train", "test"):
        for ex in read_examples(str(rec / f"{split}-*.tfrecord")):
            seq, fid = ex["sequence"].numpy().decode(), ex["frame_id"].numpy().decode()
            seen[split].add(seq)
            frame, hop, labels = read_composite(comp / seq / f"{fid}.png")
            np.testing.assert_array_equal(ex["frame"].numpy(), frame)
            np.testing.assert_array_equal(ex["hop"].numpy(), hop)
            np.testing.assert_array_equal(ex["labels"].numpy(), labels)
            np.testing.assert_array_equal(ex["mask"].numpy()[..., 0], (labels > 200).astype(np.float32))
            np.testing.assert_array_equal(ex["weight"].numpy()[..., 0], (~np.isin(labels, [85, 170])).astype(np.float32))
            # target_num against an independent 8-connected labelling
            _, n = ndimage.label(labels > 200, structure=np.ones((3, 3)))
            assert int(ex["target_num"]) == n
            assert list(ex["taus"].numpy()) == [1, 5, 10]
    assert seen["train"].isdisjoint(seen["test"])


def test_original_keys_are_exactly_the_originals_encoding(cdnet_records):
    rec = cdnet_records["records"]
    raw = next(iter(tf.data.TFRecordDataset(list_tfrecords(str(rec / "test-*")))))
    ex = tf.train.Example.FromString(raw.numpy()).features.feature
    assert len(ex["img_raw"].bytes_list.value[0]) == 196608
    assert len(ex["img_flow"].bytes_list.value[0]) == 196608
    gt = np.frombuffer(ex["img_gt"].bytes_list.value[0], np.uint8)
    assert gt.size == 65536 and set(np.unique(gt)) <= {0, 255}
    assert ex["label"].int64_list.value[0] == 0


def test_reader_accepts_records_with_only_the_original_keys(tmp_path, shared_data):
    frame, hop, labels = read_composite(shared_data / "hofam_demo" / "test_000260.png")
    gt = binarize_gt(labels)
    feats = {
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
        "target_num": tf.train.Feature(int64_list=tf.train.Int64List(value=[2])),
        "img_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frame.tobytes()])),
        "img_flow": tf.train.Feature(bytes_list=tf.train.BytesList(value=[hop.tobytes()])),
        "img_gt": tf.train.Feature(bytes_list=tf.train.BytesList(value=[gt.tobytes()])),
    }
    path = tmp_path / "CDnet_train_merge3OP.tfrecords"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    x, mask, weight, tnum = next(iter(build_dataset(str(path), batch_size=1, training=False,
                                                    with_target_num=True)))
    np.testing.assert_array_equal(x["frame"][0].numpy(), frame)
    np.testing.assert_array_equal(x["hop"][0].numpy(), hop)
    np.testing.assert_array_equal(mask[0, ..., 0].numpy(), gt / 255.0)
    assert weight.numpy().min() == 1.0 and int(tnum[0]) == 2


def test_deterministic_and_gzip(tmp_path, cdnet_records):
    comp = cdnet_records["composites"]
    digests = []
    for run in ("a", "b"):
        write_tfrecords(comp, tmp_path / run, test_fraction=0.34, seed=7, examples_per_shard=60, progress=False)
        digests.append({p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (tmp_path / run).glob("*.tfrecord")})
    assert digests[0] == digests[1]
    info = write_tfrecords(comp, tmp_path / "gz", test_fraction=0.34, seed=7, gzip=True, examples_per_shard=60,
                           progress=False)
    assert all(s.endswith(".tfrecord.gz") for s in info["splits"]["train"]["shards"])
    plain = [ex["frame_id"].numpy() for ex in read_examples(str(tmp_path / "a" / "train-*"))]
    gz = [ex["frame_id"].numpy() for ex in read_examples(str(tmp_path / "gz" / "train-*"))]
    assert plain == gz and len(plain) == info["splits"]["train"]["examples"]


def test_split_rules():
    names = [f"s{i}" for i in range(10)]
    a = split_sequences(names, test_fraction=0.3, seed=1)
    assert len(a["test"]) == 3 and set(a["test"]).isdisjoint(a["train"])
    assert a == split_sequences(list(reversed(names)), test_fraction=0.3, seed=1)
    with pytest.raises(HOFAMInputError, match="unknown sequences"):
        split_sequences(names, test_sequences=["nope"])


def test_truncated_tfrecord_names_the_file(tmp_path, cdnet_records):
    src = cdnet_records["records"] / "test-00000-of-00002.tfrecord"
    data = src.read_bytes()
    bad = tmp_path / "test-00000-of-00001.tfrecord"
    bad.write_bytes(data[: len(data) - 5000])
    with pytest.raises(HOFAMInputError, match="test-00000-of-00001.tfrecord: corrupt or truncated"):
        check_tfrecords([str(bad)])
    with pytest.raises(HOFAMInputError, match="matches no file"):
        list_tfrecords(str(tmp_path / "nothing-*.tfrecord"))


def test_incomplete_or_unlabelled_composites(tmp_path, cdnet_records):
    import shutil

    comp = tmp_path / "comp"
    shutil.copytree(cdnet_records["composites"] / "baseline_office", comp / "office")
    (comp / "office" / "sequence.json").unlink()
    with pytest.raises(HOFAMInputError, match="office: no sequence.json"):
        write_tfrecords(comp, tmp_path / "rec", progress=False)
    shutil.copytree(cdnet_records["composites"] / "baseline_office", comp / "office", dirs_exist_ok=True)
    meta = json.loads((comp / "office" / "sequence.json").read_text())
    meta["labelled"] = False
    (comp / "office" / "sequence.json").write_text(json.dumps(meta))
    with pytest.raises(HOFAMInputError, match="only unlabelled"):
        write_tfrecords(comp, tmp_path / "rec", progress=False)
    info = write_tfrecords(comp, tmp_path / "rec", include_unlabelled=True, progress=False)
    ex = next(iter(read_examples(str(tmp_path / "rec" / "train-*"))))
    assert int(ex["labelled"]) == 0 and info["splits"]["train"]["examples"] == 51


def test_shard_names():
    assert schema.shard_name("train", 3, 12) == "train-00003-of-00012.tfrecord"
    assert schema.shard_name("test", 0, 1, gzip=True) == "test-00000-of-00001.tfrecord.gz"
