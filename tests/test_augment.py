import dataclasses

import cv2
import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.data.augment import augment_batch, crop_boxes, geometry, motion_noise, scale_motion
from hofam_tf.config import AugmentConfig, FlowConfig, LossConfig, RunConfig
from hofam_tf.data.dataset import build_dataset
from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.flow import LOG_SATURATION_PX, encode_hop
from hofam_tf.model.losses import size_factor

OFF = AugmentConfig(min_crop=1.0, max_crop=1.0, flip=0.0, brightness=0.0, contrast=0.0, colour=0.0, grey=0.0,
                    noise=0.0, blur=0.0, hop_gain=1.0, frame_drop=0.0, hop_noise=0.0, hop_spread=0)


def _log_hop_px(hop, flow=FlowConfig()):
    """Grey levels of the default "log" HOP -> tile pixels of motion (the encoder's inverse)."""
    return np.expm1(hop * np.log1p(flow.scale * LOG_SATURATION_PX) / 255) / flow.scale


def _batch(b=3, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((b, 256, 256, 1), np.float32)
    for i in range(b):
        y, x = rng.integers(20, 180, 2)
        mask[i, y:y + 40, x:x + 60] = 1
    # the frame's red channel draws the mask, so geometry can be checked on the frame alone
    frame = np.concatenate([mask * 255, rng.integers(0, 256, (b, 256, 256, 2))], -1).astype(np.uint8)
    hop = np.full((b, 256, 256, 3), 40, np.uint8)
    return {"frame": tf.constant(frame), "hop": tf.constant(hop), "mask": tf.constant(mask),
            "weight": tf.ones_like(mask)}


def test_all_off_is_identity():
    ex = _batch()
    out = augment_batch(ex, [1, 2], OFF)
    for k in ("frame", "hop", "mask", "weight"):
        np.testing.assert_allclose(out[k].numpy(), tf.cast(ex[k], tf.float32).numpy(), atol=1e-3)


def test_same_seed_same_batch_other_seed_other_batch():
    ex = _batch()
    a = augment_batch(ex, [5, 7], AugmentConfig())
    b = augment_batch(ex, [5, 7], AugmentConfig())
    c = augment_batch(ex, [5, 8], AugmentConfig())
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
    assert not np.array_equal(a["frame"].numpy(), c["frame"].numpy())


def test_frame_hop_and_labels_share_the_geometry():
    ex = _batch(4)
    cfg = dataclasses.replace(OFF, min_crop=0.5, flip=0.5)
    out = geometry(ex, tf.constant([3, 4], tf.int64), cfg)
    drawn = out["frame"].numpy()[..., 0] > 127
    mask = out["mask"].numpy()[..., 0] > 0.5
    assert mask.any(axis=(1, 2)).sum() >= 1
    # only the object's border pixels may differ (bilinear frame vs nearest labels)
    assert (drawn != mask).mean() < 0.01
    assert set(np.unique(out["mask"].numpy())) <= {0.0, 1.0}


def _uniform_hop(b, magnitude, flow):
    """uint8 [b,256,256,3] HOP of a uniform motion of ``magnitude`` tile pixels, as the encoder makes it."""
    grey = encode_hop({t: np.full((256, 256, 2), magnitude / np.sqrt(2), np.float32) for t in flow.taus}, flow)
    return np.repeat(grey[None], b, 0)


def _drawn_sides(seed, batch, min_crop):
    """The crop sides ``geometry`` draws with ``seed`` (no zoom out)."""
    _, side = crop_boxes(tf.random.experimental.stateless_split(seed, 2)[0], batch, min_crop)
    return side


@pytest.mark.parametrize("encoding", ["log", "linear"])
def test_zoom_scales_the_encoded_motion(encoding):
    # zooming in by 1/side makes every displacement 1/side times larger: the augmented HOP must be
    # what the encoder makes of the larger motion (up to its rounding), whatever the encoding
    flow = FlowConfig(encoding=encoding)
    ex = dict(_batch(4), hop=tf.constant(_uniform_hop(4, 1.5, flow)))
    seed = tf.constant([9, 9], tf.int64)
    out = geometry(ex, seed, dataclasses.replace(OFF, min_crop=0.5), flow)["hop"].numpy()
    side = _drawn_sides(seed, 4, 0.5)
    assert (side.numpy() < 0.95).any()
    for i, s in enumerate(side.numpy()):
        expected = _uniform_hop(1, 1.5 / s, flow)[0].astype(np.float32)
        # log: the input's rounding (0.5 level) grows by at most the 1/side slope; linear: gain 3 x 0.5
        np.testing.assert_allclose(out[i], expected, atol=1.6 if encoding == "linear" else 1.0)


def test_zoom_out_shrinks_the_tile_inside_an_ignored_border():
    ex = dict(_batch(2), hop=tf.constant(_uniform_hop(2, 4.0, FlowConfig())))
    cfg = dataclasses.replace(OFF, min_crop=2.0 - 1e-6, max_crop=2.0)  # side 2: half size
    out = geometry(ex, tf.constant([4, 2], tf.int64), cfg)
    weight = out["weight"].numpy()[..., 0]
    inside = weight > 0
    assert 0.2 < inside.mean(axis=(1, 2)).min() and inside.mean(axis=(1, 2)).max() < 0.3  # a quarter
    for i in range(2):  # the object keeps its share of the visible tile, and the border has none
        mask = out["mask"].numpy()[i, ..., 0] > 0.5
        share = ex["mask"].numpy()[i].mean()
        assert abs(mask[inside[i]].mean() - share) < 0.01 and not mask[~inside[i]].any()
        assert (out["frame"].numpy()[i][~inside[i]] == 0).all() and (out["hop"].numpy()[i][~inside[i]] == 0).all()
    # the motion halves with the objects: the grey level of 2 px, not of 4 px
    expected = _uniform_hop(1, 2.0, FlowConfig())[0].astype(np.float32)
    hop = out["hop"].numpy()[0]
    core = inside[0] & (np.roll(inside[0], 2, 0) & np.roll(inside[0], -2, 0) & np.roll(inside[0], 2, 1) & np.roll(inside[0], -2, 1))
    np.testing.assert_allclose(hop[core], np.broadcast_to(expected[0, 0], hop[core].shape), atol=1.0)
    with pytest.raises(HOFAMInputError, match="max_crop"):
        AugmentConfig(max_crop=0.9)


def test_grey_scaling_multiplies_the_grey_levels():
    # the earlier versions' augmentation, kept behind hop_scaling="grey"
    ex = _batch(4)
    seed = tf.constant([9, 9], tf.int64)
    out = geometry(ex, seed, dataclasses.replace(OFF, min_crop=0.5, hop_scaling="grey"), FlowConfig())
    side = _drawn_sides(seed, 4, 0.5)
    np.testing.assert_allclose(out["hop"].numpy().mean(axis=(1, 2, 3)), np.minimum(40.0 / side.numpy(), 255.0),
                               rtol=1e-4)


def test_motion_scaling_leaves_a_still_background_still_and_keeps_the_order():
    flow = FlowConfig()
    grey = tf.constant(np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1))
    for factor in (0.5, 1.0, 2.0):
        out = scale_motion(grey, tf.constant(factor, shape=[1, 1, 1, 1]), AugmentConfig(), flow).numpy().ravel()
        assert out[0] == 0.0 and (np.diff(out) >= 0).all() and out.max() <= 255.0
        if factor == 1.0:
            np.testing.assert_allclose(out, np.arange(256), atol=1e-3)
    # a noise level of 20 grey levels: doubling the motion gives 34, not the 40 of multiplying the grey
    doubled = scale_motion(tf.constant(20.0, shape=[1, 1, 1, 1]), tf.constant(2.0, shape=[1, 1, 1, 1]),
                           AugmentConfig(), flow).numpy().item()
    assert abs(doubled - 33.7) < 0.5


