"""Custom Keras layers of HOFAM. All are serialisable; ``get_config`` returns exactly the
constructor arguments."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hofam_tf")
class SampleLayerNorm(keras.layers.Layer):
    """The original's ``batch_norm``, which is really ``tf.contrib.layers.layer_norm``
    (ops.py:L9-18): per-sample mean and variance over H, W and C, then a per-channel scale
    ``gamma`` [C] (init 1) and offset ``beta`` [C] (init 0); variance epsilon 1e-12.

    Not ``keras.layers.LayerNormalization(axis=[1, 2, 3])``, whose parameters are [H, W, C].
    Moments are computed in float32 even under a mixed-precision policy.
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean, var = ops.moments(x32, axes=[1, 2, 3], keepdims=True)
        y = (x32 - mean) * ops.rsqrt(var + self.epsilon)
        y = y * ops.cast(self.gamma, "float32") + ops.cast(self.beta, "float32")
        return ops.cast(y, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="hofam_tf")
class HOFAMDropout(keras.layers.Layer):
    """Dropout that is either ordinary (active only in training) or, with ``always_on``, active
    at inference too, as ``tf.nn.dropout`` was in the TF1 code (bug B4)."""

    def __init__(self, rate: float = 0.5, always_on: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.always_on = always_on
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if self.rate > 0 and (training or self.always_on):
            return keras.random.dropout(x, self.rate, seed=self.seed_generator)
        return x

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "always_on": self.always_on,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="hofam_tf")
class ToSigned(keras.layers.Layer):
    """Image bytes [0, 255] (uint8 or float) -> float [-1, 1] as x / 127.5 - 1 (model.py:L129).

    ``keep_channels`` (e.g. [0] for the original demo's red-only HOP) zeroes the bytes of every
    other channel *before* scaling, so they become -1, as the original's ``load_image1OP`` zeroed
    the image channels that ``load_data`` then normalised (utils.py:L108-133; our reading).
    """

    def __init__(self, keep_channels: list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.keep_channels = list(keep_channels) if keep_channels is not None else None

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.keep_channels is not None:
            channels = x.shape[-1]
            keep = [1.0 if c in self.keep_channels else 0.0 for c in range(channels)]
            x = x * ops.convert_to_tensor(keep, dtype=self.compute_dtype)
        return x / 127.5 - 1.0

    def get_config(self):
        return {**super().get_config(), "keep_channels": self.keep_channels}


@keras.saving.register_keras_serializable(package="hofam_tf")
class BalancedHead(keras.layers.Layer):
    """The balanced head of ``ModelConfig.balanced_head``: logits from [main logits, decoder
    features] (float32 [B,H,W,1] and [B,H/u,W/u,C], upsampled by ``upsample`` = u by repetition)
    with the gradients to both stopped, so it learns on top of the main head without changing it.

    z = conv3x3([z_main, f]) + dense(mean over H,W of [z_main, f]): a local term and a per-image
    term (the class-in-scale weights shift the main head's logits by an amount that depends on
    the size of the image's objects, an image-wide quantity). Initialised to z = z_main (the
    convolution's centre tap on z_main is 1, every other weight 0).
    """

    def __init__(self, upsample: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.upsample = upsample  # g_d8 has stride 2: the features are at half the output's size

    def build(self, input_shapes):
        channels = 1 + int(input_shapes[1][-1])

        def init(shape, dtype=None):
            k = ops.zeros(shape, dtype="float32")
            return ops.slice_update(k, (1, 1, 0, 0), ops.ones((1, 1, 1, 1), dtype="float32"))

        self.kernel = self.add_weight(name="kernel", shape=(3, 3, channels, 1), initializer=init)
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")
        self.global_kernel = self.add_weight(name="global_kernel", shape=(channels, 1), initializer="zeros")

    def call(self, inputs):
        z, f = inputs
        f = ops.cast(f, "float32")
        if self.upsample > 1:  # nearest neighbour
            f = ops.repeat(ops.repeat(f, self.upsample, axis=1), self.upsample, axis=2)
        x = ops.stop_gradient(ops.concatenate([ops.cast(z, "float32"), f], axis=-1))
        local = ops.conv(x, self.kernel, padding="same") + self.bias
        image = ops.matmul(ops.mean(x, axis=(1, 2)), self.global_kernel)  # [B, 1]
        return local + image[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "upsample": self.upsample}
