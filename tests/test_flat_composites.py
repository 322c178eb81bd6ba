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
from hofam_tf.tasks.evaluate import run_score
from hofam_tf.data.schema import KEY_FRAME, KEY_GT, KEY_HOP, KEY_LABEL, KEY_TARGET_NUM, count_instances
from hofam_tf.tasks.train import run_train

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


def _flipped_predictions(shared_data, pred_root, per_sequence: bool):
    """Masks made here from each GT tile (> 200), shifted by a few pixels and with a block of
    pixels flipped, written flat (the original's demo_result) or one folder per clip."""
    from hofam_tf.data.flat_composites import flat_sequences

    for meta in flat_sequences(_demo(shared_data)):
        for i, fid in enumerate(meta.frames):
            gt = np.asarray(Image.open(_demo(shared_data) / f"{fid}.png").convert("RGB"))[:, 512:, 0] > 200
            mask = np.roll(gt, 3 * (i % 3), axis=1)
            mask[100 + i:140 + i, 60:90] ^= True
            folder = pred_root / meta.name if per_sequence else pred_root
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(folder / f"{fid}.png")


def test_score_takes_flat_folders_as_they_are_under_the_originals_rule(tmp_path, shared_data):
    """Paper figures of a flat folder against an independent count: only GT bytes exactly 0 or
    255 count (the anti-aliased edges of clip 260-268 are ignored), pooled recall / precision /
    F, mean Dice over the images with any TP, FN or FP."""
    pred = tmp_path / "demo_result"
    _flipped_predictions(shared_data, pred, per_sequence=False)
    tp = fp = fn = 0
    dice, partial = [], 0
    for path in sorted(_demo(shared_data).glob("*.png")):
        labels = np.asarray(Image.open(path).convert("RGB"))[:, 512:, 0]
        partial += int(np.any((labels != 0) & (labels != 255)))
        mask = np.asarray(Image.open(pred / path.name)) >= 15
        t, f, n = (mask & (labels == 255)).sum(), (mask & (labels == 0)).sum(), (~mask & (labels == 255)).sum()
        tp, fp, fn = tp + t, fp + f, fn + n
        if t + f + n:
            dice.append(2 * t / (2 * t + f + n))
    assert partial >= 9  # clip 260-268: the rule matters on this data
    metrics = run_score(pred, _demo(shared_data), tmp_path / "score", threshold=15 / 255, progress=False)
    assert set(metrics["cdnet"]["per_sequence"]) == {"test_000155", "test_000260", "test_000285"}
    r, p = tp / (tp + fn), tp / (tp + fp)
    assert metrics["paper"]["counts"] == {"TP": tp, "FN": fn, "FP": fp,
                                          "TN": metrics["paper"]["counts"]["TN"]}
    assert metrics["paper"]["f_measure"] == pytest.approx(2 * r * p / (r + p), abs=1e-12)
    assert metrics["paper"]["dice"] == pytest.approx(np.mean(dice), abs=1e-12)
    counted = metrics["paper"]["counts"]
    assert sum(counted.values()) < 29 * 256 * 256  # the non-binary edge pixels were left out


def test_flat_and_sequence_layouts_of_the_same_files_score_identically(tmp_path, shared_data):
    """The same composites and predictions, flat (the original's folders) or one sequence folder
    per clip with sequence.json: identical metrics.json, paper and CDnet figures alike."""
    import json

    from hofam_tf.data.flat_composites import flat_sequences
    from hofam_tf.data.sequence_meta import SequenceMeta

    seq_gt = tmp_path / "gt_sequences"
    for meta in flat_sequences(_demo(shared_data)):
        (seq_gt / meta.name).mkdir(parents=True)
        for fid in meta.frames:
            shutil.copy(_demo(shared_data) / f"{fid}.png", seq_gt / meta.name / f"{fid}.png")
        SequenceMeta(name=meta.name, frames=list(meta.frames), kind="lasiesta").save(seq_gt / meta.name)
    _flipped_predictions(shared_data, tmp_path / "flat_pred", per_sequence=False)
    _flipped_predictions(shared_data, tmp_path / "seq_pred", per_sequence=True)
    for name, pred, gt in (("flat", tmp_path / "flat_pred", _demo(shared_data)),
                           ("seq", tmp_path / "seq_pred", seq_gt)):
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=score", f"--pred_dir={pred}",
                               f"--gt_dir={gt}", "--threshold=0.0588", f"--output_dir={tmp_path / name}"],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
    flat, seq = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("flat", "seq"))
    for m in (flat, seq):
        del m["pred_dir"], m["gt_dir"]
    assert flat == seq
    assert flat["images"] == 29 and flat["paper"]["images_counted"] == 29


@pytest.mark.slow
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