@pytest.mark.parametrize("scaling", ["motion", "grey"])
def test_hop_gain_range(scaling):
    flow = FlowConfig()
    ex = _batch(8)
    cfg = dataclasses.replace(OFF, hop_gain=2.0, hop_scaling=scaling)
    out = augment_batch(ex, [0, 1], cfg, flow)["hop"].numpy().mean(axis=(1, 2, 3))
    if scaling == "motion":  # back to displacement through the log encoding
        top = np.log1p(flow.scale * LOG_SATURATION_PX)
        gains = np.expm1(out * top / 255) / np.expm1(40.0 * top / 255)
    else:
        gains = out / 40.0
    assert (gains >= 0.5 - 1e-3).all() and (gains <= 2.0 + 1e-3).all()
    assert gains.std() > 0.05


def test_old_run_configs_keep_grey_scaling():
    recorded = RunConfig().to_dict()
    del recorded["augment"]["hop_scaling"]  # a config.json written before the field
    del recorded["augment"]["max_crop"]
    assert RunConfig.from_dict(recorded).augment.hop_scaling == "grey"
    assert RunConfig.from_dict(recorded).augment.max_crop == 1.0  # no zoom out then
    del recorded["augment"]["hop_noise"]
    assert RunConfig.from_dict(recorded).augment.hop_noise == 0.0
    del recorded["augment"]["still"]
    assert RunConfig.from_dict(recorded).augment.still == 0.0
    del recorded["augment"]["frame_swap"]
    del recorded["augment"]["hop_spread"]
    assert RunConfig.from_dict(recorded).augment.hop_spread == 0
    assert RunConfig.from_dict(recorded).augment.frame_swap == 0.0
    recorded["augment"]["paste"] = 0.25
    assert RunConfig.from_dict(recorded).augment.paste == 0.25
    del recorded["augment"]["paste"]
    del recorded["augment"]["paste_margin"]
    assert RunConfig.from_dict(recorded).augment.paste == 0.0  # no pasted objects then
    assert RunConfig.from_dict(RunConfig().to_dict()).augment.hop_scaling == "motion"
    with pytest.raises(HOFAMInputError, match="hop_scaling"):
        AugmentConfig(hop_scaling="log")


