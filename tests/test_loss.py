import math

import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.config import LossConfig
from hofam_tf.model.losses import hofam_loss, size_factor

LN2 = math.log(2.0)


def _t(a):
    return tf.constant(np.asarray(a, np.float32)[None, ..., None])


def test_tf1_mode_hand_computed():
    # z = 0 everywhere -> p = 0.5; one foreground pixel out of four
    y = _t([[1, 0], [0, 0]])
    out = hofam_loss(tf.zeros_like(y), y, cfg=LossConfig(mode="tf1", ignore_labels=False, f_weight=0.0))
    # L1 = 0.5; focal = (0.75 + 3 * 0.25) / 4 * ln 2; total = 0.2 L1 + 0.8 focal
    assert float(out["l1"]) == pytest.approx(0.5)
    assert float(out["focal"]) == pytest.approx(0.375 * LN2, rel=1e-6)
    assert float(out["loss"]) == pytest.approx(0.1 + 0.8 * 0.375 * LN2, rel=1e-6)
    assert float(out["loss"]) == pytest.approx(0.307944, abs=1e-6)


def test_tf1_mode_clips_probabilities_like_keras2():
    y = _t([[1, 0]])
    z = _t([[40.0, 40.0]])  # p rounds to 1: the clip at 1 - 1e-7 bounds the background CE
    out = hofam_loss(z, y, cfg=LossConfig(mode="tf1"))
    # Keras 2 clipped in float32, where 1 - 1e-7 rounds to 1 - 2**-23 (as the TF1 graph did)
    top = float(np.float32(1 - 1e-7))
    ce_bg = -math.log(1 - top)
    ce_fg = -math.log(top)
    expected_focal = (0.75 * ce_fg + 0.25 * ce_bg) / 2
    assert float(out["focal"]) == pytest.approx(expected_focal, rel=1e-3)
    cis = hofam_loss(z, y, cfg=LossConfig(mode="cis"))
    assert float(cis["focal"]) > float(out["focal"])  # logits are not clipped in cis mode


def test_cis_mode_size_factor_hand_computed():
    y = np.zeros((4, 4), np.float32)
    y[0, 0] = y[3, 3] = 1  # two single-pixel instances
    yt = _t(y)
    z = tf.zeros_like(yt)
    # two instances: mean area 1 -> beta = min(50, 16 / 1) / 4 = 4, alpha_fg = 3
    original = LossConfig(f_weight=0.0)  # the paper's loss, without the soft F term
    out2 = hofam_loss(z, yt, target_num=tf.constant([2]), cfg=original)
    assert float(out2["focal"]) == pytest.approx((2 * 3.0 + 14 * 0.25) / 16 * LN2, rel=1e-6)
    assert float(out2["loss"]) == pytest.approx(0.429245, abs=1e-6)
    # counted as one instance of 2 pixels -> beta = 8 / 4 = 2, alpha_fg = 1.5
    out1 = hofam_loss(z, yt, target_num=tf.constant([1]), cfg=original)
    assert float(out1["loss"]) == pytest.approx(0.1 + 0.8 * (2 * 1.5 + 14 * 0.25) / 16 * LN2, rel=1e-6)
    # capped for tiny objects in a big image; beta ignores empty images
    big = np.zeros((1, 256, 256, 1), np.float32)
    big[0, 0, 0, 0] = 1
    assert float(size_factor(tf.constant(big), tf.constant([1]), LossConfig())[0]) == pytest.approx(12.5)
    half = np.zeros((1, 256, 256, 1), np.float32)
    half[0, :128, :128] = 1
    assert float(size_factor(tf.constant(half), tf.constant([1]), LossConfig())[0]) == pytest.approx(1.0)


def test_ignored_pixels_do_not_count():
    y = _t([[1, 0], [0, 0]])
    w = _t([[1, 1], [0, 0]])
    z = _t([[0.0, 0.0], [50.0, 50.0]])  # huge errors on the ignored pixels
    out = hofam_loss(z, y, w, cfg=LossConfig(mode="tf1"))
    assert float(out["l1"]) == pytest.approx(0.5)
    assert float(out["focal"]) == pytest.approx((0.75 + 0.25) / 2 * LN2, rel=1e-6)


