"""Export a trained HOFAM for serving.

``export_serving(model, out_dir)`` writes
    out_dir/saved_model/   a TF SavedModel (``keras.export.ExportArchive``) with two endpoints,
                           ``serve`` (float32 bytes in [0, 255]) and ``serve_uint8`` (uint8), each
                           taking ``frame`` and ``hop`` [B, H, W, 3] and returning the foreground
                           probability [B, H, W, 1] (float32). It loads with TensorFlow alone:
                           ``tf.saved_model.load(path).serve(frame, hop)``.
    out_dir/hofam_prob.keras  the same probability model as a Keras file (needs ``hofam_tf`` for
                           its custom layers).
Both are written under temporary names and renamed when complete.
"""
from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from hofam_tf.config import FRAME_KEY, HOP_KEY, model_inputs
from hofam_tf.files import atomic_path


def probability_model(model: keras.Model) -> keras.Model:
    """Wraps the logits model: same inputs, sigmoid probability out (float32)."""
    prob = keras.layers.Activation("sigmoid", dtype="float32", name="probability")(model.output)
    return keras.Model(model.input, prob, name="hofam_probability")


def export_serving(model: keras.Model, out_dir: str | Path) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prob = probability_model(model)
    h, w = model.input[FRAME_KEY].shape[1:3]
    archive = keras.export.ExportArchive()
    archive.track(prob)

    def _endpoint(dtype):
        spec = [tf.TensorSpec([None, h, w, 3], dtype, name=FRAME_KEY), tf.TensorSpec([None, h, w, 3], dtype, name=HOP_KEY)]

        def fn(frame, hop):
            return prob(model_inputs(frame, hop), training=False)

        return tf.function(fn, input_signature=spec)

    archive.add_endpoint("serve", _endpoint(tf.float32))
    archive.add_endpoint("serve_uint8", _endpoint(tf.uint8))
    with atomic_path(out / "saved_model") as tmp:
        archive.write_out(str(tmp), verbose=False)
    with atomic_path(out / "hofam_prob.keras") as tmp:
        prob.save(tmp)
    return {"saved_model": str(out / "saved_model"), "keras": str(out / "hofam_prob.keras")}