@pytest.mark.parametrize("encoding", ["log", "linear"])
def test_motion_noise_adds_in_quadrature_what_the_encoder_would_show(encoding):
    # a one-cell grid makes the field flat, so each image gets one amplitude a everywhere; a still
    # half must show a pixels of motion, and a half moving m pixels the encoder's sqrt(m^2 + a^2)
    flow = FlowConfig(encoding=encoding)
    still = np.zeros((4, 256, 128, 3), np.uint8)
    moving = _uniform_hop(4, 3.0, flow)[:, :, 128:]
    hop = tf.constant(np.concatenate([still, moving], axis=2), tf.float32)
    cfg = dataclasses.replace(OFF, hop_noise=2.0, hop_noise_grid=1)
    out = motion_noise(hop, tf.constant([4, 2], tf.int64), cfg, flow).numpy()
    rounding = 0.5 if encoding == "log" else 0.5 * max(flow.gains) + 0.5  # the encoder rounds before its gains
    candidates = np.linspace(0.0, 2.5, 501)
    amplitudes = []
    for i in range(4):  # the amplitude whose encoding the still half shows
        errors = [np.abs(_uniform_hop(1, px, flow)[0, 0, 0] - out[i, 0, 0]).max() for px in candidates]
        px = candidates[int(np.argmin(errors))]
        assert min(errors) <= rounding, f"still half {out[i, 0, 0]} is no encoded motion in [0, 2.5] px"
        assert np.ptp(out[i, :, :128], axis=(0, 1)).max() < 1e-3  # flat
        expected = _uniform_hop(1, np.hypot(3.0, px), flow)[0, 0, 0].astype(np.float32)
        np.testing.assert_allclose(out[i, :, 128:], np.broadcast_to(expected, out[i, :, 128:].shape), atol=rounding + 0.5)
        amplitudes.append(px)
    assert max(amplitudes) <= 2.0 + 0.01 and np.ptp(amplitudes) > 0.2  # drawn in [0, hop_noise]


