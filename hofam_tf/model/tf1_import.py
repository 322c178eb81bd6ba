"""Import the authors' TF 1.13 checkpoint (``tf.train.Saver`` format, e.g.
``checkpoint/checkpointmodel_1/ChangeDetection_256/pix2pix.model-N``) into the Keras model.

Every generator variable is mapped by name (reference §4.3 and §9.2):
    generator/<conv or deconv scope>/w, /biases  -> Conv2D / Conv2DTranspose kernel, bias
        (kernel layouts [kh, kw, in, out] and [kh, kw, out, in] are the same in Keras)
    generator/<g_bn_* scope>/beta, /gamma        -> SampleLayerNorm beta, gamma
        (also accepted with contrib's inner scope: <g_bn_*>/LayerNorm/beta)
Optimizer slots (``.../Adam``, ``.../Adam_1``), ``beta1_power``, ``beta2_power``, ``global_step``
and anything outside ``generator/`` are ignored. Every model weight must be filled exactly once and
every generator variable used; anything missing, extra or mis-shaped raises HOFAMInputError with
the names.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from hofam_tf.config import ModelConfig
from hofam_tf.errors import HOFAMInputError

PREFIX = "generator/"
_IGNORED = re.compile(r"(/Adam(_\d+)?$)|(^beta[12]_power)|(global_step)")


def read_tf1_variables(prefix: str | Path) -> dict[str, np.ndarray]:
    """Generator variables of a TF1 checkpoint (optimizer slots and counters dropped)."""
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        names = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError, IndexError, OSError) as err:
        raise HOFAMInputError(f"{prefix}: unreadable or truncated checkpoint ({str(err).splitlines()[0][:200]})") from None
    out = {}
    for name in names:
        if not name.startswith(PREFIX) or _IGNORED.search(name):
            continue
        try:
            out[name] = reader.get_tensor(name)
        except (tf.errors.OpError, IndexError, OSError) as err:
            raise HOFAMInputError(f"{prefix}: truncated checkpoint, cannot read {name} ({err})") from None
    if not out:
        raise HOFAMInputError(f"{prefix}: not a HOFAM checkpoint (no variable under 'generator/')")
    return out


def detect_ngf(variables: dict[str, np.ndarray], prefix="checkpoint") -> int:
    key = PREFIX + "g_e1_conv/w"
    if key not in variables:
        raise HOFAMInputError(f"{prefix}: not a HOFAM checkpoint (no {key})")
    return int(variables[key].shape[-1])


def _targets(model) -> dict[str, tuple]:
    """checkpoint name candidates -> (keras variable) for every model weight."""
    from hofam_tf.model.layers import SampleLayerNorm

    table = {}
    for layer in model.layers:
        if isinstance(layer, SampleLayerNorm):
            for attr in ("beta", "gamma"):
                names = (f"{PREFIX}{layer.name}/{attr}", f"{PREFIX}{layer.name}/LayerNorm/{attr}")
                table[names] = getattr(layer, attr)
        elif layer.weights and hasattr(layer, "kernel"):  # Conv2D and Conv2DTranspose
            table[(f"{PREFIX}{layer.name}/w",)] = layer.kernel
            table[(f"{PREFIX}{layer.name}/biases",)] = layer.bias
    return table


def assign_tf1_variables(model, variables: dict[str, np.ndarray], source: str = "checkpoint") -> None:
    """Copies TF1 generator variables into ``model``; strict about names and shapes."""
    used, missing, misshaped = set(), [], []
    targets = _targets(model)
    n_weights = len(model.weights)
    if len(targets) != n_weights:
        raise AssertionError(f"model has {n_weights} weights but {len(targets)} are mapped")
    for names, var in targets.items():
        found = [n for n in names if n in variables]
        if not found:
            missing.append(names[0])
            continue
        if len(found) > 1:
            misshaped.append(f"{names[0]} (stored twice: {found})")
            continue
        value = variables[found[0]]
        if tuple(value.shape) != tuple(var.shape):
            misshaped.append(f"{found[0]} {tuple(value.shape)} != model {tuple(var.shape)}")
            continue
        var.assign(value.astype(np.float32))
        used.add(found[0])
    extra = sorted(set(variables) - used)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {sorted(missing)}")
    if misshaped:
        problems.append(f"mis-shaped {len(misshaped)}: {misshaped}")
    if extra:
        problems.append(f"unused {len(extra)}: {extra}")
    if problems:
        raise HOFAMInputError(f"{source}: does not match the HOFAM generator: " + "; ".join(problems))


def load_tf1_checkpoint(prefix: str | Path, cfg: ModelConfig | None = None, **overrides):
    """Builds the Keras HOFAM and fills it from a TF1 checkpoint prefix. The width (ngf) is read
    from the checkpoint; a ``cfg`` with another ngf is an error. Without ``cfg``, a default
    ModelConfig of the checkpoint's width with ``overrides`` (e.g. hop_channels="r") is used;
    the model's ``model_config`` is the config used."""
    from hofam_tf.model.hofam import build_hofam

    variables = read_tf1_variables(prefix)
    ngf = detect_ngf(variables, str(prefix))
    cfg = cfg or ModelConfig(ngf=ngf, **overrides)
    if cfg.ngf != ngf:
        raise HOFAMInputError(f"{prefix}: checkpoint has width ngf={ngf}, the model asks for ngf={cfg.ngf}")
    model = build_hofam(cfg)
    assign_tf1_variables(model, variables, str(prefix))
    return model


def convert_tf1_checkpoint(prefix: str | Path, output_path: str | Path, cfg: ModelConfig | None = None,
                           **overrides) -> Path:
    """TF1 checkpoint -> native ``.keras`` file (written atomically)."""
    from hofam_tf.files import atomic_path

    output_path = Path(output_path)
    if output_path.suffix != ".keras":
        raise HOFAMInputError(f"{output_path}: the converted model must end in .keras")
    model = load_tf1_checkpoint(prefix, cfg, **overrides)
    with atomic_path(output_path) as tmp:
        model.save(tmp)
    return output_path
