"""The HOFAM generator as a Keras 3 functional model (reference §4, model.py:L392-525).

Two encoders (frame ``g_e*``, HOP ``g_op*``) of 8 stride-2 convolutions; the bottleneck fusion
``fusion0``; seven decoder levels, each
    U = g_d{i}(lrelu(D)),  W = g_bn_attention{i}(g_attention{i}(lrelu(U))),
    S = fusion{i}(lrelu([E_j; O_j])),  D = [dropout(g_bn_d{i}(U)); sigmoid(W) * S]
and the output ``g_d8`` (7x7 transposed conv) giving one float32 logit channel. With
``ModelConfig.balanced_head`` (opt-in) that channel is ``main_logits`` and the model outputs the
``balanced_head``'s logits computed from it and lrelu(D) (``layers.BalancedHead``).
Layer names follow the original variable scopes so a TF1 checkpoint maps by name.
"""
from __future__ import annotations

import dataclasses

import keras

from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, TILE, ModelConfig, model_inputs
from hofam_tf.model.layers import BalancedHead, HOFAMDropout, SampleLayerNorm, ToSigned

ENCODER_KERNELS = (7, 7, 5, 5, 5, 5, 3, 3)
ENCODER_WIDTHS = (1, 2, 4, 8, 8, 8, 8, 16)  # x ngf
DECODER_KERNELS = (3, 3, 5, 5, 5, 5, 7)  # levels 1..7 (deconv, attention and fusion convs)
DECODER_WIDTHS = (8, 8, 8, 8, 4, 2, 1)  # x ngf
DROPOUT_LEVELS = (1, 2, 3)
MAIN_LOGITS = "main_logits"  # the class-in-scale head's layer when the balanced head is on


def _conv(filters, kernel, strides, name, dtype):
    # ops.py:L294-305: truncated normal std 0.02, zero bias, SAME padding.
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", name=name, dtype=dtype,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        bias_initializer="zeros")


def _deconv(filters, kernel, name, dtype):
    # ops.py:L307-330: normal (not truncated) std 0.02, zero bias, stride 2, SAME padding.
    return keras.layers.Conv2DTranspose(
        filters, kernel, strides=2, padding="same", name=name, dtype=dtype,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        bias_initializer="zeros")


def _lrelu(x, name, dtype):
    return keras.layers.LeakyReLU(negative_slope=0.2, name=name, dtype=dtype)(x)


def _encoder(x, prefix, bn_prefix, ngf, dtype):
    feats = []
    for k, (kernel, mult) in enumerate(zip(ENCODER_KERNELS, ENCODER_WIDTHS), start=1):
        if k > 1:
            x = _lrelu(x, f"{prefix}{k}_lrelu", dtype)
        x = _conv(ngf * mult, kernel, 2, f"{prefix}{k}_conv", dtype)(x)
        if k > 1:
            x = SampleLayerNorm(name=f"{bn_prefix}{k}", dtype=dtype)(x)
        feats.append(x)
    return feats


def build_hofam(cfg: ModelConfig | None = None, **overrides) -> "HOFAM":
    """Builds the generator. ``build_hofam(ngf=8, height=256, width=512)`` also works.

    Inputs: ``{"frame": [B,H,W,3], "hop": [B,H,W,3]}`` (and ``"background"`` [B,H,W,3] when
    ``reference``), uint8 or float bytes in [0, 255] (normalised to [-1, 1] inside). Output: float32 logits [B,H,W,1]; apply a sigmoid for
    probabilities. H and W are multiples of 256.
    """
    cfg = cfg or ModelConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return HOFAM(**dataclasses.asdict(cfg))


@keras.saving.register_keras_serializable(package="hofam_tf")
class HOFAM(keras.Model):
    """The generator as a Keras functional model that owns its configuration: ``model_config``
    is its ``ModelConfig`` and ``get_config()`` returns that config's fields, so a saved
    ``.keras`` file rebuilds the same model with nothing beside it (the way keras-hub's backbones
    are built). ``HOFAM(ngf=8)``: keyword arguments are ``ModelConfig`` fields."""

    def __init__(self, name: str = "hofam", trainable: bool = True, **model_fields):
        cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in model_fields.items()})
        inputs, logits, fusion_layers = _graph(cfg)
        super().__init__(inputs=inputs, outputs=logits, name=name, trainable=trainable)
        self.model_config = cfg
        if cfg.faithful_tf1:
            # Bug B1: the TF1 code selected trainable variables by the substring "g_", which the
            # fusion convolutions lack, so they kept their random initial values.
            for layer in fusion_layers:
                layer.trainable = False

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, **dataclasses.asdict(self.model_config)}

    @classmethod
    def from_config(cls, config: dict) -> "HOFAM":
        return cls(**config)