def test_motion_noise_is_a_smooth_floor_and_leaves_everything_else_alone():
    ex = dict(_batch(4), hop=tf.zeros((4, 256, 256, 3), tf.uint8))
    cfg = dataclasses.replace(OFF, hop_noise=1.0)
    out = augment_batch(ex, [3, 5], cfg)
    for k in ("frame", "mask", "weight"):
        np.testing.assert_array_equal(out[k].numpy(), tf.cast(ex[k], tf.float32).numpy())
    hop = out["hop"].numpy()
    assert (hop >= 0).all() and hop.max() <= 255 and hop.mean() > 5
    px = _log_hop_px(hop)
    assert np.abs(np.diff(px, axis=1)).max() < 0.2 and np.abs(np.diff(px, axis=2)).max() < 0.2  # smooth
    mean_px = px.mean(axis=(1, 2))  # each image's mean is its amplitude, at most 1 px
    assert (mean_px <= 1.0 + 1e-3).all() and np.ptp(mean_px[:, 0]) > 0.05
    np.testing.assert_array_equal(augment_batch(ex, [3, 5], OFF)["hop"].numpy(), 0)  # off: none
    # its own seed: the other draws are those of the same run without it
    full = dataclasses.replace(AugmentConfig(), hop_noise=0.0)
    with_noise = augment_batch(_batch(4), [3, 5], dataclasses.replace(full, hop_noise=1.0))
    without = augment_batch(_batch(4), [3, 5], full)
    np.testing.assert_array_equal(with_noise["frame"].numpy(), without["frame"].numpy())
    assert not np.array_equal(with_noise["hop"].numpy(), without["hop"].numpy())


def test_still_examples_lose_their_motion_and_their_foreground_only():
    ex = _batch(16)
    cfg = dataclasses.replace(OFF, still=0.5)
    out = augment_batch(ex, [7, 1], cfg)
    hop, mask = out["hop"].numpy(), out["mask"].numpy()
    still = hop.max(axis=(1, 2, 3)) == 0
    assert 3 <= still.sum() <= 13  # about half of 16
    np.testing.assert_array_equal(mask[still], 0)  # nothing moves, nothing is foreground
    kept = tf.cast(ex["mask"], tf.float32).numpy()[~still]
    np.testing.assert_array_equal(mask[~still], kept)
    np.testing.assert_array_equal(hop[~still], 40)
    for k in ("frame", "weight"):  # the frame still shows its objects
        np.testing.assert_array_equal(out[k].numpy(), tf.cast(ex[k], tf.float32).numpy())
    assert (out["frame"].numpy()[still, ..., 0] == 255).any()
    # with the noise floor on, a still example shows the floor only; its own seed leaves the other
    # draws as they were
    full = AugmentConfig()
    with_still = augment_batch(_batch(16), [7, 1], dataclasses.replace(full, still=0.5))
    without = augment_batch(_batch(16), [7, 1], full)
    np.testing.assert_array_equal(with_still["frame"].numpy(), without["frame"].numpy())
    floor = with_still["hop"].numpy()[still]  # decoded to pixels of motion: the floor, at most 1 px
    px = _log_hop_px(floor)
    assert floor.max() > 0 and (px.mean(axis=(1, 2)) <= full.hop_noise + 1e-3).all()
    np.testing.assert_array_equal(with_still["mask"].numpy()[still], 0)
    assert with_still["mask"].numpy()[~still].sum() > 0


def test_hop_spread_dilates_the_motion_by_a_square_of_the_drawn_radius():
    hop = np.zeros((12, 64, 64, 3), np.float32)
    hop[:, 30:34, 20:24, 0] = 200  # a 4x4 moving patch in the red channel
    hop[:, 10, 50, 1] = 90  # and a lone pixel of weaker motion in the green one
    ex = {"frame": tf.zeros((12, 64, 64, 3)), "hop": tf.constant(hop), "mask": tf.zeros((12, 64, 64, 1)),
          "weight": tf.ones((12, 64, 64, 1))}
    out = augment_batch(ex, [5, 5], dataclasses.replace(OFF, hop_spread=3))["hop"].numpy()
    radii = []
    for i in range(12):
        side = int(round(np.sqrt((out[i, ..., 1] > 0.5).sum())))  # the lone pixel became a square
        r = (side - 1) // 2
        expected = np.zeros((64, 64, 3), np.float32)  # scipy-free: the dilation written out
        expected[30 - r:34 + r, 20 - r:24 + r, 0] = 200
        expected[10 - r:11 + r, 50 - r:51 + r, 1] = 90
        np.testing.assert_allclose(out[i], expected, atol=1e-3)  # gain 1 decodes and encodes again
        radii.append(r)
    assert set(radii) <= {0, 1, 2, 3} and len(set(radii)) >= 3  # drawn per example in [0, 3]
    np.testing.assert_allclose(augment_batch(ex, [5, 5], OFF)["hop"].numpy(), hop, atol=1e-3)  # off: none


