"""Frozen configuration objects with a JSON round trip.

The library only ever takes these objects; flags live in ``main.py`` and ``data_prep/*``.
A training run saves its ``RunConfig`` as ``checkpoints/<run>/config.json`` and the test and
predict phases read it back, so the phases cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hofam_tf.errors import HOFAMInputError

DIS_PRESET_NAMES = ("balanced", "ultrafast", "fast", "medium")
HOP_ENCODINGS = ("linear", "log")
# Default folders that connect the steps (relative to the working directory): merge.py writes
# composites, tfrecord.py turns them into records, main.py trains a run from those records.
DEFAULT_COMPOSITES_DIR = "data/composites"
DEFAULT_RECORDS_DIR = "data/tfrecords"
DEFAULT_RUN_DIR = "checkpoints/hofam"
TILE = 256  # side of each tile of the original composite layout (reference §2.1)


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """How the hierarchical optical flow (HOP) image is made.

    taus: frame intervals tau1 < tau2 < tau3. Channel R holds Op(tau3) (longest interval),
      G Op(tau2), B Op(tau1) (reference §2.2). Default (1, 5, 10): the ratios of the authors'
      demo HOP channels (R:G about 2, G:B about 5 before B's x3 gain) fit this set.
    estimator: "dis" (OpenCV DIS, default), "farneback", or "flo" (precomputed Middlebury files).
    dis_preset: "balanced" (default: OpenCV's ultrafast preset refined down to half resolution;
      3x faster than "medium" and as accurate on sub-pixel motion) | "ultrafast" | "fast" |
      "medium".
    scale: grey levels per pixel of displacement, measured on the 256x256 tile grid.
    gains: integer multiplier applied after rounding, per channel (R, G, B). The original's B
      channel holds only multiples of 3, so the default (1, 1, 3) reproduces that structure.
    encoding: how a displacement magnitude |F| (tile pixels) becomes a grey level.
      "log" (default, chosen on the leave-scenes-out benchmark): round(255 * log1p(scale * |F|) /
      log1p(scale * 64)), clipped at 255 (gains are not applied): sub-pixel motion of small, far
      objects gets many grey levels (0.5 px -> 59 at scale 6, against 3 for "linear") and near
      objects saturate only at 64 px.
      "linear" (the encoding of earlier versions, closest to the authors' demo files):
      gain * round(scale * |F|), clipped at 255.
    flo_pattern: for estimator "flo", the file name of the flow from frame T to frame T-tau,
      relative to the sequence's flow folder; ``{frame_id}`` and ``{tau}`` are filled in.
    """

    taus: tuple[int, ...] = (1, 5, 10)
    estimator: str = "dis"
    dis_preset: str = "balanced"
    scale: float = 6.0
    gains: tuple[int, ...] = (1, 1, 3)
    flo_pattern: str = "{frame_id}_tau{tau}.flo"
    encoding: str = "log"

    def __post_init__(self) -> None:
        if self.encoding not in HOP_ENCODINGS:
            raise HOFAMInputError(f"unknown HOP encoding {self.encoding!r} {HOP_ENCODINGS}")
        if not self.scale > 0:
            raise HOFAMInputError(f"HOP scale must be positive, got {self.scale}")
        taus = tuple(int(t) for t in self.taus)
        if len(taus) != 3 or any(t < 1 for t in taus) or list(taus) != sorted(set(taus)):
            raise HOFAMInputError(f"taus must be three increasing positive intervals, got {self.taus}")
        if self.estimator not in ("dis", "farneback", "flo"):
            raise HOFAMInputError(f"unknown flow estimator {self.estimator!r} (dis, farneback, flo)")
        if self.dis_preset not in DIS_PRESET_NAMES:
            raise HOFAMInputError(f"unknown DIS preset {self.dis_preset!r} {DIS_PRESET_NAMES}")
        if len(self.gains) != 3:
            raise HOFAMInputError(f"gains must have three values (R, G, B), got {self.gains}")
        object.__setattr__(self, "taus", taus)
        object.__setattr__(self, "gains", tuple(int(g) for g in self.gains))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The HOFAM generator.

    ngf: base width (the original's gf_dim, 64). height/width: input size, multiples of 256.
    faithful_tf1: reproduce the TF1 code's bugs B1 and B4: the fusion convolutions stay frozen
      at their random initial values and dropout stays on at inference. Default False (fusion
      convolutions train, no dropout at inference).
    hop_channels: "rgb" feeds all three HOP channels (the original's test phase); "r" keeps only
      Op(tau3) and zeroes G and B (the original's demo phase, bug B7).
    bottleneck_stride: 1 (default) or 2 (the original's fusion0); identical at 256x256.
    dtype: Keras dtype policy name: "float32", "mixed_bfloat16" or "mixed_float16".
    """

    ngf: int = 64
    height: int = TILE
    width: int = TILE
    faithful_tf1: bool = False
    hop_channels: str = "rgb"
    dropout: float = 0.5
    bottleneck_stride: int = 1
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.ngf < 1:
            raise HOFAMInputError(f"ngf must be positive, got {self.ngf}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value < TILE or value % TILE:
                raise HOFAMInputError(f"model {name} must be a positive multiple of 256, got {value}")
        if self.hop_channels not in ("rgb", "r"):
            raise HOFAMInputError(f"hop_channels must be 'rgb' or 'r', got {self.hop_channels!r}")
        if self.bottleneck_stride not in (1, 2):
            raise HOFAMInputError("bottleneck_stride must be 1 or 2")
        if self.bottleneck_stride == 2 and (self.height, self.width) != (TILE, TILE):
            raise HOFAMInputError("bottleneck_stride=2 (the original) only works at 256x256")
        if self.dtype not in ("float32", "mixed_bfloat16", "mixed_float16"):
            raise HOFAMInputError(f"unknown dtype policy {self.dtype!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The class-in-scale focal loss (see ``hofam_tf.losses``).

    mode: "cis" (default: size factor beta from instance sizes) or "tf1" (exactly what the TF1
      code computes: beta = 1, gamma = 0, probabilities clipped to [1e-7, 1 - 1e-7]).
    ignore_labels: exclude CDnet 85 (outside ROI) and 170 (unknown) pixels from the loss.
      The original counted them as background (bug B18); set False to reproduce.
    """

    mode: str = "cis"
    alpha: float = 0.75
    gamma: float = 0.0
    l1_weight: float = 0.2
    focal_weight: float = 0.8
    beta_cap: float = 50.0
    beta_divisor: float = 4.0
    ignore_labels: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("cis", "tf1"):
            raise HOFAMInputError(f"loss mode must be 'cis' or 'tf1', got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation in the tf.data pipeline (``hofam_tf.augment``), seeded by
    ``TrainConfig.seed``. On by default: without it HOFAM memorises its training scenes.

    Geometry (frame, HOP and labels alike): a random square crop whose side is a fraction in
    [min_crop, 1] of the tile, resized back to the tile (labels with nearest neighbour), and a
    horizontal flip with probability ``flip``. Zooming in by 1/s makes objects and their motion
    1/s times larger, so the HOP values are multiplied by 1/s too ("zoom-consistent").
    Frame only: brightness shift (+-brightness of the range), contrast factor in
    [1-contrast, 1+contrast], per-channel colour gain in [1-colour, 1+colour], greyscale with
    probability ``grey``, Gaussian noise of std up to ``noise`` (fraction of the range), and a
    3x3 blur with probability ``blur``.
    HOP only: a gain drawn log-uniformly in [1/hop_gain, hop_gain] (how far an object moves per
    frame depends on the scene), applied to every channel, then clipped to 255.
    frame_drop: probability that an example's frame is replaced by uniform random noise, so the
    model must find the foreground from the motion alone and cannot lean on memorised scene
    looks (noise rather than a flat frame: a constant input makes the layer norm's gradients
    explode).
    """

    enabled: bool = True
    min_crop: float = 0.6
    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.3
    colour: float = 0.1
    grey: float = 0.1
    noise: float = 0.03
    blur: float = 0.2
    hop_gain: float = 2.0
    frame_drop: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.min_crop <= 1:
            raise HOFAMInputError(f"augment min_crop must be in (0, 1], got {self.min_crop}")
        if self.hop_gain < 1:
            raise HOFAMInputError(f"augment hop_gain must be >= 1, got {self.hop_gain}")
        for name in ("flip", "grey", "blur", "frame_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise HOFAMInputError(f"augment {name} is a probability, got {getattr(self, name)}")
        for name in ("brightness", "contrast", "colour", "noise"):
            if not 0 <= getattr(self, name) <= 1:
                raise HOFAMInputError(f"augment {name} must be in [0, 1], got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule. Defaults are the original's (reference §6): Adam 5e-4, beta1 0.95,
    epsilon 1e-8, batch 1, 64,000 updates, shuffle seed 12138.

    val_pattern: TFRecords of scenes kept out of training; when set, the F-measure on them is
      computed every ``val_every`` steps (``hofam_tf.validation``), written to TensorBoard, and the
      best checkpoint and its threshold are kept (``best.json``). early_stop: stop after this many
      validations without improvement (0: never).
    steps_per_loop: updates run inside one tf.function call (a device-side loop, no Python
      between them); logging, NaN checks, validation and checkpoints happen at loop boundaries,
      which always fall on their exact steps (a loop ends early at the next event).
    ema_decay: keep an exponential moving average of the weights with this decay
      (``hofam_tf.weight_average``) and validate, save and infer with it; 0 (default) turns it off.
    """

    train_pattern: str = ""
    steps: int = 64000
    batch_size: int = 1
    learning_rate: float = 5e-4
    beta1: float = 0.95
    beta2: float = 0.999
    epsilon: float = 1e-8
    shuffle_buffer: int = 2000
    seed: int = 12138
    ckpt_every: int = 2000
    keep_ckpts: int = 5
    log_every: int = 100
    image_every: int = 1000
    xla: bool = False
    val_pattern: str = ""
    val_every: int = 500
    early_stop: int = 0
    steps_per_loop: int = 20
    ema_decay: float = 0.0


    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "ckpt_every", "keep_ckpts", "log_every", "val_every", "steps_per_loop"):
            if getattr(self, name) < 1:
                raise HOFAMInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("image_every", "early_stop", "shuffle_buffer"):
            if getattr(self, name) < 0:
                raise HOFAMInputError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise HOFAMInputError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.ema_decay < 1:
            raise HOFAMInputError(f"ema_decay must be in [0, 1) (0: no weight average), got {self.ema_decay}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run directory needs to rebuild its model and its input pipeline."""

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    flow: FlowConfig = FlowConfig()
    augment: AugmentConfig = AugmentConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        parts = {}
        for field in dataclasses.fields(cls):
            sub_cls = field.type if isinstance(field.type, type) else globals()[field.type]
            known = {f.name for f in dataclasses.fields(sub_cls)}
            values = data.get(field.name, {})
            unknown = set(values) - known
            if unknown:
                raise HOFAMInputError(f"config section {field.name!r} has unknown keys {sorted(unknown)}")
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            parts[field.name] = sub_cls(**values)
        return cls(**parts)

    def save(self, path: str | Path) -> None:
        from hofam_tf.files import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HOFAMInputError(f"{path}: no config.json (is this a run directory?)") from None
        except json.JSONDecodeError as err:
            raise HOFAMInputError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data)
