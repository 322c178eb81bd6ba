"""The balanced-head variant (``ModelConfig.balanced_head``): shapes and parameters, the faithful
default unchanged, the head starts as the main head and never moves it, its loss, save/load, the
flag, and a real training run whose trunk matches the plain model's."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.config import FRAME_KEY, HOP_KEY, ModelConfig, RunConfig, TrainConfig
from hofam_tf.model.hofam import MAIN_LOGITS, build_hofam, count_params
from hofam_tf.model.losses import balanced_loss, hofam_loss


def _inputs(seed=1, batch=2):
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256, (batch, 256, 256, 3)).astype(np.float32) for k in (FRAME_KEY, HOP_KEY)}


def _two_heads(model):
    import keras

    return keras.Model(model.inputs, [model.get_layer(MAIN_LOGITS).output, model.output])


def test_parameters_and_the_faithful_default():
    assert count_params(build_hofam(ngf=64))["total"] == 173_173_697  # the original, unchanged
    plain, head = build_hofam(ngf=4), build_hofam(ngf=4, balanced_head=True)
    names = {layer.name for layer in plain.layers}
    assert "balanced_head" not in names and MAIN_LOGITS not in names
    # a 3x3 kernel and a per-image weight over the main logit and the 2*ngf decoder channels, one bias
    channels = 1 + 2 * 4
    assert count_params(head)["total"] - count_params(plain)["total"] == 9 * channels + channels + 1
    out = head(_inputs(), training=False)
    assert out.shape == (2, 256, 256, 1) and out.dtype == tf.float32


def test_the_head_starts_as_the_main_head_and_learns_on_top_of_it():
    model = build_hofam(ngf=4, balanced_head=True)
    both = _two_heads(model)
    x = _inputs(3)
    main, out = both(x, training=False)
    np.testing.assert_array_equal(main.numpy(), out.numpy())

    y = tf.cast(tf.random.uniform((2, 256, 256, 1), seed=4) > 0.9, tf.float32)
    head_vars = model.get_layer("balanced_head").trainable_variables
    others = [v for v in model.trainable_variables if all(v is not h for h in head_vars)]
    with tf.GradientTape(persistent=True) as tape:
        main, out = both(x, training=True)
        head_loss = balanced_loss(out, y)
        main_loss = hofam_loss(main, y)["loss"]
    # the balanced loss reaches only the head; the class-in-scale loss never reaches the head
    assert all(g is None or not np.any(g.numpy()) for g in tape.gradient(head_loss, others))
    assert all(g is not None and np.any(g.numpy()) for g in tape.gradient(head_loss, head_vars))
    assert all(g is None for g in tape.gradient(main_loss, head_vars))
    assert any(g is not None and np.any(g.numpy()) for g in tape.gradient(main_loss, others))


def test_balanced_loss_is_the_plain_cross_entropy_over_counted_pixels():
    rng = np.random.default_rng(5)
    z = rng.normal(0, 3, (2, 8, 8, 1)).astype(np.float32)
    y = (rng.random((2, 8, 8, 1)) > 0.8).astype(np.float32)
    w = (rng.random((2, 8, 8, 1)) > 0.3).astype(np.float32)
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(float(balanced_loss(z, y, w)), (w * ce).sum() / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(balanced_loss(z, y)), ce.mean(), rtol=1e-5)


def test_the_variant_saves_and_loads_self_described(tmp_path):
    import keras

    model = build_hofam(ngf=4, balanced_head=True)
    head = model.get_layer("balanced_head")
    head.global_kernel.assign(tf.random.normal(head.global_kernel.shape, seed=6))
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert back.model_config.balanced_head is True
    x = _inputs(7, 1)
    np.testing.assert_allclose(back(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-6)


def test_the_flag_sets_the_field():
    from hofam_tf.config_flags import fields

    assert "balanced_head" in {flag for _, _, flag, _ in fields()}
    cfg = RunConfig.from_dict({**RunConfig().to_dict(), "model": {**RunConfig().to_dict()["model"],
                                                                    "balanced_head": True}})
    assert cfg.model.balanced_head is True
    # a config.json written before the field existed reads as the faithful single head
    old = RunConfig().to_dict()
    del old["model"]["balanced_head"]
    assert RunConfig.from_dict(old).model.balanced_head is False


@pytest.fixture(scope="module")
def synthetic_records(tmp_path_factory):
    from hofam_tf.config import FlowConfig
    from hofam_tf.data.merging import merge_sequence
    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.data.sources import discover
    from hofam_tf.data.synthetic import write_scene

    root = tmp_path_factory.mktemp("balanced")
    flow = FlowConfig(dis_preset="ultrafast", reverse_check=False)
    for i in range(2):
        write_scene(root / "raw" / f"scene{i}", seed=60 + i, frames=14, size=96, objects=1)
        merge_sequence(discover(root / "raw" / f"scene{i}")[0], root / "comp", flow, progress=False)
    write_tfrecords(root / "comp", root / "rec", test_sequences=["scene1"], progress=False)
    return root


@pytest.fixture(scope="module")
def balanced_runs(synthetic_records, tmp_path_factory):
    """Two 4-update ngf 2 runs on the same records and seed, without and with the balanced head."""
    from hofam_tf.tasks.train import run_train

    rec, out = synthetic_records / "rec", tmp_path_factory.mktemp("balanced_runs")
    for head in (False, True):
        cfg = RunConfig(model=ModelConfig(ngf=2, balanced_head=head),
                        train=TrainConfig(train_pattern=str(rec / "train-*.tfrecord"), val_pattern="", steps=4,
                                          batch_size=2, ckpt_every=4, log_every=1, image_every=0, shuffle_buffer=8,
                                          ema_decay=0.0))
        run_train(cfg, out / str(head), progress=False)
    return {False: out / "False", True: out / "True"}


@pytest.mark.slow
def test_training_moves_the_head_and_leaves_the_trunk_as_the_plain_model_trains_it(balanced_runs):
    import keras

    plain, variant = (keras.saving.load_model(balanced_runs[h] / "model.keras", compile=False) for h in (False, True))
    assert variant.model_config.balanced_head and RunConfig.load(balanced_runs[True] / "config.json").model.balanced_head
    for layer in plain.layers:
        for a, b in zip(layer.weights, variant.get_layer(layer.name).weights):
            np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, err_msg=f"{layer.name}/{a.name}")
    head = variant.get_layer("balanced_head")
    assert np.any(head.global_kernel.numpy()) and np.any(head.bias.numpy())


@pytest.mark.slow
def test_predict_and_onnx_run_the_balanced_head(balanced_runs, synthetic_records, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from hofam_tf.data.sources import discover
    from hofam_tf.files import read_image
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.tasks.export import export_checkpoint
    from hofam_tf.tasks.predict import PredictOptions, run_predict
    from hofam_tf.tasks.runtimes import OnnxRunner, TFRunner

    run = balanced_runs[True]
    model, _ = load_for_inference(run)
    x = list(_inputs(8).values())
    both = _two_heads(model)
    main, out = (t.numpy() for t in both(dict(zip((FRAME_KEY, HOP_KEY), x)), training=False))
    assert not np.allclose(main, out)  # the trained head is not the main head
    p_tf = TFRunner(model)(*x)
    np.testing.assert_allclose(p_tf.reshape(out.shape), 1 / (1 + np.exp(-out)), atol=1e-5)  # predict's path runs the head
    export_checkpoint(run, tmp_path / "exp", formats=("onnx",))
    p_ort = OnnxRunner(tmp_path / "exp" / "model.onnx")(*x)
    assert np.mean((p_tf >= 0.5) == (p_ort >= 0.5)) >= 0.999

    seq = discover(synthetic_records / "raw" / "scene1")[0]
    summary = run_predict(seq.path, run, tmp_path / "pred", PredictOptions(threshold=0.5, overlay_video=False),
                          progress=False)
    masks = sorted((tmp_path / "pred").rglob("masks/*.png"))
    assert summary["sequences"][0]["frames"] == len(masks) > 0
    assert set(np.unique(read_image(masks[0]))) <= {0, 255}