def test_gradients_are_finite_at_extremes():
    z = tf.Variable(_t([[100.0, -100.0], [0.0, 3.0]]))
    y = _t([[0, 1], [1, 0]])
    for mode in ("cis", "tf1"):
        with tf.GradientTape() as tape:
            loss = hofam_loss(z, y, cfg=LossConfig(mode=mode, gamma=2.0))["loss"]
        assert np.isfinite(tape.gradient(loss, z).numpy()).all()


def test_soft_f_term_hand_computed_and_zero_weight_removes_it():
    rng = np.random.default_rng(3)
    y = (rng.random((2, 5, 6, 1)) > 0.7).astype(np.float32)
    z = rng.normal(size=y.shape).astype(np.float32)
    w = np.ones_like(y)
    w[0, 0] = 0.0  # an ignored row counts in neither sum
    p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    expected = (2 * (w * p * y).sum() + 1) / ((w * p).sum() + (w * y).sum() + 1)
    base = hofam_loss(tf.constant(z), tf.constant(y), tf.constant(w), cfg=LossConfig(f_weight=0.0))
    with_f = hofam_loss(tf.constant(z), tf.constant(y), tf.constant(w), cfg=LossConfig(f_weight=2.0))
    weight_one = hofam_loss(tf.constant(z), tf.constant(y), tf.constant(w), cfg=LossConfig(f_weight=1.0))
    assert LossConfig().f_weight == 0.0  # off by default: the paper's loss
    assert float(base["soft_f"]) == pytest.approx(expected, rel=1e-5)
    # the original's parts alone, without the F term
    assert float(base["loss"]) == pytest.approx(0.2 * float(base["l1"]) + 0.8 * float(base["focal"]), rel=1e-6)
    assert float(with_f["loss"]) == pytest.approx(float(base["loss"]) + 2.0 * (1 - expected), rel=1e-5)
    assert float(weight_one["loss"]) == pytest.approx(float(base["loss"]) + (1 - expected), rel=1e-5)
    # a perfect, confident prediction scores soft F ~ 1
    perfect = hofam_loss(tf.constant(np.where(y > 0, 30.0, -30.0).astype(np.float32)), tf.constant(y))
    assert float(perfect["soft_f"]) == pytest.approx(1.0, abs=1e-6)


def _ring_by_hand(y, r):
    """Background pixels with a foreground pixel within r in both axes (a (2r+1) square)."""
    near = np.zeros_like(y, bool)
    for i, j in zip(*np.nonzero(y)):
        near[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1] = True
    return near & (y == 0)


@pytest.mark.parametrize("r", [1, 2])
def test_ring_weighs_background_near_objects_like_the_object(r):
    rng = np.random.default_rng(r)
    y = np.zeros((9, 11), np.float32)
    y[2:4, 3:5] = 1
    y[7, 9] = 1
    z = rng.normal(size=y.shape).astype(np.float32)
    w = np.ones_like(y)
    w[0, :] = 0  # ignored pixels stay out, ring or not
    cfg = LossConfig(ring_px=r, f_weight=0.0)
    out = hofam_loss(_t(z), _t(y), _t(w), target_num=tf.constant([2]), cfg=cfg)
    beta = min(50.0, y.size / (y.sum() / 2)) / 4
    ce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    a = np.where(y == 1, 0.75 * beta, np.where(_ring_by_hand(y, r), 0.75 * beta, 0.25))
    assert float(out["focal"]) == pytest.approx(float((w * a * ce).sum() / w.sum()), rel=1e-5)
    off = hofam_loss(_t(z), _t(y), _t(w), target_num=tf.constant([2]), cfg=LossConfig(f_weight=0.0))
    plain = np.where(y == 1, 0.75 * beta, 0.25)
    assert float(off["focal"]) == pytest.approx(float((w * plain * ce).sum() / w.sum()), rel=1e-5)
    # the TF1 loss has no size factor and no ring
    tf1 = LossConfig(mode="tf1", ring_px=r, f_weight=0.0)
    assert float(hofam_loss(_t(z), _t(y), _t(w), cfg=tf1)["focal"]) == pytest.approx(
        float(hofam_loss(_t(z), _t(y), _t(w), cfg=LossConfig(mode="tf1", f_weight=0.0))["focal"]))


def test_ring_must_not_be_negative():
    with pytest.raises(Exception, match="ring_px"):
        LossConfig(ring_px=-1)
