"""Grappler options for the graphs HOFAM runs in.

Grappler's remapper fuses Conv2D + BiasAdd + LeakyRelu although the BiasAdd output has another
consumer: ``g_e1_conv`` and ``g_op1_conv`` (the two convs not followed by batch norm) feed both
the next level's LeakyReLU and a skip connection (``fusion7``), and in training LeakyReluGrad
reads it too. The fusion then fails on every HOFAM graph, training and inference, with an
alarming ``E0000 ... meta_optimizer.cc] remapper failed: INVALID_ARGUMENT: Mutation::Apply error``
line, and Grappler discards the remapper's whole result: the graphs run unfused either way.
``graph_options()`` turns the remapper off while a phase builds and first runs its graphs, so
nothing fails and nothing is printed (``python -m bench.bench_model --remapper on`` measures the
speed with it on, for comparison).
"""
from __future__ import annotations

import contextlib

HOFAM_GRAPPLER_OPTIONS = {"remapping": False}


@contextlib.contextmanager
def graph_options(options: dict | None = None):
    """Grappler ``options`` (default ``HOFAM_GRAPPLER_OPTIONS``) for the tf.functions first run
    inside; the previous options after (an option not set before goes back to on, Grappler's
    default). Usable as a decorator."""
    import tensorflow as tf

    options = HOFAM_GRAPPLER_OPTIONS if options is None else options
    before = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({k: before.get(k, True) for k in options})
