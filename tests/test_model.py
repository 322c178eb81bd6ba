import numpy as np
import pytest
import keras

from hofam_tf.config import ModelConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.model.layers import HOFAMDropout, SampleLayerNorm, ToSigned
from hofam_tf.model.hofam import build_hofam, count_params


def _inputs(b=2, h=256, w=256, seed=0):
    rng = np.random.default_rng(seed)
    return {"frame": rng.integers(0, 256, (b, h, w, 3)).astype(np.uint8),
            "hop": rng.integers(0, 256, (b, h, w, 3)).astype(np.uint8)}


def test_parameter_count_at_default_width_and_faithful_trainables():
    model = build_hofam(ModelConfig(ngf=64, faithful_tf1=True))
    counts = count_params(model)
    assert counts == {"total": 173_173_697, "fusion": 59_026_880}
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 173_173_697 - 59_026_880  # the TF1 code only trained "g_" variables
    names = {l.name for l in model.layers}
    for n in ("g_e3_conv", "g_op3_conv", "g_bn_e3", "g_bn_op8", "g_d4", "g_bn_d4", "g_attention4",
              "g_bn_attention4", "fusion0", "fusion4", "g_d8"):
        assert n in names


@pytest.mark.parametrize("h,w", [(256, 256), (512, 256)])
def test_shapes_at_other_widths_and_sizes(h, w):
    model = build_hofam(ngf=4, height=h, width=w)
    y = model(_inputs(2, h, w))
    assert tuple(y.shape) == (2, h, w, 1) and keras.backend.standardize_dtype(y.dtype) == "float32"
    assert model.get_layer("g_e8_conv").output.shape[1:3] == (h // 256, w // 256)


def test_unsupported_size_is_a_clear_error():
    with pytest.raises(HOFAMInputError, match="multiple of 256"):
        ModelConfig(height=300)


def test_sample_layer_norm_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 4)).astype(np.float32) * 3 + 1
    layer = SampleLayerNorm()
    layer.build(x.shape)
    gamma, beta = rng.normal(size=4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    layer.set_weights([beta, gamma])
    assert layer.gamma.shape == (4,)  # per channel, not [H, W, C]
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-12) * gamma + beta
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_custom_layers_config_round_trip():
    for layer in (SampleLayerNorm(epsilon=1e-6, name="n"), HOFAMDropout(0.3, always_on=True, seed=4, name="d"),
                  ToSigned(keep_channels=[0], name="t")):
        cfg = layer.get_config()
        again = type(layer).from_config(cfg)
        assert again.get_config() == cfg


def test_save_and_load_round_trip_exactly(tmp_path):
    model = build_hofam(ngf=4)
    x = _inputs(1)
    ref = np.asarray(model(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(loaded(x)), ref)
    model.save_weights(tmp_path / "m.weights.h5")
    other = build_hofam(ngf=4)
    other.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(np.asarray(other(x)), ref)


def test_dropout_and_fusion_switch():
    x = _inputs(1)
    default = build_hofam(ngf=4)
    np.testing.assert_array_equal(np.asarray(default(x)), np.asarray(default(x)))  # no dropout at inference
    assert all(default.get_layer(f"fusion{i}").trainable for i in range(8))
    faithful = build_hofam(ngf=4, faithful_tf1=True)
    assert not any(faithful.get_layer(f"fusion{i}").trainable for i in range(8))
    assert not np.array_equal(np.asarray(faithful(x)), np.asarray(faithful(x)))  # dropout on (bug B4)


def test_red_only_hop_equals_zeroed_green_and_blue():
    full = build_hofam(ngf=4)
    red = build_hofam(ngf=4, hop_channels="r")
    red.set_weights(full.get_weights())
    x = _inputs(1)
    zeroed = dict(x, hop=x["hop"] * np.array([1, 0, 0], np.uint8))
    np.testing.assert_allclose(np.asarray(red(x)), np.asarray(full(zeroed)), atol=1e-6)
    assert not np.allclose(np.asarray(full(x)), np.asarray(full(zeroed)))
