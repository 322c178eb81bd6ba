"""Run directories and checkpoint resolution.

A run directory ``checkpoints/<run>/`` holds ``config.json``, ``ckpt/`` (tf.train.Checkpoint
files managed by ``tf.train.CheckpointManager``: a checkpoint becomes visible only once it is
complete), ``logs/`` (TensorBoard) and, after training, ``model.keras``.
When training validated (``--val_pattern``), ``best/`` and ``best.json`` hold the checkpoint with
the best validation F and its threshold; a run directory then loads that checkpoint (not the
latest) and its threshold is the default of test and predict. ``model.keras`` holds the same
weights.
``--ckpt`` may name a run directory, a checkpoint prefix inside one (``.../ckpt/ckpt-12``), a
``.keras`` file, or an original TF1 checkpoint prefix (``.../pix2pix.model-N``).
"""
from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from hofam_tf.config import STORAGE_DTYPE, RunConfig
from hofam_tf.errors import HOFAMInputError

CONFIG_NAME = "config.json"
CKPT_SUBDIR = "ckpt"
FINAL_MODEL = "model.keras"
BEST_SUBDIR = "best"
BEST_NAME = "best.json"
DEFAULT_THRESHOLD = 0.5


RELEASE_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "release"


def release_model() -> Path:
    """The run directory of the model shipped in ``checkpoints/release`` (README, "Release
    model"): ``config.json``, ``model.keras`` and ``best.json`` with its validated threshold."""
    if not (RELEASE_DIR / FINAL_MODEL).exists():
        raise HOFAMInputError(f"{RELEASE_DIR}: no release model in this copy; pass --ckpt")
    return RELEASE_DIR


def run_dir_of(ckpt: str | Path) -> Path:
    """The run directory a ``--ckpt`` value belongs to (itself, or the folder above a checkpoint
    prefix or a .keras file)."""
    path = Path(ckpt)
    if path.is_dir():
        return path
    if path.parent.name in (CKPT_SUBDIR, BEST_SUBDIR):
        return path.parent.parent
    return path.parent


def best_info(ckpt: str | Path) -> dict | None:
    """The run's ``best.json`` (best validation checkpoint and threshold), or None."""
    import json

    path = run_dir_of(ckpt) / BEST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HOFAMInputError(f"{path}: not valid JSON ({err})") from None


def stored_threshold(ckpt: str | Path) -> float:
    """The threshold chosen on validation when the run kept one, else ``DEFAULT_THRESHOLD``."""
    info = best_info(ckpt)
    return float(info["threshold"]) if info and "threshold" in info else DEFAULT_THRESHOLD


# The fields of predict's post-processing a run may record in best.json under "post", chosen on its
# validation scenes (bench/train_release.py); predict takes them as its defaults for that model.
POST_FIELDS = ("calibrate_frames", "median_gate", "gate_mode", "hysteresis", "calibrate_range", "adapt_steps")
# fields added after runs had recorded a "post", with the value those runs used
POST_FIELDS_LATER = {"hysteresis": 0.0, "calibrate_range": 0.0, "adapt_steps": 0}


def stored_post(ckpt: str | Path) -> dict:
    """The post-processing the run chose on its validation scenes (``POST_FIELDS`` of best.json's
    "post"; a field of ``POST_FIELDS_LATER`` a run did not record takes the value it used), or {}
    when it chose none."""
    info = best_info(ckpt) or {}
    post = {**POST_FIELDS_LATER, **(info.get("post") or {})} if info.get("post") else {}
    missing = [k for k in POST_FIELDS if k not in post]
    if post and missing:
        raise HOFAMInputError(f"{run_dir_of(ckpt) / BEST_NAME}: its \"post\" lacks {', '.join(missing)}")
    return {k: post[k] for k in POST_FIELDS} if post else {}


def make_checkpoint(model, optimizer=None, step=None, average=None) -> tf.train.Checkpoint:
    parts = {"model": model}
    if average is not None:
        parts["weight_average"] = average
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if step is not None:
        parts["step"] = step
    return tf.train.Checkpoint(**parts)


def _is_tf1_checkpoint(prefix: Path) -> bool:
    try:
        names = {n for n, _ in tf.train.list_variables(str(prefix))}
    except (tf.errors.OpError, ValueError, IndexError, OSError):
        return False
    return any(n.startswith("generator/") for n in names)


def load_for_inference(ckpt: str | Path, model_overrides: dict | None = None, precision: str | None = None):
    """Any supported checkpoint -> (keras.Model, RunConfig). Dropout off unless the run was
    configured faithful_tf1. ``precision`` ("auto", "float32", "bfloat16"; ``hofam_tf.model.precision``)
    sets the dtype policy the model runs in; None keeps the run's own. Raises HOFAMInputError for a missing or
    incompatible checkpoint."""
    from hofam_tf.model.precision import inference_dtype, with_dtype

    model, cfg = _load(ckpt, model_overrides)
    return (model, cfg) if precision is None else with_dtype(model, cfg, inference_dtype(precision))


