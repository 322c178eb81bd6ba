"""Export a trained HOFAM for serving.

``export_serving(model, out_dir)`` writes
    out_dir/saved_model/   a TF SavedModel (``keras.export.ExportArchive``) with two endpoints,
                           ``serve`` (float32 bytes in [0, 255]) and ``serve_uint8`` (uint8), each
                           taking ``frame`` and ``hop`` [B, H, W, 3] and returning the foreground
                           probability [B, H, W, 1] (float32). It loads with TensorFlow alone:
                           ``tf.saved_model.load(path).serve(frame, hop)``.
    out_dir/hofam_prob.keras  the same probability model as a Keras file (needs ``hofam_tf`` for
                           its custom layers).
    out_dir/export.json    what was exported: the precision asked for, the dtype policy the
                           graph computes in, the checkpoint, the input size and the endpoints.
All are written under temporary names and renamed when complete.

A serving artefact must not depend on the CPU that exported it: ``export_checkpoint`` exports
float32 by default (``EXPORT_PRECISION``), whatever the host. bfloat16 (``precision="bfloat16"``,
or ``"auto"``, which picks it on a host with AVX512-BF16 / AMX) puts bf16 casts and constants
into the SavedModel, which some converters (OpenVINO) refuse and CPUs without bf16 run slowly.
``--phase=test`` and ``--phase=predict`` keep ``auto``: they run where they are launched.
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


EXPORT_PRECISION = "float32"
EXPORT_META = "export.json"


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, precision: str = EXPORT_PRECISION,
                      model_overrides: dict | None = None) -> dict:
    """Loads any supported checkpoint in ``precision`` ("float32" by default; "bfloat16" or
    "auto" only when asked for) and exports it; see ``export_serving``. The choice is written
    into ``export.json``."""
    from hofam_tf.model.checkpoints import load_for_inference

    model, _ = load_for_inference(ckpt, model_overrides, precision)
    return export_serving(model, out_dir, meta={"checkpoint": str(ckpt), "precision": precision})


def layer_policy(model: keras.Model) -> str:
    """The dtype policy the model's weighted layers compute in (a functional model's own policy stays
    float32 whatever its layers use)."""
    names = {layer.dtype_policy.name for layer in model.layers if layer.weights}
    return names.pop() if len(names) == 1 else ",".join(sorted(names))


def export_serving(model: keras.Model, out_dir: str | Path, meta: dict | None = None) -> dict:
    """Writes the SavedModel, the probability .keras file and ``export.json`` (``meta`` plus the
    model's dtype policy, input size and endpoints) into ``out_dir``."""
    from hofam_tf.files import write_json

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
    info = {**(meta or {}), "dtype_policy": layer_policy(model), "input_size": [int(h), int(w)],
            "endpoints": {"serve": "float32 bytes in [0, 255]", "serve_uint8": "uint8"},
            "output": "foreground probability [B, H, W, 1], float32"}
    write_json(out / EXPORT_META, info)
    return {"saved_model": str(out / "saved_model"), "keras": str(out / "hofam_prob.keras"),
            "metadata": str(out / EXPORT_META), "precision": info.get("precision", info["dtype_policy"]),
            "dtype_policy": info["dtype_policy"]}
