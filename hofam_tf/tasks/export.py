"""Export a trained HOFAM for serving.

``export_serving(model, out_dir)`` writes
    out_dir/saved_model/   a TF SavedModel (``keras.export.ExportArchive``) with two endpoints,
                           ``serve`` (float32 bytes in [0, 255]) and ``serve_uint8`` (uint8), each
                           taking ``frame`` and ``hop`` [B, H, W, 3] and returning the foreground
                           probability [B, H, W, 1] (float32). It loads with TensorFlow alone:
                           ``tf.saved_model.load(path).serve(frame, hop)``.
    out_dir/hofam_prob.keras  the same probability model as a Keras file (needs ``hofam_tf`` for
                           its custom layers).
    out_dir/model.onnx     with ``formats`` holding "onnx": the same probability graph as ONNX
                           (opset ``ONNX_OPSET``, inputs ``frame`` and ``hop`` float32 [B, H, W, 3]
                           in [0, 255], output the probability), converted by tf2onnx (the
                           ``onnx`` extra: ``pip install -e ".[onnx]"``); float32 only. It runs
                           in ONNX Runtime (``--phase=predict --runtime=onnxruntime``), TensorRT
                           or OpenVINO.
    out_dir/export.json    what was exported: the precision asked for, the dtype policy the
                           graph computes in, the checkpoint, the input size, the formats and the
                           endpoints.
    out_dir/config.json, out_dir/best.json
                           the run's configuration (the flow settings predict needs to make HOP
                           images) and its validated threshold, so that an export folder is
                           used like a run directory: ``--ckpt=out_dir``.
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

from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, model_inputs
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import atomic_path


def probability_model(model: keras.Model) -> keras.Model:
    """Wraps the logits model: same inputs, sigmoid probability out (float32)."""
    prob = keras.layers.Activation("sigmoid", dtype="float32", name="probability")(model.output)
    return keras.Model(model.input, prob, name="hofam_probability")


EXPORT_PRECISION = "float32"
EXPORT_META = "export.json"
FORMATS = ("saved_model", "onnx")
ONNX_NAME = "model.onnx"
ONNX_OPSET = 17
ONNX_EXTRA = 'pip install -e ".[onnx]"'


def format_arg(text: str) -> tuple[str, ...]:
    """--format: comma-separated names of ``FORMATS``."""
    names = tuple(dict.fromkeys(n for n in text.split(",") if n))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise HOFAMInputError(f"--format: unknown {unknown or text!r}; the formats are {', '.join(FORMATS)}")
    return names


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, precision: str = EXPORT_PRECISION,
                      model_overrides: dict | None = None, formats=("saved_model",)) -> dict:
    """Loads any supported checkpoint in ``precision`` ("float32" by default; "bfloat16" or
    "auto" only when asked for) and exports it in ``formats``; see ``export_serving``. The
    choice is written into ``export.json``; the run's ``config.json`` and threshold go beside it."""
    from hofam_tf.files import write_json
    from hofam_tf.model.checkpoints import BEST_NAME, CONFIG_NAME, load_for_inference, stored_threshold

    model, cfg = load_for_inference(ckpt, model_overrides, precision)
    threshold = stored_threshold(ckpt)
    info = export_serving(model, out_dir, meta={"checkpoint": str(ckpt), "precision": precision,
                                                "threshold": threshold}, formats=formats)
    out = Path(out_dir)
    cfg.save(out / CONFIG_NAME)
    write_json(out / BEST_NAME, {"threshold": threshold, "threshold_from": f"{ckpt} (validated threshold, "
                                 "else the default)"})
    return info


def layer_policy(model: keras.Model) -> str:
    """The dtype policy the model's weighted layers compute in (a functional model's own policy stays
    float32 whatever its layers use)."""
    names = {layer.dtype_policy.name for layer in model.layers if layer.weights}
    return names.pop() if len(names) == 1 else ",".join(sorted(names))


def export_serving(model: keras.Model, out_dir: str | Path, meta: dict | None = None,
                   formats=("saved_model",)) -> dict:
    """Writes the SavedModel and the probability .keras file ("saved_model" in ``formats``),
    ``model.onnx`` ("onnx") and ``export.json`` (``meta`` plus the model's dtype policy, input size,
    formats and endpoints) into ``out_dir``."""
    from hofam_tf.files import write_json

    formats = format_arg(",".join(formats))
    policy = layer_policy(model)
    if "onnx" in formats:
        if policy != "float32":
            raise HOFAMInputError(f"ONNX export is float32 only (the model computes in {policy}); "
                                  "leave --inference_precision unset or pass float32")
        _require_tf2onnx()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prob = probability_model(model)
    h, w = model.input[FRAME_KEY].shape[1:3]
    archive = keras.export.ExportArchive()
    archive.track(prob)

    names = [FRAME_KEY, HOP_KEY] + ([BACKGROUND_KEY] if BACKGROUND_KEY in model.input else [])

    def _endpoint(dtype):
        spec = [tf.TensorSpec([None, h, w, 3], dtype, name=n) for n in names]
        return tf.function(lambda *tensors: prob(model_inputs(*tensors), training=False), input_signature=spec)

    written = {}
    if "saved_model" in formats:
        archive.add_endpoint("serve", _endpoint(tf.float32))
        archive.add_endpoint("serve_uint8", _endpoint(tf.uint8))
        with atomic_path(out / "saved_model") as tmp:
            archive.write_out(str(tmp), verbose=False)
        with atomic_path(out / "hofam_prob.keras") as tmp:
            prob.save(tmp)
        written.update(saved_model=str(out / "saved_model"), keras=str(out / "hofam_prob.keras"))
    if "onnx" in formats:
        import tf2onnx

        fn = _endpoint(tf.float32)
        with atomic_path(out / ONNX_NAME) as tmp:
            tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=ONNX_OPSET,
                                          output_path=str(tmp))
        written["onnx"] = str(out / ONNX_NAME)
    info = {**(meta or {}), "dtype_policy": policy, "input_size": [int(h), int(w)], "formats": list(formats),
            "endpoints": {"serve": "float32 bytes in [0, 255]", "serve_uint8": "uint8"},
            "output": "foreground probability [B, H, W, 1], float32"}
    if "onnx" in formats:
        info["onnx"] = {"file": ONNX_NAME, "opset": ONNX_OPSET, "inputs": names,
                        "input": "float32 [B, H, W, 3] in [0, 255]"}
    write_json(out / EXPORT_META, info)
    return {**written, "metadata": str(out / EXPORT_META), "precision": info.get("precision", policy),
            "dtype_policy": policy}


def _require_tf2onnx() -> None:
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise HOFAMInputError(f"ONNX export needs tf2onnx, in the onnx extra: {ONNX_EXTRA}") from None
