"""The background-reference variant (``FlowConfig.reference_stride`` / ``ModelConfig.reference``):
its input made from real frames, carried through composites and records, its model (shapes,
save/load), augmentation, training, predict and ONNX, and the faithful default left unchanged."""
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, AugmentConfig, FlowConfig, ModelConfig, RunConfig
from hofam_tf.data.composite import compose, read_composite, read_composite_tiles, split_composite_tiles
from hofam_tf.data.flow import iter_hop, pixel_median, reference_indices
from hofam_tf.data.sources import Frame
from hofam_tf.errors import HOFAMInputError
from hofam_tf.model.hofam import build_hofam, count_params


def _flat_frames(values, scored_from=0):
    """Frames whose every pixel holds one known value (frame i: values[i]), 64x80 native."""
    return [Frame(i, f"{i:03d}", np.full((64, 80, 3), v, np.uint8), None, i >= scored_from)
            for i, v in enumerate(values)]


def test_pixel_median_is_the_per_pixel_median():
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(5)]
    np.testing.assert_array_equal(pixel_median(tiles), np.median(np.stack(tiles), axis=0).astype(np.uint8))


def test_the_reference_is_the_median_of_the_right_earlier_frames():
    cfg = FlowConfig(reference_stride=2, background_frames=3)
    assert reference_indices(9, cfg) == [7, 5, 3] and reference_indices(3, cfg) == [1, 0, 0]
    assert reference_indices(9, FlowConfig()) == []
    values = [10 * i for i in range(12)]  # every frame a different flat grey
    out = {fr.index: ref for fr, _, _, ref in iter_hop(iter(_flat_frames(values)), cfg, workers=2, max_pending=2)}
    for t, ref in out.items():
        expected = int(np.median([values[i] for i in reference_indices(t, cfg)]))  # clamped at frame 0
        assert ref.shape == (256, 256, 3) and ref.dtype == np.uint8
        assert np.all(ref == expected), t
    assert np.all(out[0] == 0) and np.all(out[9] == 50)  # frames 7, 5, 3 -> median 50
    # the HOP is the same as without the reference (it is an input beside the HOP, not in it)
    plain = {fr.index: hop for fr, _, hop, ref in iter_hop(iter(_flat_frames(values)), FlowConfig(), workers=2)}
    with_ref = {fr.index: hop for fr, _, hop, _ in iter_hop(iter(_flat_frames(values)),
                                                             FlowConfig(reference_stride=2, background_frames=3))}
    for t in plain:
        np.testing.assert_array_equal(plain[t], with_ref[t])


def test_a_later_start_clamps_the_reference_to_the_first_frame_read():
    cfg = FlowConfig(reference_stride=3, background_frames=3)
    assert cfg.history == 10  # tau3 10 against 3 x 3
    frames = _flat_frames([7 * i for i in range(30)])[12:]  # read from frame 12 on
    out = {fr.index: ref for fr, _, _, ref in iter_hop(iter(frames), cfg, workers=1)}
    assert np.all(out[14] == 7 * 12)  # 11, 8, 5 all clamp to frame 12
    assert np.all(out[20] == 7 * 14)  # 17, 14, 12 (11 clamped) -> median 14