def test_frame_swap_gives_an_example_the_next_ones_frame_and_keeps_its_labels():
    ex = _batch(16)
    out = augment_batch(ex, [2, 9], dataclasses.replace(OFF, frame_swap=0.5))
    frame = tf.cast(ex["frame"], tf.float32).numpy()
    swapped = [not np.array_equal(out["frame"].numpy()[i], frame[i]) for i in range(16)]
    assert 3 <= sum(swapped) <= 13
    for i in range(16):
        np.testing.assert_array_equal(out["frame"].numpy()[i], frame[(i + 1) % 16] if swapped[i] else frame[i])
    for k in ("hop", "mask", "weight"):
        np.testing.assert_array_equal(out[k].numpy(), tf.cast(ex[k], tf.float32).numpy())
    one = {k: v[:1] for k, v in ex.items()}  # nothing to swap with
    np.testing.assert_array_equal(augment_batch(one, [2, 9], dataclasses.replace(OFF, frame_swap=1.0))["frame"].numpy(),
                                  frame[:1])
    full = AugmentConfig()  # its own seed: the other draws are as without it
    with_swap = augment_batch(_batch(16), [2, 9], dataclasses.replace(full, frame_swap=0.5))
    without = augment_batch(_batch(16), [2, 9], full)
    for k in ("hop", "mask"):
        np.testing.assert_array_equal(with_swap[k].numpy(), without[k].numpy())


def _pasted(own_frame, own, other, margin):
    """What pasting ``other``'s objects into ``own`` gives, computed with OpenCV: frame blended by
    the dilated mask blurred twice (binomial 3x3, mirrored edges), HOP, mask and weight replaced."""
    size = 2 * margin + 1
    region = cv2.dilate(other["mask"][..., 0], np.ones((size, size), np.uint8))
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    soft = region.astype(np.float64)
    for _ in range(2):
        soft = cv2.filter2D(soft, -1, k, borderType=cv2.BORDER_REFLECT)
    soft = soft[..., None]
    out = {"frame": own_frame * (1 - soft) + other["frame"] * soft}
    for key in ("hop", "mask", "weight"):
        out[key] = np.where(region[..., None] > 0.5, other[key], own[key])
    return out


def test_paste_objects_moves_the_next_examples_objects_with_their_motion_and_labels():
    ex = _batch(16)
    hop = np.stack([np.full((256, 256, 3), 10 + 12 * i, np.uint8) for i in range(16)])
    ex["hop"] = tf.constant(hop)
    weight = np.ones((16, 256, 256, 1), np.float32)
    weight[:, :8] = 0  # an ignored band: the pasted object's own weights come along
    ex["weight"] = tf.constant(weight)
    ex["target_num"] = tf.constant(np.arange(16) % 3 + 1, tf.int64)
    arrays = {k: tf.cast(v, tf.float32).numpy() for k, v in ex.items() if k != "target_num"}
    out = augment_batch(ex, [4, 1], dataclasses.replace(OFF, paste=0.5, paste_margin=3))
    got = {k: v.numpy() for k, v in out.items()}
    pasted = []
    for i in range(16):
        own = {k: v[i] for k, v in arrays.items()}
        other = {k: v[(i + 1) % 16] for k, v in arrays.items()}
        if np.array_equal(got["mask"][i], own["mask"]) and np.allclose(got["hop"][i], own["hop"], atol=1e-3):
            pasted.append(False)
            np.testing.assert_allclose(got["frame"][i], own["frame"], atol=1e-3)
            assert got["target_num"][i] == i % 3 + 1
            continue
        pasted.append(True)
        want = _pasted(own["frame"], own, other, 3)
        np.testing.assert_allclose(got["frame"][i], want["frame"], atol=0.05)
        np.testing.assert_allclose(got["hop"][i], want["hop"], atol=1e-3)  # (gain 1 is not bit-exact)
        for key in ("mask", "weight"):
            np.testing.assert_array_equal(got[key][i], want[key])
        assert got["mask"][i].sum() >= other["mask"].sum()  # the whole object came along
        assert got["target_num"][i] == i % 3 + 1 + (i + 1) % 16 % 3 + 1
    assert 3 <= sum(pasted) <= 13
    one = {k: v[:1] for k, v in ex.items()}  # nothing to paste from
    alone = augment_batch(one, [4, 1], dataclasses.replace(OFF, paste=1.0))
    for k in ("frame", "hop", "mask", "weight"):
        np.testing.assert_allclose(alone[k].numpy(), arrays[k][:1], atol=1e-3)
    full = AugmentConfig()  # its own seed: without pastes in a batch, the other draws are as without it
    with_paste = augment_batch(_batch(16), [2, 9], dataclasses.replace(full, paste=1e-9))
    without = augment_batch(_batch(16), [2, 9], full)
    for k in ("frame", "hop", "mask"):
        np.testing.assert_allclose(with_paste[k].numpy(), without[k].numpy(), atol=1e-3)


