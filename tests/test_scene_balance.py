"""Scene-balanced training draws (``TrainConfig.scene_balance``): each scene weighs
count ** (1 - balance) of the stream, whatever its number of labelled frames."""
import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.config import TrainConfig
from hofam_tf.data.dataset import build_dataset, scene_acceptance, scene_counts
from hofam_tf.data.schema import encode_example
from hofam_tf.errors import HOFAMInputError

COUNTS = {"small": 3, "large": 12}
BRIGHTNESS = {"small": 250, "large": 5}  # each scene's frames are flat at this grey level


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory):
    path = tmp_path_factory.mktemp("balance") / "two_scenes.tfrecord"
    labels = np.zeros((256, 256), np.uint8)
    labels[100:140, 90:120] = 255
    hop = np.full((256, 256, 3), 20, np.uint8)
    with tf.io.TFRecordWriter(str(path)) as w:
        for name, n in COUNTS.items():
            frame = np.full((256, 256, 3), BRIGHTNESS[name], np.uint8)
            for i in range(n):
                w.write(encode_example(frame, hop, labels, name, f"{i:06d}", (1, 5, 10)))
    return [str(path)]


def small_share(files, balance, batches=60, batch=32, seed=5):
    """Fraction of drawn training examples that come from the small scene."""
    ds = build_dataset(files, batch, training=True, seed=seed, scene_balance=balance)
    small = total = 0
    for inputs, *_ in ds.take(batches):
        means = tf.reduce_mean(tf.cast(inputs["frame"], tf.float32), axis=[1, 2, 3]).numpy()
        small += int((means > 128).sum())
        total += len(means)
    return small / total


def test_scenes_are_counted_by_their_sequence_key(two_scenes):
    assert scene_counts(two_scenes) == COUNTS


def test_acceptance_follows_the_power_rule():
    assert scene_acceptance(COUNTS, 0.0) == {"small": 1.0, "large": 1.0}
    assert scene_acceptance(COUNTS, 1.0) == {"small": 1.0, "large": 0.25}
    assert scene_acceptance(COUNTS, 0.5) == pytest.approx({"small": 1.0, "large": 0.5})


@pytest.mark.parametrize("balance", [0.0, 0.5, 1.0])
def test_each_scene_is_drawn_in_proportion_to_its_count_to_the_power_one_minus_balance(two_scenes, balance):
    weights = {k: n ** (1 - balance) for k, n in COUNTS.items()}
    expected = weights["small"] / sum(weights.values())  # 0.2, 1/3, 0.5
    share = small_share(two_scenes, balance)
    # 1,920 draws: the binomial standard deviation is at most 0.0115, so 0.04 is over 3 of them
    assert abs(share - expected) < 0.04, (balance, share, expected)


def test_the_balanced_stream_is_the_same_for_the_same_seed(two_scenes):
    first = [x[0]["frame"].numpy().mean(axis=(1, 2, 3)) for x in
             build_dataset(two_scenes, 8, training=True, seed=3, scene_balance=1.0).take(4)]
    again = [x[0]["frame"].numpy().mean(axis=(1, 2, 3)) for x in
             build_dataset(two_scenes, 8, training=True, seed=3, scene_balance=1.0).take(4)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_evaluation_is_never_thinned(two_scenes):
    ds = build_dataset(two_scenes, 4, training=False, scene_balance=1.0)
    assert sum(int(x[1].shape[0]) for x in ds) == sum(COUNTS.values())


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_a_balance_outside_zero_to_one_is_refused(value):
    with pytest.raises(HOFAMInputError, match="scene_balance"):
        TrainConfig(scene_balance=value)


def test_training_with_balanced_scenes_runs_and_records_the_setting(tmp_path, cdnet_records):
    from hofam_tf.config import LossConfig, ModelConfig, RunConfig
    from hofam_tf.tasks.train import run_train

    rec = cdnet_records["records"]
    assert scene_counts([str(p) for p in rec.glob("train-*.tfrecord")]) == {"baseline_highway": 51,
                                                                           "baseline_pedestrians": 51}
    cfg = RunConfig(model=ModelConfig(ngf=2), loss=LossConfig(),
                    train=TrainConfig(train_pattern=str(rec / "train-*.tfrecord"), steps=2, batch_size=2,
                                      ckpt_every=1, log_every=1, image_every=0, shuffle_buffer=20,
                                      scene_balance=1.0))
    result = run_train(cfg, tmp_path / "run", progress=False)
    assert result["steps"] == 2 and np.isfinite(result["last_loss"]["loss"])
    assert RunConfig.load(tmp_path / "run" / "config.json").train.scene_balance == 1.0
