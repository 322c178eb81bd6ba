import dataclasses

import pytest
import keras
import numpy as np
import tensorflow as tf

from hofam_tf.model.checkpoints import load_for_inference
from hofam_tf.config import ModelConfig, RunConfig, TrainConfig
from hofam_tf.model.hofam import build_hofam
from hofam_tf.tasks.train import run_train
from hofam_tf.model.weight_average import WeightAverage


def _ramped(decay, t):
    return min(decay, (1 + t) / (10 + t))


def test_average_follows_the_ramped_decay_and_swaps_back():
    a = tf.Variable([1.0, 2.0])
    b = tf.Variable([[3.0]])
    avg = WeightAverage([a, b], decay=0.5)
    expected = [np.array([1.0, 2.0]), np.array([[3.0]])]
    rng = np.random.default_rng(0)
    for t in range(4):
        a.assign(rng.normal(size=2).astype(np.float32))
        b.assign(rng.normal(size=(1, 1)).astype(np.float32))
        avg.update()
        d = _ramped(0.5, t)
        expected = [d * e + (1 - d) * v.numpy() for e, v in zip(expected, (a, b))]
    raw = [a.numpy().copy(), b.numpy().copy()]
    with avg.swapped():
        np.testing.assert_allclose(a.numpy(), expected[0], rtol=1e-6)
        np.testing.assert_allclose(b.numpy(), expected[1], rtol=1e-6)
    np.testing.assert_array_equal(a.numpy(), raw[0])
    np.testing.assert_array_equal(b.numpy(), raw[1])


def _restore(cfg, prefix):
    """(model with the checkpoint's `model` weights, raw training weights of the checkpoint)."""
    model = build_hofam(cfg.model)
    avg = WeightAverage(model.trainable_variables, cfg.train.ema_decay)
    tf.train.Checkpoint(model=model, weight_average=avg).read(prefix).expect_partial()
    return model, [s.numpy() for s in avg.shadows]


@pytest.mark.slow
def test_training_with_an_average_resumes_exactly_and_infers_with_the_average(tmp_path, cdnet_records):
    """Stopped after every update and resumed: the raw weights stored at each step, averaged by
    hand from the seeded initial weights, give the checkpoint's and model.keras's weights."""
    decay = 0.6
    cfg = RunConfig(model=ModelConfig(ngf=2), train=TrainConfig(
        train_pattern=str(cdnet_records["records"] / "train-*.tfrecord"), steps=3, batch_size=2,
        ckpt_every=1, log_every=1, image_every=0, shuffle_buffer=20, keep_ckpts=10, ema_decay=decay))
    run = tmp_path / "run"
    keras.utils.set_random_seed(cfg.train.seed)
    expected = [v.numpy() for v in build_hofam(cfg.model).trainable_variables]
    for step in range(1, 4):
        run_train(cfg, run, progress=False, stop_after=1)
        averaged_model, raw = _restore(cfg, str(run / "ckpt" / f"ckpt-{step}"))
        d = _ramped(decay, step - 1)
        expected = [d * e + (1 - d) * r for e, r in zip(expected, raw)]
        got = [v.numpy() for v in averaged_model.trainable_variables]
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        assert any(not np.allclose(g, r) for g, r in zip(got, raw))  # the average is not the raw weights
    model, _ = load_for_inference(run / "model.keras")
    for e, v in zip(expected, model.trainable_variables):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)
    with_val = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, val_pattern=str(cdnet_records["records"] / "test-*.tfrecord"), val_every=1, steps=1))
    run_train(with_val, tmp_path / "val", progress=False)
    best, _ = load_for_inference(tmp_path / "val")
    final, raw = _restore(with_val, str(tmp_path / "val" / "ckpt" / "ckpt-1"))
    for a, b in zip(best.trainable_variables, final.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy())  # validated and saved: the average
