"""The original TF1 checkpoint import, checked against an independent tf.compat.v1 implementation
of the original generator equations (raw tf.nn ops in a graph, variables made with get_variable)."""
import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.model.checkpoints import load_for_inference
from hofam_tf.errors import HOFAMInputError
from hofam_tf.model.tf1_import import convert_tf1_checkpoint, load_tf1_checkpoint

NGF = 4
ENC = [(2, 7, 2), (3, 5, 4), (4, 5, 8), (5, 5, 8), (6, 5, 8), (7, 3, 8), (8, 3, 16)]  # level, kernel, xngf
DEC = [(1, 3, 8), (2, 3, 8), (3, 5, 8), (4, 5, 8), (5, 5, 4), (6, 5, 2), (7, 7, 1)]


def _tf1_generator(x, h, ngf, rng, skip=(), extra=()):
    v1 = tf.compat.v1

    def get(name, shape, kind):
        if name in skip:
            return tf.zeros(shape)
        if kind == "w":
            fan_in = np.prod(shape[:2]) * (shape[2] if len(shape) == 4 else 1)
            val = rng.normal(0, 1.0 / np.sqrt(fan_in), shape)
        elif kind == "gamma":
            val = 1 + 0.2 * rng.normal(size=shape)
        else:
            val = 0.1 * rng.normal(size=shape)
        return v1.get_variable(name, shape, initializer=v1.constant_initializer(val.astype(np.float32)))

    def conv(t, out, k, s, name):
        with v1.variable_scope(name):
            w = get("w", [k, k, int(t.shape[-1]), out], "w")
            b = get("biases", [out], "b")
        return tf.nn.bias_add(tf.nn.conv2d(t, w, [1, s, s, 1], "SAME"), b)

    def deconv(t, out, k, name):
        n, hh, ww, cin = (int(d) for d in t.shape)
        with v1.variable_scope(name):
            w = get("w", [k, k, out, cin], "w")
            b = get("biases", [out], "b")
        return tf.nn.bias_add(tf.nn.conv2d_transpose(t, w, [n, 2 * hh, 2 * ww, out], [1, 2, 2, 1], "SAME"), b)

    def ln(t, name):
        c = int(t.shape[-1])
        with v1.variable_scope(name):
            beta, gamma = get("beta", [c], "beta"), get("gamma", [c], "gamma")
        mean, var = tf.nn.moments(t, [1, 2, 3], keepdims=True)
        return (t - mean) * tf.math.rsqrt(var + 1e-12) * gamma + beta

    def lrelu(t):
        return tf.maximum(t, 0.2 * t)

    with v1.variable_scope("generator"):
        e, o = [conv(x, ngf, 7, 2, "g_e1_conv")], [conv(h, ngf, 7, 2, "g_op1_conv")]
        for k, ker, m in ENC:
            e.append(ln(conv(lrelu(e[-1]), ngf * m, ker, 2, f"g_e{k}_conv"), f"g_bn_e{k}"))
            o.append(ln(conv(lrelu(o[-1]), ngf * m, ker, 2, f"g_op{k}_conv"), f"g_bn_op{k}"))
        d = conv(lrelu(tf.concat([e[7], o[7]], 3)), ngf * 16, 3, 2, "fusion0")  # stride 2 as in TF1
        for i, ker, m in DEC:
            u = deconv(lrelu(d), ngf * m, ker, f"g_d{i}")
            gate = ln(conv(lrelu(u), ngf * m, ker, 1, f"g_attention{i}"), f"g_bn_attention{i}")
            skip_ = conv(lrelu(tf.concat([e[7 - i], o[7 - i]], 3)), ngf * m, ker, 1, f"fusion{i}")
            d = tf.concat([ln(u, f"g_bn_d{i}"), tf.sigmoid(gate) * skip_], 3)
        out = deconv(lrelu(d), 1, 7, "g_d8")
        for name, shape in extra:
            v1.get_variable(name, shape)
    # things the importer must ignore
    v1.get_variable("generator/g_e1_conv/w/Adam", [7, 7, 3, ngf])
    v1.get_variable("beta1_power", [])
    v1.train.get_or_create_global_step()
    return out


