"""Exponential moving average of the model's weights (``TrainConfig.ema_decay``).

The average is what validation scores, what the best checkpoint and ``model.keras`` hold and what
inference uses; the optimizer keeps updating the raw weights. The decay ramps up as in
``tf.train.ExponentialMovingAverage`` with ``num_updates``: ``min(decay, (1 + t) / (10 + t))`` at
update ``t``, so a short run is not dominated by the random initial weights.

Swapping keeps one copy of each weight: ``swap()`` exchanges the model's values with the
averaged ones (a second ``swap()`` undoes it). Training checkpoints are written swapped, so a
checkpoint's ``model`` always holds the weights to infer with and its ``weight_average`` entry the
raw training weights; resuming restores, then swaps back.
"""
from __future__ import annotations

import contextlib

import tensorflow as tf


class WeightAverage(tf.Module):
    def __init__(self, variables, decay: float):
        super().__init__(name="weight_average")
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self._targets = list(variables)
        self.shadows = [tf.Variable(v, trainable=False, name=f"ema_{i}") for i, v in enumerate(self._targets)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")

    def update(self) -> None:
        """One averaging step; call after each optimizer update (inside tf.function is fine)."""
        t = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        for shadow, var in zip(self.shadows, self._targets):
            shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(var, shadow.dtype))
        self.updates.assign_add(1)

    def swap(self) -> None:
        for shadow, var in zip(self.shadows, self._targets):
            held = tf.identity(var)
            var.assign(shadow)
            shadow.assign(held)

    @contextlib.contextmanager
    def swapped(self):
        """The model holds the averaged weights inside the block, its raw weights after it."""
        self.swap()
        try:
            yield
        finally:
            self.swap()


@contextlib.contextmanager
def averaged(average: WeightAverage | None):
    """``average.swapped()``, or nothing when there is no average."""
    if average is None:
        yield
    else:
        with average.swapped():
            yield