def _graph(cfg: ModelConfig):
    """(inputs, logits, fusion layers) of the generator described by ``cfg``."""
    ngf, dt = cfg.ngf, cfg.dtype
    frame_in = keras.Input((cfg.height, cfg.width, 3), name=FRAME_KEY)
    hop_in = keras.Input((cfg.height, cfg.width, 3), name=HOP_KEY)
    x = ToSigned(name="frame_scale", dtype=dt)(frame_in)
    background_in = None
    if cfg.reference:  # the background-reference variant: frame and background as six channels
        background_in = keras.Input((cfg.height, cfg.width, 3), name=BACKGROUND_KEY)
        b = ToSigned(name="background_scale", dtype=dt)(background_in)
        x = keras.layers.Concatenate(name="frame_background_concat", dtype=dt)([x, b])
    h = ToSigned(keep_channels=[0] if cfg.hop_channels == "r" else None, name="hop_scale", dtype=dt)(hop_in)

    enc = _encoder(x, "g_e", "g_bn_e", ngf, dt)
    opt = _encoder(h, "g_op", "g_bn_op", ngf, dt)

    fusion_layers = []
    f0 = keras.layers.Concatenate(name="fusion0_concat", dtype=dt)([enc[7], opt[7]])
    f0 = _lrelu(f0, "fusion0_lrelu", dt)
    conv = _conv(ngf * 16, 3, cfg.bottleneck_stride, "fusion0", dt)
    fusion_layers.append(conv)
    d = conv(f0)

    for i, (kernel, mult) in enumerate(zip(DECODER_KERNELS, DECODER_WIDTHS), start=1):
        j = 8 - i  # encoder level paired with decoder level i (E7 ... E1)
        u = _deconv(ngf * mult, kernel, f"g_d{i}", dt)(_lrelu(d, f"g_d{i}_lrelu", dt))
        w = _conv(ngf * mult, kernel, 1, f"g_attention{i}", dt)(_lrelu(u, f"g_attention{i}_lrelu", dt))
        w = SampleLayerNorm(name=f"g_bn_attention{i}", dtype=dt)(w)
        gate = keras.layers.Activation("sigmoid", name=f"g_attention{i}_sigmoid", dtype=dt)(w)
        skip = keras.layers.Concatenate(name=f"fusion{i}_concat", dtype=dt)([enc[j - 1], opt[j - 1]])
        skip = _lrelu(skip, f"fusion{i}_lrelu", dt)
        conv = _conv(ngf * mult, kernel, 1, f"fusion{i}", dt)
        fusion_layers.append(conv)
        s = conv(skip)
        un = SampleLayerNorm(name=f"g_bn_d{i}", dtype=dt)(u)
        if i in DROPOUT_LEVELS and cfg.dropout > 0:
            un = HOFAMDropout(cfg.dropout, always_on=cfg.faithful_tf1, name=f"g_d{i}_dropout", dtype=dt)(un)
        gated = keras.layers.Multiply(name=f"g_attention{i}_gate", dtype=dt)([gate, s])
        d = keras.layers.Concatenate(name=f"g_d{i}_concat", dtype=dt)([un, gated])

    features = _lrelu(d, "g_d8_lrelu", dt)
    out = _deconv(1, 7, "g_d8", dt)(features)
    if cfg.balanced_head:  # the main head's logits, then the balanced head's as the model's output
        main = keras.layers.Activation("linear", dtype="float32", name=MAIN_LOGITS)(out)
        out = BalancedHead(name="balanced_head", dtype="float32")([main, features])
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(out)
    return model_inputs(frame_in, hop_in, background_in), logits, fusion_layers


def tile_probabilities(model):
    """A tf.function: tile inputs ``{frame, hop}`` [B,256,256,3] -> foreground probabilities
    [B,256,256,1]. A model of another input size gets its inputs resized bilinearly and its
    probabilities resized back to the tile."""
    import tensorflow as tf

    size = tuple(model.inputs[0].shape[1:3])

    @tf.function(autograph=False)  # no tensor-valued Python control flow: traced as written
    def predict(x):
        if size == (TILE, TILE):
            return tf.sigmoid(model(x, training=False))
        x = {k: tf.image.resize(tf.cast(v, tf.float32), size) for k, v in x.items()}
        return tf.image.resize(tf.sigmoid(model(x, training=False)), (TILE, TILE))

    return predict


def count_params(model: keras.Model) -> dict[str, int]:
    """Total parameters and those of the fusion convolutions."""
    total = sum(int(w.numpy().size) for w in model.weights)
    fusion = sum(int(w.numpy().size) for l in model.layers if l.name.startswith("fusion") and l.weights
                 for w in l.weights)
    return {"total": total, "fusion": fusion}


def rebuild_with(model, cfg, **changes):
    """The same weights in a model built from ``cfg.model`` with ``changes`` (a dtype policy,
    ``hop_channels``, ``faithful_tf1``) -> (model, cfg). Raises ValueError when the weights do
    not fit the new model."""
    if all(getattr(cfg.model, k) == v for k, v in changes.items()):
        return model, cfg
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **changes))
    other = build_hofam(cfg.model)
    other.set_weights(model.get_weights())
    return other, cfg