def test_beta_after_a_crop_that_keeps_every_object_is_exact():
    """The loss's beta from (cropped N_fg, stored target_num) equals beta from connected components
    of the augmented mask itself."""
    mask = np.zeros((2, 256, 256, 1), np.float32)
    for y, x, h, w in ((60, 60, 20, 30), (120, 150, 40, 20), (160, 80, 12, 12)):
        mask[:, y:y + h, x:x + w] = 1  # all inside [0.1, 0.9] of the tile: any 0.8+ crop keeps them
    ex = {"frame": tf.zeros((2, 256, 256, 3), tf.uint8), "hop": tf.zeros((2, 256, 256, 3), tf.uint8),
          "mask": tf.constant(mask), "weight": tf.ones_like(mask)}
    out = geometry(ex, tf.constant([1, 1], tf.int64), dataclasses.replace(OFF, min_crop=0.8))
    aug = out["mask"].numpy()
    beta = size_factor(out["mask"], tf.constant([3, 3], tf.int64), LossConfig()).numpy()
    for b in range(2):
        n, _ = cv2.connectedComponents(aug[b, ..., 0].astype(np.uint8), connectivity=8)
        mean_area = aug[b].sum() / (n - 1)
        assert n - 1 == 3
        np.testing.assert_allclose(beta[b], min(50.0, 256 * 256 / mean_area) / 4.0, rtol=1e-5)
    assert aug.sum() > mask.sum()  # zoomed in: objects got larger, beta smaller than before


def test_bad_settings_are_refused():
    with pytest.raises(HOFAMInputError, match="min_crop"):
        AugmentConfig(min_crop=0.0)
    with pytest.raises(HOFAMInputError, match="hop_gain"):
        AugmentConfig(hop_gain=0.5)
    with pytest.raises(HOFAMInputError, match="flip"):
        AugmentConfig(flip=1.5)
    with pytest.raises(HOFAMInputError, match="hop_noise"):
        AugmentConfig(hop_noise=-0.1)
    with pytest.raises(HOFAMInputError, match="hop_noise_grid"):
        AugmentConfig(hop_noise_grid=0)
    with pytest.raises(HOFAMInputError, match="still"):
        AugmentConfig(still=-0.2)
    with pytest.raises(HOFAMInputError, match="frame_swap"):
        AugmentConfig(frame_swap=2.0)
    with pytest.raises(HOFAMInputError, match="hop_spread"):
        AugmentConfig(hop_spread=-1)
    with pytest.raises(HOFAMInputError, match="paste"):
        AugmentConfig(paste=1.5)
    with pytest.raises(HOFAMInputError, match="paste_margin"):
        AugmentConfig(paste_margin=-1)