def test_a_spread_reference_takes_distinct_earlier_frames_before_its_span_is_read():
    cfg = FlowConfig(reference_stride=10, background_frames=3, reference_spread=True)
    # frame 6 of a clip: the span (30 frames) is not read yet, so 3 frames spread over frames 0..5
    assert reference_indices(6, cfg) == [4, 2, 0] and reference_indices(2, cfg) == [1, 0, 0]
    assert reference_indices(6, dataclasses.replace(cfg, reference_spread=False)) == [0, 0, 0]
    assert reference_indices(0, cfg) == [0, 0, 0]  # nothing earlier: the frame itself
    assert reference_indices(45, cfg) == [35, 25, 15]  # once the span is read, the same as clamping
    assert reference_indices(45, cfg) == reference_indices(45, dataclasses.replace(cfg, reference_spread=False))
    assert reference_indices(20, cfg, first=14) == [18, 16, 14]  # read from frame 14 on
    # on real streamed frames: each reference is the median of the frames named, computed here with NumPy
    values = [9 * i for i in range(28)]
    for start in (0, 5):
        frames = _flat_frames(values)[start:]
        out = {fr.index: ref for fr, _, _, ref in iter_hop(iter(frames), cfg, workers=2, max_pending=2)}
        assert sorted(out) == list(range(start, 28))
        for t, ref in out.items():
            named = [t - int(np.ceil((t - start) * k / 3)) for k in (1, 2, 3)]
            assert min(named) >= start and (t == start or max(named) < t)
            assert np.all(ref == int(np.median([values[i] for i in named]))), (start, t)
    # a 12-frame clip, frame 11: the clamped median is frame 0 (which holds whatever stood there),
    # the spread one the middle of the clip
    short = _flat_frames(values[:12])
    spread = {fr.index: ref for fr, _, _, ref in iter_hop(iter(short), cfg, workers=1)}
    clamped = {fr.index: ref for fr, _, _, ref in
               iter_hop(iter(_flat_frames(values[:12])), dataclasses.replace(cfg, reference_spread=False), workers=1)}
    assert np.all(clamped[11] == 0) and np.all(spread[11] == values[3])  # frames 7, 3, 0 -> median 3's
    with pytest.raises(HOFAMInputError):
        FlowConfig.from_dict({"reference_stride": -1, "reference_spread": True})
    assert FlowConfig.from_dict({"reference_stride": 10}).reference_spread is False  # older records: clamped


def test_composite_round_trip_with_a_background_tile(tmp_path):
    from hofam_tf.files import write_png

    rng = np.random.default_rng(1)
    frame, hop, bg = (rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(3))
    labels = rng.choice(np.array([0, 50, 85, 170, 255], np.uint8), (256, 256))
    comp = compose(frame, hop, labels, bg)
    assert comp.shape == (256, 1024, 3)
    write_png(tmp_path / "c.png", comp)
    f2, h2, l2, b2 = read_composite_tiles(tmp_path / "c.png")
    for a, b in ((f2, frame), (h2, hop), (l2, labels), (b2, bg)):
        np.testing.assert_array_equal(a, b)
    assert len(read_composite(tmp_path / "c.png")) == 3  # the three-tile readers still work
    assert split_composite_tiles(compose(frame, hop, labels))[3] is None
    with pytest.raises(HOFAMInputError, match="x.png.*1024 wide with a background tile"):
        split_composite_tiles(np.zeros((256, 512, 3), np.uint8), "x.png")


def test_run_config_derives_the_model_input_from_the_flow_settings():
    cfg = RunConfig(flow=FlowConfig(reference_stride=10))
    assert cfg.model.reference is True and RunConfig().model.reference is False
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    # an explicit model setting cannot contradict the data: the flow settings decide
    assert RunConfig(model=ModelConfig(reference=True)).model.reference is False
    with pytest.raises(HOFAMInputError, match="reference_stride"):
        FlowConfig(reference_stride=-1)


def test_no_flag_sets_the_derived_field():
    from hofam_tf.config_flags import fields

    names = {name for _, _, name, _ in fields()}
    assert "reference_stride" in names and "reference" not in names


def test_model_shapes_parameters_and_the_faithful_default():
    plain = build_hofam(ngf=4)
    assert sorted(plain.input) == [FRAME_KEY, HOP_KEY]
    assert count_params(build_hofam(ngf=64))["total"] == 173_173_697  # the original, unchanged
    ref = build_hofam(ngf=4, reference=True)
    assert sorted(ref.input) == [BACKGROUND_KEY, FRAME_KEY, HOP_KEY]
    # only the frame encoder's first convolution grows: 7x7 kernels over 3 more input channels
    assert count_params(ref)["total"] - count_params(plain)["total"] == 7 * 7 * 3 * 4
    assert ref.get_layer("g_e1_conv").kernel.shape == (7, 7, 6, 4)
    x = {k: tf.random.uniform((2, 256, 256, 3), 0, 255, seed=1) for k in (FRAME_KEY, HOP_KEY, BACKGROUND_KEY)}
    out = ref(x, training=False)
    assert out.shape == (2, 256, 256, 1) and out.dtype == tf.float32
    other = dict(x, **{BACKGROUND_KEY: tf.zeros_like(x[BACKGROUND_KEY])})
    assert not np.allclose(ref(other, training=False).numpy(), out.numpy())  # the background is used