def _load(ckpt: str | Path, model_overrides: dict | None = None):
    import dataclasses

    from hofam_tf.model.hofam import HOFAM, build_hofam

    path = Path(ckpt)
    overrides = model_overrides or {}
    if path.suffix == ".keras":
        if not path.is_file():
            raise HOFAMInputError(f"{path}: no such .keras file")
        cfg_path = path.parent / CONFIG_NAME  # the run's flow settings (and older files' model config)
        cfg = RunConfig.load(cfg_path) if cfg_path.exists() else RunConfig()
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as err:  # noqa: BLE001 - keras raises many types for bad files
            raise HOFAMInputError(f"{path}: cannot load Keras model ({err})") from None
        if isinstance(model, HOFAM):  # the model carries its own configuration
            if model.model_config.reference != bool(cfg.flow.reference_stride):
                raise HOFAMInputError(
                    f"{path}: {'a' if model.model_config.reference else 'no'} background-reference model, but "
                    f"{cfg_path if cfg_path.exists() else 'no ' + CONFIG_NAME + ' beside it'} gives reference_stride="
                    f"{cfg.flow.reference_stride} (the flow settings that make its inputs)")
            cfg = dataclasses.replace(cfg, model=model.model_config)
            if cfg.model.dtype == STORAGE_DTYPE:  # stored in half precision (save_half): computed in float32
                from hofam_tf.model.hofam import rebuild_with

                model, cfg = rebuild_with(model, cfg, dtype="float32")
        if overrides:  # --hop_channels / --faithful_tf1 apply to .keras files too: same weights, new graph
            from hofam_tf.model.hofam import rebuild_with

            try:
                model, cfg = rebuild_with(model, cfg, **overrides)
            except ValueError:
                raise HOFAMInputError(f"{path}: cannot apply {overrides}: the config.json beside it does not "
                                      "describe this model") from None
        return model, cfg
    if path.is_dir():
        cfg = RunConfig.load(path / CONFIG_NAME)
        info = best_info(path)
        best = str(path / info["checkpoint"]) if info and "checkpoint" in info else None
        if best and Path(best + ".index").exists():
            prefix = best  # the best validated checkpoint wins over the latest one
        else:
            prefix = tf.train.latest_checkpoint(str(path / CKPT_SUBDIR))
        if prefix is None:
            final = path / FINAL_MODEL
            if final.exists():
                return _load(final, overrides)
            raise HOFAMInputError(f"{path}: run directory has no checkpoint yet")
    else:
        prefix = str(path)
        if not Path(prefix + ".index").exists():
            raise HOFAMInputError(f"{path}: no checkpoint here (expected {path}.index, a run "
                                  "directory or a .keras file)")
        if _is_tf1_checkpoint(path):
            from hofam_tf.model.tf1_import import load_tf1_checkpoint

            model = load_tf1_checkpoint(path, **overrides)
            return model, RunConfig(model=model.model_config)
        run_dir = path.parent.parent if path.parent.name == CKPT_SUBDIR else path.parent
        cfg_path = run_dir / CONFIG_NAME
        cfg = RunConfig.load(cfg_path) if cfg_path.exists() else RunConfig()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **overrides))
    model = build_hofam(cfg.model)
    restore_weights(model, prefix)
    return model, cfg


def save_half(model, cfg, path: str | Path) -> None:
    """Saves ``model`` (a HOFAM built from ``cfg.model``) as a .keras file whose weights are stored
    in float16 (``config.STORAGE_DTYPE``), atomically: half the size of float32. Loading it
    (``load_for_inference``) rebuilds it in float32, or the precision asked for; the weights are
    the float32 ones rounded to the nearest float16."""
    from hofam_tf.files import atomic_path
    from hofam_tf.model.hofam import rebuild_with

    half, _ = rebuild_with(model, cfg, dtype=STORAGE_DTYPE)
    with atomic_path(Path(path)) as tmp:
        half.save(tmp)


def restore_weights(model, prefix: str) -> None:
    """Restores model weights from a tf.train.Checkpoint prefix; every model weight must match."""
    ckpt = tf.train.Checkpoint(model=model)
    try:
        status = ckpt.read(prefix)
        status.assert_existing_objects_matched()
        status.expect_partial()
    except (tf.errors.NotFoundError, tf.errors.DataLossError, IndexError, OSError) as err:
        raise HOFAMInputError(f"{prefix}: unreadable or truncated checkpoint ({str(err).splitlines()[0]})") from None
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as err:
        raise HOFAMInputError(
            f"{prefix}: checkpoint does not fit this model (other width or not HOFAM): "
            f"{str(err).splitlines()[0][:300]}") from None