@pytest.mark.slow
def test_training_pipeline_augments_real_records(cdnet_records):
    pattern = str(cdnet_records["records"] / "train-*.tfrecord")
    plain = next(iter(build_dataset(pattern, 4, training=True, seed=3, with_target_num=True)))
    aug1 = next(iter(build_dataset(pattern, 4, training=True, seed=3, with_target_num=True, augment=AugmentConfig())))
    aug2 = next(iter(build_dataset(pattern, 4, training=True, seed=3, with_target_num=True, augment=AugmentConfig())))
    x, mask, weight, tnum = aug1
    assert x["frame"].dtype == tf.float32 and x["frame"].shape == (4, 256, 256, 3)
    assert 0 <= float(tf.reduce_min(x["frame"])) and float(tf.reduce_max(x["frame"])) <= 255
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    np.testing.assert_array_equal(tnum.numpy(), plain[3].numpy())  # same examples, counts kept
    np.testing.assert_array_equal(x["frame"].numpy(), aug2[0]["frame"].numpy())  # seeded
    assert not np.allclose(x["frame"].numpy(), tf.cast(plain[0]["frame"], tf.float32).numpy())


def test_training_pipeline_scales_the_hop_in_the_records_encoding(cdnet_records):
    # build_dataset hands the records' flow settings to the augmentation: the same draws give the
    # grey-level product under "linear" and the re-encoded motion under "log"
    pattern = str(cdnet_records["records"] / "train-*.tfrecord")
    cfg = dataclasses.replace(OFF, min_crop=0.5, hop_gain=2.0)

    def hop(flow, aug=cfg):
        batch = build_dataset(pattern, 4, training=True, seed=3, augment=aug, flow=flow)
        return next(iter(batch))[0]["hop"].numpy()

    linear, log = hop(FlowConfig(encoding="linear")), hop(FlowConfig())
    np.testing.assert_array_equal(linear, hop(FlowConfig(), dataclasses.replace(cfg, hop_scaling="grey")))
    assert not np.allclose(linear, log, atol=2.0)
    np.testing.assert_array_equal(log, hop(None))  # no flow given: the default settings


def test_frame_drop_blanks_the_frame_only():
    ex = _batch(4)
    out = augment_batch(ex, [2, 3], dataclasses.replace(OFF, frame_drop=1.0))
    noise = out["frame"].numpy()
    assert 0 <= noise.min() and noise.max() <= 255 and abs(noise.mean() - 127.5) < 2 and noise.std() > 60
    assert abs(np.corrcoef(noise[..., 0].ravel(), ex["frame"].numpy()[..., 0].ravel())[0, 1]) < 0.01
    np.testing.assert_allclose(out["hop"].numpy(), 40.0)
    kept = augment_batch(ex, [2, 3], dataclasses.replace(OFF, frame_drop=0.5))["frame"].numpy()
    same = [np.allclose(kept[b], ex["frame"].numpy()[b].astype(np.float32), atol=1e-3) for b in range(4)]
    for b in range(4):
        assert same[b] or kept[b].std() > 60


@pytest.mark.slow
def test_training_with_frame_drop_stays_finite(tmp_path, cdnet_records):
    from hofam_tf.config import ModelConfig, RunConfig, TrainConfig
    from hofam_tf.tasks.train import run_train

    cfg = RunConfig(model=ModelConfig(ngf=2), augment=dataclasses.replace(AugmentConfig(), frame_drop=1.0),
                    train=TrainConfig(train_pattern=str(cdnet_records["records"] / "train-*.tfrecord"), steps=6,
                                      batch_size=2, ckpt_every=6, log_every=1, image_every=0, learning_rate=1e-3))
    result = run_train(cfg, tmp_path / "run", progress=False)
    assert np.isfinite(result["last_loss"]["loss"])