def test_the_variant_saves_and_loads_self_described(tmp_path):
    import keras

    model = build_hofam(ngf=4, reference=True)
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert back.model_config.reference is True
    x = {k: np.random.default_rng(2).integers(0, 256, (1, 256, 256, 3)).astype(np.float32)
         for k in (FRAME_KEY, HOP_KEY, BACKGROUND_KEY)}
    np.testing.assert_allclose(back(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-6)


def test_augmentation_treats_the_background_like_the_frame():
    from hofam_tf.data.augment import augment_batch

    rng = np.random.default_rng(3)
    frame = tf.constant(rng.integers(0, 256, (4, 64, 64, 3)), tf.uint8)
    ex = {FRAME_KEY: frame, BACKGROUND_KEY: frame, HOP_KEY: tf.constant(rng.integers(0, 60, (4, 64, 64, 3)), tf.uint8),
          "mask": tf.zeros((4, 64, 64, 1)), "weight": tf.ones((4, 64, 64, 1))}
    cfg = AugmentConfig(frame_swap=0.5, frame_drop=0.3)
    for s in range(3):
        out = augment_batch(ex, tf.constant([5, s], tf.int64), cfg)
        # the same crop, flip, photometric draws, drop and swap: a background equal to its frame stays equal
        np.testing.assert_array_equal(out[BACKGROUND_KEY].numpy(), out[FRAME_KEY].numpy())
    plain = augment_batch({k: v for k, v in ex.items() if k != BACKGROUND_KEY}, tf.constant([5, 0], tf.int64), cfg)
    out = augment_batch(ex, tf.constant([5, 0], tf.int64), cfg)
    for k in (FRAME_KEY, HOP_KEY, "mask"):  # adding the background changes no other draw
        np.testing.assert_array_equal(out[k].numpy(), plain[k].numpy())


@pytest.fixture(scope="module")
def reference_scene(tmp_path_factory):
    """A synthetic scene merged with the reference on, its records, and a 3-update ngf 2 run."""
    from hofam_tf.config import TrainConfig
    from hofam_tf.data.merging import merge_sequence
    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.data.sources import discover
    from hofam_tf.data.synthetic import write_scene
    from hofam_tf.tasks.train import run_train

    root = tmp_path_factory.mktemp("reference")
    flow = FlowConfig(reference_stride=2, background_frames=3, dis_preset="ultrafast", reverse_check=False)
    for i in range(2):
        write_scene(root / "raw" / f"scene{i}", seed=40 + i, frames=14, size=96, objects=1)
        merge_sequence(discover(root / "raw" / f"scene{i}")[0], root / "comp", flow, progress=False)
    write_tfrecords(root / "comp", root / "rec", test_sequences=["scene1"], progress=False)
    cfg = RunConfig(model=ModelConfig(ngf=2),
                    train=TrainConfig(train_pattern=str(root / "rec" / "train-*.tfrecord"),
                                      val_pattern=str(root / "rec" / "test-*.tfrecord"), val_every=3, steps=3,
                                      batch_size=2, ckpt_every=3, log_every=1, image_every=1, shuffle_buffer=8))
    run_train(cfg, root / "run", progress=False)
    return {"root": root, "flow": flow}


@pytest.mark.slow
def test_records_carry_the_reference_and_training_adopts_it(reference_scene):
    from hofam_tf.data.dataset import read_examples

    root = reference_scene["root"]
    _, _, _, bg = read_composite_tiles(root / "comp" / "scene0" / "000010.png")
    assert bg is not None and bg.shape == (256, 256, 3)
    ex = next(iter(read_examples(str(root / "rec" / "train-*.tfrecord"), background=True)))
    fid = ex["frame_id"].numpy().decode()
    _, _, _, expected = read_composite_tiles(root / "comp" / "scene0" / f"{fid}.png")
    np.testing.assert_array_equal(ex[BACKGROUND_KEY].numpy(), expected)
    saved = RunConfig.load(root / "run" / "config.json")
    assert saved.flow.reference_stride == 2 and saved.model.reference is True
    assert json.loads((root / "run" / "best.json").read_text())["step"] == 3  # validated with the reference


@pytest.mark.slow
def test_the_reference_model_refuses_records_without_the_reference(reference_scene, tmp_path, cdnet_records):
    from hofam_tf.tasks.evaluate import run_test

    with pytest.raises(HOFAMInputError, match="has no 'img_background'.*--reference_stride"):
        run_test(reference_scene["root"] / "run", str(cdnet_records["records"] / "test-*.tfrecord"), tmp_path,
                 progress=False)


@pytest.mark.slow
def test_predict_and_test_run_the_reference_model(reference_scene, tmp_path):
    from hofam_tf.data.sources import discover
    from hofam_tf.files import read_image
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.tasks.evaluate import run_test
    from hofam_tf.tasks.predict import PredictOptions, native_probability, run_predict
    from hofam_tf.tasks.runtimes import TFRunner

    root = reference_scene["root"]
    metrics = run_test(root / "run", str(root / "rec" / "test-*.tfrecord"), tmp_path / "test", progress=False)
    assert metrics["images"] == 14 and set(metrics["cdnet"]["per_sequence"]) == {"scene1"}
    opts = PredictOptions(overlay_video=False, calibrate_frames=0, median_gate=0.0, batch_size=4, threshold=0.5,
                          flow_preset="run")  # the flow settings the composites were made with
    summary = run_predict(root / "raw" / "scene1" / "frames", root / "run", tmp_path / "pred", opts, progress=False)
    assert summary["sequences"][0]["frames"] == 14
    # predict's inputs are the composites' tiles (the reference included), and its masks are the
    # model's probabilities on them at native size, thresholded
    model, cfg = load_for_inference(root / "run")
    runner = TFRunner(model)
    seq = discover(root / "raw" / "scene1")[0]
    items = list(iter_hop(seq.iter_frames(lookback=cfg.flow.history), cfg.flow))
    assert len(items) == 14
    for fr, tile, hop, ref in items[::4]:
        stored = read_composite_tiles(root / "comp" / "scene1" / f"{fr.frame_id}.png")
        for got, want in zip((tile, hop, ref), (stored[0], stored[1], stored[3])):
            np.testing.assert_array_equal(got, want)
        prob = native_probability(runner(tile[None], hop[None], ref[None])[0], fr.rgb.shape)
        mask = read_image(tmp_path / "pred" / "frames" / "masks" / f"{fr.frame_id}.png", "L")
        assert np.mean((mask > 127) == (prob >= summary["sequences"][0]["threshold"])) > 0.999


@pytest.mark.slow
def test_a_reference_model_without_its_flow_settings_is_refused(reference_scene, tmp_path):
    import shutil

    from hofam_tf.model.checkpoints import load_for_inference

    shutil.copy(reference_scene["root"] / "run" / "model.keras", tmp_path / "model.keras")
    with pytest.raises(HOFAMInputError, match="background-reference model.*reference_stride=0"):
        load_for_inference(tmp_path / "model.keras")


@pytest.mark.slow
def test_onnx_export_of_the_variant_agrees_with_tf(reference_scene, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.tasks.export import export_checkpoint
    from hofam_tf.tasks.runtimes import OnnxRunner, TFRunner

    export_checkpoint(reference_scene["root"] / "run", tmp_path / "exp", formats=("onnx",))
    model, _ = load_for_inference(reference_scene["root"] / "run")
    rng = np.random.default_rng(4)
    x = [rng.integers(0, 256, (2, 256, 256, 3)).astype(np.float32) for _ in range(3)]
    ort = OnnxRunner(tmp_path / "exp" / "model.onnx")
    assert ort.names == {FRAME_KEY, HOP_KEY, BACKGROUND_KEY}
    p_tf, p_ort = TFRunner(model)(*x), ort(*x)
    assert np.mean((p_tf >= 0.5) == (p_ort >= 0.5)) >= 0.999
    with pytest.raises(HOFAMInputError, match="takes"):
        ort(x[0], x[1])


@pytest.mark.slow
def test_tensorboard_images_are_the_input_bytes(reference_scene):
    """The frame, HOP and background summaries are the model's byte inputs, not floats read as
    [0, 1] (which would saturate every pixel above 1 to white)."""
    events = sorted((reference_scene["root"] / "run" / "logs").glob("events.out.tfevents.*"))
    images = {}
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag in (FRAME_KEY, HOP_KEY, BACKGROUND_KEY):
                    png = tf.make_ndarray(value.tensor)[2]  # [width, height, image 1, ...]
                    images[value.tag] = tf.io.decode_png(png).numpy()
    assert set(images) == {FRAME_KEY, HOP_KEY, BACKGROUND_KEY}
    for tag in (FRAME_KEY, BACKGROUND_KEY):  # textured synthetic scenes: mid-grey levels, not white
        assert np.mean(images[tag] == 255) < 0.2 and images[tag].std() > 5, tag
