"""The original's data as it is: a flat folder of 256x768 composites (the authors' demo_data)."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hofam_tf.config import ModelConfig, RunConfig, TrainConfig
from hofam_tf.evaluate import run_score
from hofam_tf.schema import KEY_FRAME, KEY_GT, KEY_HOP, KEY_LABEL, KEY_TARGET_NUM, count_instances
from hofam_tf.train import run_train

ROOT = Path(__file__).resolve().parents[1]


def _demo(shared_data):
    return shared_data / "hofam_demo"


def _tfrecord_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "data_prep" / "tfrecord.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def demo_records(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("demo_rec")
    proc = _tfrecord_cli(f"--input_dir={_demo(shared_data)}", f"--output_dir={out}",
                         "--test_sequences=test_000285")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_clips_are_inferred_from_consecutive_frame_numbers(demo_records):
    import json

    info = json.loads((demo_records / "dataset.json").read_text())
    assert info["splits"]["train"]["sequences"] == ["test_000155", "test_000260"]
    assert info["splits"]["train"]["examples"] == 19 and info["splits"]["test"]["examples"] == 10


def test_the_five_original_keys_round_trip_exactly(demo_records, shared_data):
    seen = 0
    for path in sorted(demo_records.glob("*.tfrecord")):
        for raw in tf.data.TFRecordDataset(str(path)):
            ex = tf.train.Example.FromString(raw.numpy()).features.feature
            fid = ex["frame_id"].bytes_list.value[0].decode()
            comp = np.asarray(Image.open(_demo(shared_data) / f"{fid}.png").convert("RGB"))
            frame = np.frombuffer(ex[KEY_FRAME].bytes_list.value[0], np.uint8).reshape(256, 256, 3)
            hop = np.frombuffer(ex[KEY_HOP].bytes_list.value[0], np.uint8).reshape(256, 256, 3)
            gt = np.frombuffer(ex[KEY_GT].bytes_list.value[0], np.uint8).reshape(256, 256)
            np.testing.assert_array_equal(frame, comp[:, :256])
            np.testing.assert_array_equal(hop, comp[:, 256:512])
            np.testing.assert_array_equal(gt, np.where(comp[:, 512:, 0] > 200, 255, 0))
            assert ex[KEY_LABEL].int64_list.value[0] == 0
            assert ex[KEY_TARGET_NUM].int64_list.value[0] == count_instances(gt)
            seen += 1
    assert seen == 29


def test_score_takes_flat_folders_as_they_are(tmp_path, shared_data):
    pred = tmp_path / "demo_result"
    pred.mkdir()
    files = sorted(_demo(shared_data).glob("*.png"))
    tp = fp = fn = 0
    for i, path in enumerate(files):
        gt = np.asarray(Image.open(path).convert("RGB"))[:, 512:, 0] > 200
        mask = np.roll(gt, 3 * (i % 3), axis=1)  # a prediction that is off by a few pixels
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(pred / path.name)
        tp, fp, fn = tp + (mask & gt).sum(), fp + (mask & ~gt).sum(), fn + (~mask & gt).sum()
    metrics = run_score(pred, _demo(shared_data), tmp_path / "score", progress=False)
    assert set(metrics["cdnet"]["per_sequence"]) == {"test_000155", "test_000260", "test_000285"}
    r, p = tp / (tp + fn), tp / (tp + fp)
    assert metrics["paper"]["f_measure"] == pytest.approx(2 * r * p / (r + p))


def test_training_on_records_with_only_the_original_keys(tmp_path, shared_data):
    """The original's own TFRecords carry five keys only; training reads them."""
    path = tmp_path / "orig.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for f in sorted(_demo(shared_data).glob("*.png"))[:6]:
            comp = np.asarray(Image.open(f).convert("RGB"))
            gt = np.where(comp[:, 512:, 0] > 200, 255, 0).astype(np.uint8)
            feat = {KEY_FRAME: comp[:, :256].tobytes(), KEY_HOP: comp[:, 256:512].tobytes(), KEY_GT: gt.tobytes()}
            ex = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) for k, v in feat.items()}
            ex[KEY_LABEL] = tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))
            ex[KEY_TARGET_NUM] = tf.train.Feature(int64_list=tf.train.Int64List(value=[count_instances(gt)]))
            w.write(tf.train.Example(features=tf.train.Features(feature=ex)).SerializeToString())
    cfg = RunConfig(model=ModelConfig(ngf=2), train=TrainConfig(train_pattern=str(path), steps=2, batch_size=2,
                                                                ckpt_every=2, log_every=1, image_every=0))
    result = run_train(cfg, tmp_path / "run", progress=False)
    assert result["steps"] == 2 and np.isfinite(result["last_loss"]["loss"])


@pytest.mark.parametrize("bad", ["single_tile", "not_png"])
def test_a_non_composite_in_the_folder_is_named(tmp_path, shared_data, bad):
    folder = tmp_path / "flat"
    shutil.copytree(_demo(shared_data), folder)
    target = folder / "test_000999.png"
    if bad == "single_tile":
        Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(target)
    else:
        target.write_bytes(b"not an image")
    proc = _tfrecord_cli(f"--input_dir={folder}", f"--output_dir={tmp_path / 'rec'}")
    assert proc.returncode == 2
    assert "test_000999.png" in proc.stderr and proc.stderr.strip().startswith("error:")
    assert not list(tmp_path.rglob("*.tfrecord"))