def test_channel_drop_scales_one_drawn_channel_of_the_motion_and_keeps_the_labels():
    rng = np.random.default_rng(3)
    hop = rng.integers(60, 250, (32, 16, 16, 3)).astype(np.uint8)
    ex = {"frame": tf.zeros((32, 16, 16, 3)), "hop": tf.constant(hop), "mask": tf.ones((32, 16, 16, 1)),
          "weight": tf.ones((32, 16, 16, 1))}
    out = augment_batch(ex, [4, 1], dataclasses.replace(OFF, channel_drop=0.5))
    ratio = _log_hop_px(out["hop"].numpy()) / _log_hop_px(hop.astype(np.float32))
    dropped = []
    for i in range(32):
        changed = [c for c in range(3) if not np.allclose(ratio[i, ..., c], 1.0, atol=1e-3)]
        assert len(changed) <= 1  # one channel at most
        for c in changed:  # the whole channel keeps one fraction u in [0, 1) of its motion
            u = np.median(ratio[i, ..., c])
            assert 0 <= u < 1
            np.testing.assert_allclose(ratio[i, ..., c], u, atol=2e-3)
            dropped.append(c)
    assert 8 <= len(dropped) <= 24 and set(dropped) == {0, 1, 2}  # p 0.5, any channel
    for k in ("mask", "weight", "frame"):
        np.testing.assert_array_equal(out[k].numpy(), tf.cast(ex[k], tf.float32).numpy())
    np.testing.assert_allclose(augment_batch(ex, [4, 1], OFF)["hop"].numpy(), hop, atol=1e-3)  # off: none
    full = AugmentConfig()  # its own seed: the other draws are as without it
    with_drop = augment_batch(_batch(8), [4, 1], dataclasses.replace(full, channel_drop=0.5))
    without = augment_batch(_batch(8), [4, 1], full)
    for k in ("frame", "mask"):
        np.testing.assert_array_equal(with_drop[k].numpy(), without[k].numpy())
    with pytest.raises(Exception, match="channel_drop"):
        AugmentConfig(channel_drop=1.5)


def test_background_channel_gets_the_geometry_and_a_contrast_gain_but_no_motion_changes():
    """With FlowConfig.background_stride, channel B is a grey-level difference, not motion: zoom,
    spread, channel drop and the noise floor leave it alone; the HOP gain multiplies its levels."""
    flow = FlowConfig(background_stride=10)
    ex = _batch(4, seed=3)
    hop = np.zeros((4, 256, 256, 3), np.uint8)
    hop[:, 60:120, 60:140] = (120, 90, 70)  # motion in R and G, a difference in B ...
    hop[..., 2] = np.maximum(hop[..., 2], ex["frame"].numpy()[..., 0])  # ... drawn in the frame's red too
    ex["frame"] = tf.constant(np.concatenate([hop[..., 2:], ex["frame"].numpy()[..., 1:]], -1))
    ex["hop"] = tf.constant(hop)
    motion_only = dataclasses.replace(OFF, hop_spread=3, hop_noise=1.0, channel_drop=1.0, min_crop=0.5, flip=0.5)
    out = augment_batch(ex, [3, 4], motion_only, flow)
    plain = augment_batch(ex, [3, 4], dataclasses.replace(motion_only, hop_spread=0, hop_noise=0.0, channel_drop=0.0,
                                                           min_crop=1.0, max_crop=1.0), flow)
    # B went through the frame's crop and flip, and nothing else
    np.testing.assert_allclose(out["hop"].numpy()[..., 2], out["frame"].numpy()[..., 0], atol=1e-3)
    assert not np.allclose(out["hop"].numpy()[..., 2], hop[..., 2], atol=1.0)  # it was cropped
    assert not np.allclose(out["hop"].numpy()[..., :2], plain["hop"].numpy()[..., :2], atol=1.0)  # R, G changed
    # the gain: B times g (clipped), R and G through the motion scaling with the same g
    gained = augment_batch(ex, [8, 9], dataclasses.replace(OFF, hop_gain=2.0), flow)["hop"].numpy()
    at = [tuple(np.argwhere(hop[i, ..., 2] == 70)[0]) for i in range(4)]  # a pixel of B level 70 per image
    g = np.array([gained[i, y, x, 2] / 70.0 for i, (y, x) in enumerate(at)])
    assert (g > 0.5).all() and (g < 2.0).all() and g.std() > 0.05
    np.testing.assert_allclose(gained[..., 2], np.minimum(hop[..., 2] * g[:, None, None], 255), rtol=1e-4)
    expected_r = scale_motion(tf.fill([4, 1, 1, 1], 120.0), tf.constant(g.reshape(4, 1, 1, 1), tf.float32),
                              OFF, flow).numpy()
    np.testing.assert_allclose([gained[i, y, x, 0] for i, (y, x) in enumerate(at)], expected_r[:, 0, 0, 0], rtol=1e-4)
    # with the setting off, B is motion like the others
    off = augment_batch(ex, [8, 9], dataclasses.replace(OFF, hop_gain=2.0), FlowConfig())["hop"].numpy()
    assert not np.allclose(off[..., 2], gained[..., 2], atol=1.0)