def _make_checkpoint(folder, frame, hop, skip=(), extra=()):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 256, 256, 3])
        h = tf.compat.v1.placeholder(tf.float32, [1, 256, 256, 3])
        out = _tf1_generator(x, h, NGF, np.random.default_rng(0), skip, extra)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            z = sess.run(out, {x: frame / 127.5 - 1, h: hop / 127.5 - 1})
            folder.mkdir(parents=True, exist_ok=True)
            prefix = saver.save(sess, str(folder / "pix2pix.model"), global_step=499)
    return prefix, z


@pytest.fixture(scope="module")
def tf1_ckpt(tmp_path_factory):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (1, 256, 256, 3)).astype(np.float32)
    hop = rng.integers(0, 256, (1, 256, 256, 3)).astype(np.float32)
    folder = tmp_path_factory.mktemp("tf1") / "checkpoint" / "checkpointmodel_1" / "ChangeDetection_256"
    prefix, z = _make_checkpoint(folder, frame, hop)
    return {"prefix": prefix, "z": z, "frame": frame, "hop": hop}


def test_keras_forward_equals_the_tf1_equations(tf1_ckpt):
    assert tf1_ckpt["prefix"].endswith("pix2pix.model-499")
    model, cfg = load_for_inference(tf1_ckpt["prefix"])
    assert cfg.model.ngf == NGF
    z = np.asarray(model({"frame": tf1_ckpt["frame"].astype(np.uint8), "hop": tf1_ckpt["hop"].astype(np.uint8)},
                         training=False))
    assert np.abs(tf1_ckpt["z"]).max() > 0.1  # not a degenerate comparison
    assert np.abs(z - tf1_ckpt["z"]).max() < 1e-4


def test_convert_to_keras_file(tf1_ckpt, tmp_path):
    path = convert_tf1_checkpoint(tf1_ckpt["prefix"], tmp_path / "hofam.keras")
    model, _ = load_for_inference(path)
    z = np.asarray(model({"frame": tf1_ckpt["frame"], "hop": tf1_ckpt["hop"]}))
    assert np.abs(z - tf1_ckpt["z"]).max() < 1e-4



def test_converted_keras_file_carries_its_config(tf1_ckpt, tmp_path):
    """No config.json beside the file: the model's own config gives its width, and an inference
    override (red HOP channel only) rebuilds it with the file's weights."""
    path = convert_tf1_checkpoint(tf1_ckpt["prefix"], tmp_path / "hofam.keras")
    assert not (tmp_path / "config.json").exists()
    model, cfg = load_for_inference(path, {"hop_channels": "r"})
    assert cfg.model.ngf == NGF and cfg.model.hop_channels == "r" and model.model_config == cfg.model
    red_only = tf1_ckpt["hop"].copy()
    red_only[..., 1:] = 0
    full, _ = load_for_inference(path)
    z_r = np.asarray(model({"frame": tf1_ckpt["frame"], "hop": tf1_ckpt["hop"]}))
    z_ref = np.asarray(full({"frame": tf1_ckpt["frame"], "hop": red_only}))
    np.testing.assert_allclose(z_r, z_ref, atol=1e-5)


def test_missing_extra_and_misshaped_variables_are_listed(tmp_path):
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (1, 256, 256, 3)).astype(np.float32)
    prefix, _ = _make_checkpoint(tmp_path / "a", frame, frame, skip=("biases",), extra=[("g_bn_e9/beta", [3])])
    with pytest.raises(HOFAMInputError) as err:
        load_tf1_checkpoint(prefix)
    msg = str(err.value)
    assert "pix2pix.model-499" in msg and "generator/g_e1_conv/biases" in msg and "missing" in msg
    assert "unused 1: ['generator/g_bn_e9/beta']" in msg
    from hofam_tf.config import ModelConfig

    good, _ = _make_checkpoint(tmp_path / "b", frame, frame)
    with pytest.raises(HOFAMInputError, match="ngf=4, the model asks for ngf=8"):
        load_tf1_checkpoint(good, ModelConfig(ngf=8))
    # a TF2 checkpoint of something else is "not HOFAM"
    other = tf.train.Checkpoint(v=tf.Variable([1.0]))
    p = other.write(str(tmp_path / "other" / "ck"))
    with pytest.raises(HOFAMInputError):
        load_for_inference(p)
