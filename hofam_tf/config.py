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
HOP_SCALINGS = ("motion", "grey")  # AugmentConfig.hop_scaling
LR_SCHEDULES = ("constant", "cosine")  # TrainConfig.lr_schedule
FLOW_ESTIMATORS = ("dis", "farneback", "flo")
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# a model.keras whose weights are stored in half precision (``checkpoints.save_half``); never a policy
# a model trains or runs in: loading rebuilds it in float32
STORAGE_DTYPE = "float16"
# Default folders that connect the steps (relative to the working directory): merge.py writes
# composites, tfrecord.py turns them into records, main.py trains a run from those records.
DEFAULT_COMPOSITES_DIR = "data/composites"
DEFAULT_RECORDS_DIR = "data/tfrecords"
DEFAULT_RUN_DIR = "checkpoints/hofam"
TILE = 256  # side of each tile of the original composite layout (reference §2.1)
# The model's inputs; decoded examples and prediction batches use the same keys. The background
# reference is the third input of the opt-in variant (ModelConfig.reference) only.
FRAME_KEY = "frame"
HOP_KEY = "hop"
BACKGROUND_KEY = "background"


def model_inputs(frame, hop, background=None) -> dict:
    """The input dict of the HOFAM model (with ``background`` for the background-reference variant)."""
    out = {FRAME_KEY: frame, HOP_KEY: hop}
    if background is not None:
        out[BACKGROUND_KEY] = background
    return out


def section_from_dict(cls, values: dict[str, Any]):
    """One config section from its JSON form (lists become tuples). A recorded section lacking a
    field of the class's ``ABSENT_MEANS`` was made before that field existed and gets the value
    listed there; an empty section means the defaults. A whole number given for a float field
    (JSON ``12``) becomes a float."""
    if values:
        values = {**getattr(cls, "ABSENT_MEANS", {}), **values}
    floats = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, float)}

    def value(k, v):
        if isinstance(v, list):
            return tuple(v)
        if k in floats and isinstance(v, int) and not isinstance(v, bool):
            return float(v)  # JSON writes 12 for 12.0; TF ops want the field's float
        return v

    return cls(**{k: value(k, v) for k, v in values.items()})


def option(default, help: str, flag: str | None = None, choices: tuple | None = None, derived: bool = False):
    """A config field with its command-line face: the flag's help, its name when it is not the
    field's own, and its allowed values. ``hofam_tf.config_flags`` turns every field into a flag,
    except a ``derived`` one, which ``RunConfig`` sets from another field."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "choices": choices,
                                                        "derived": derived})


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """How the hierarchical optical flow (HOP) image is made.

    taus: frame intervals tau1 < tau2 < tau3. Channel R holds Op(tau3) (longest interval),
      G Op(tau2), B Op(tau1) (reference §2.2). Default (1, 5, 10): the ratios of the authors'
      demo HOP channels (R:G about 2, G:B about 5 before B's x3 gain) fit this set.
    estimator: "dis" (OpenCV DIS, default), "farneback", or "flo" (precomputed Middlebury files).
    dis_preset: "medium" (default, with reverse_check chosen on the leave-scenes-out benchmark) |
      "balanced" (OpenCV's ultrafast preset refined down to half resolution; 3x faster than
      "medium" and as accurate on sub-pixel motion of a textured object, the default of earlier
      versions) | "ultrafast" | "fast".
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
    reverse_check: (default True, chosen on the leave-scenes-out benchmark with the "medium"
      preset) keep only motion that the reverse flow confirms. For frame T, interval tau and
      pixel x, the encoded magnitude becomes min(|F(x)|, |R(x + F(x))|), where F is the flow from T
      to T-tau and R the flow from T-tau back to T (the forward flow keeps its direction). A moving
      object's pixels have a large flow both ways; background that the object uncovered has no true
      match in frame T-tau, so its forward flow is large but the reverse flow where it points is
      small, and the trail behind fast objects vanishes. Twice the flow computations. Always False
      with estimator "flo" (the flow files hold one direction).
    change_gate: (grey levels; 0 = off) keep motion only where the frame changed. For frame T,
      r(x) is the largest over the three intervals of the 5x5 mean of |gray_T - gray_(T-tau)| (256
      tiles, 0-255); every flow at x is multiplied by clip(r(x) / change_gate - 1, 0, 1): kept
      whole where some interval changed the pixel by 2 x change_gate or more, dropped where none
      changed it by more than change_gate. Flow smeared by the estimator onto plain background
      next to a moving object (halos), and flow noise on still background, vanish; an object's
      own pixels change against at least one earlier frame and keep their motion. Always 0 with
      estimator "flo" (recorded as not applied).
    background_stride: (frames; 0 = off, the original's HOP) when set, channel B holds a
      background difference instead of Op(tau1): |gray_T - median(gray_(T-k*stride), k = 1 ..
      background_frames)| in grey levels (256 tiles, clipped at 255). Motion shows where an object
      moves, and optical flow smears it onto the background around the object (halos) and misses
      the inside of plain surfaces; the difference from a median of earlier frames shows where the
      frame differs from the scene without the object, outline and inside, but also whatever
      changed for good (and nothing of an object that stays still longer than about half the
      span). Frames before the first one clamp to it, so the first frame's difference is zero. The
      flow of tau1 is then not computed.
    background_frames: how many earlier frames the median takes (odd, so the median is a frame's
      grey level); the span is background_stride x background_frames frames.
    reference_stride: (frames; 0 = off, the default and the original's inputs) when set, every
      frame also gets a background reference: the per-pixel median RGB of ``background_frames``
      earlier frames this many frames apart (256 tiles; frames before the first clamp to it). The
      composites get it as a fourth tile, the TFRecords as ``img_background``, and the model takes
      it as a third input beside the frame (``ModelConfig.reference``, set from this field by
      ``RunConfig``): the HOP stays as it is, and the frame encoder sees frame and background
      together, so it can tell what differs from the scene without the object, inside plain
      surfaces too, where optical flow has little to hold on to.
    reference_spread: (default False, the reference of 0.5-0.9) how the reference is made while
      fewer frames have been read than its span (stride x background_frames): False clamps the
      frames before the first one read to it, so early in a sequence, and through a whole short
      clip, most of the median is that first frame, objects included; True spreads the frames
      evenly over the earlier frames there are (frame T, first frame read F: T - ceil((T - F) * k /
      n), k = 1 .. n, while T - F < stride x n), so an object that moves drops out of the median as
      soon as it has moved. Once the span has been read the two are the same.
    flo_pattern: for estimator "flo", the file name of the flow from frame T to frame T-tau,
      relative to the sequence's flow folder; ``{frame_id}`` and ``{tau}`` are filled in.
    """

    taus: tuple[int, ...] = option((1, 5, 10), "Frame intervals tau1<tau2<tau3 (R=tau3, G=tau2, B=tau1).")
    estimator: str = option("dis", "Optical flow estimator (flo: precomputed .flo files).",
                            choices=FLOW_ESTIMATORS)
    dis_preset: str = option("medium", "OpenCV DIS preset.", choices=DIS_PRESET_NAMES)
    scale: float = option(6.0, "HOP grey levels per pixel of displacement (256 grid).", flag="flow_scale")
    gains: tuple[int, ...] = option((1, 1, 3), "Linear HOP encoding: per-channel multipliers R,G,B after "
                                    "rounding.", flag="flow_gains")
    reverse_check: bool = option(True, "Encode min(|forward flow|, |reverse flow where it points|): "
                                 "no trails behind fast objects (twice the flow work).")
    change_gate: float = option(0.0, "Keep motion only where the frame changed against an earlier frame by "
                                "more than this many grey levels (5x5 mean; 0: off).")
    background_stride: int = option(0, "Channel B = |frame - median of earlier frames this many frames apart| "
                                    "instead of the tau1 flow (0: off).")
    background_frames: int = option(9, "How many earlier frames a background median takes (odd): the B channel's "
                                    "and the reference's.")
    reference_stride: int = option(0, "Background reference: a third model input, the median RGB of "
                                   "background_frames earlier frames this many frames apart (0: off, the "
                                   "original's two inputs).")
    reference_spread: bool = option(False, "While fewer frames than the reference's span have been read, spread "
                                    "its frames over those there are instead of clamping to the first.")
    flo_pattern: str = option("{frame_id}_tau{tau}.flo", ".flo file name pattern (estimator=flo).")
    encoding: str = option("log", "How flow magnitude becomes HOP grey levels.", flag="hop_encoding",
                           choices=HOP_ENCODINGS)

    # Fields added after files recording flow settings were first written, with the value an absent
    # key stands for (how those files were made), whatever today's default.
    ABSENT_MEANS = {"reverse_check": False, "change_gate": 0.0, "background_stride": 0, "background_frames": 9,
                    "reference_stride": 0, "reference_spread": False}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FlowConfig":
        """Flow settings as recorded in a config.json, sequence.json or dataset.json."""
        return section_from_dict(cls, values)

    def __post_init__(self) -> None:
        if self.encoding not in HOP_ENCODINGS:
            raise HOFAMInputError(f"unknown HOP encoding {self.encoding!r} {HOP_ENCODINGS}")
        if not self.scale > 0:
            raise HOFAMInputError(f"HOP scale must be positive, got {self.scale}")
        taus = tuple(int(t) for t in self.taus)
        if len(taus) != 3 or any(t < 1 for t in taus) or list(taus) != sorted(set(taus)):
            raise HOFAMInputError(f"taus must be three increasing positive intervals, got {self.taus}")
        if self.estimator not in FLOW_ESTIMATORS:
            raise HOFAMInputError(f"unknown flow estimator {self.estimator!r} (dis, farneback, flo)")
        if self.estimator == "flo":  # the flow files hold one direction: recorded as not checked
            object.__setattr__(self, "reverse_check", False)
            object.__setattr__(self, "change_gate", 0.0)
        if not self.change_gate >= 0:
            raise HOFAMInputError(f"change_gate must be >= 0 grey levels (0: off), got {self.change_gate}")
        if int(self.background_stride) < 0:
            raise HOFAMInputError(f"background_stride must be >= 0 frames (0: off), got {self.background_stride}")
        if int(self.reference_stride) < 0:
            raise HOFAMInputError(f"reference_stride must be >= 0 frames (0: off), got {self.reference_stride}")
        if int(self.background_frames) < 1 or int(self.background_frames) % 2 == 0:
            raise HOFAMInputError(f"background_frames must be a positive odd count, got {self.background_frames}")
        if self.dis_preset not in DIS_PRESET_NAMES:
            raise HOFAMInputError(f"unknown DIS preset {self.dis_preset!r} {DIS_PRESET_NAMES}")
        if len(self.gains) != 3:
            raise HOFAMInputError(f"gains must have three values (R, G, B), got {self.gains}")
        object.__setattr__(self, "taus", taus)
        object.__setattr__(self, "change_gate", float(self.change_gate))
        object.__setattr__(self, "background_stride", int(self.background_stride))
        object.__setattr__(self, "background_frames", int(self.background_frames))
        object.__setattr__(self, "reference_stride", int(self.reference_stride))

    @property
    def history(self) -> int:
        """How many frames before frame T its inputs read: tau3, or a background median's span."""
        return max(max(self.taus), max(self.background_stride, self.reference_stride) * self.background_frames)

    @property
    def flow_taus(self) -> tuple[int, ...]:
        """The intervals whose flow enters the HOP image (all three unless the background takes B)."""
        return self.taus[1:] if self.background_stride else self.taus
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
    dtype: Keras dtype policy name: "float32", "mixed_bfloat16" or "mixed_float16"; "float16"
      (``STORAGE_DTYPE``) only in a model.keras stored in half precision, which loads as float32.
    reference: the background-reference variant (opt-in; default False, the original's two
      inputs): a third input ``background`` [B,H,W,3] (``FlowConfig.reference_stride``) is stacked
      with the frame as six channels of the frame encoder's first convolution, the only layer
      that changes (7x7x6 instead of 7x7x3 weights); the HOP encoder is unchanged.
    balanced_head: probabilities that mean the same in every scene (opt-in; default False, the
      original's single head). The class-in-scale loss weighs an image's foreground by its
      objects' size, which multiplies the odds the head learns by a size-dependent factor (up to
      37 for small objects, 3 for large ones), so the best threshold moves from scene to scene. A
      second head (``layers.BalancedHead``: a 3x3 convolution and a per-image term over the main
      head's logits and the decoder's last features, gradients stopped, initialised to the main
      logits) learns the plain posterior with an unweighted cross-entropy
      (``losses.balanced_loss``), and its logits are the model's output; the main head and
      everything below it train exactly as without it.
    """

    ngf: int = option(64, "Base width (the original's gf_dim).")
    height: int = option(TILE, "Model input height (a multiple of 256).")
    width: int = option(TILE, "Model input width (a multiple of 256).")
    faithful_tf1: bool = option(False, "Reproduce the TF1 code: frozen fusion convs, dropout at test.")
    hop_channels: str = option("rgb", "Feed all HOP channels, or only R (original demo).", choices=("rgb", "r"))
    dropout: float = option(0.5, "Dropout rate of the first three decoder levels (0: none).")
    bottleneck_stride: int = option(1, "Stride of the bottleneck fusion (2: the original's, 256x256 only).")
    dtype: str = option("float32", "Dtype policy.", flag="precision", choices=DTYPE_POLICIES)
    reference: bool = option(False, "Background-reference variant: a third input (set from "
                             "FlowConfig.reference_stride).", derived=True)
    balanced_head: bool = option(False, "Balanced head: the model outputs a head trained with unweighted "
                                 "cross-entropy on the class-in-scale head's logits and features (gradients stopped).")

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
        if self.dtype not in DTYPE_POLICIES + (STORAGE_DTYPE,):
            raise HOFAMInputError(f"unknown dtype policy {self.dtype!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The class-in-scale focal loss (see ``hofam_tf.model.losses``).

    mode: "cis" (default: size factor beta from instance sizes) or "tf1" (exactly what the TF1
      code computes: beta = 1, gamma = 0, probabilities clipped to [1e-7, 1 - 1e-7]).
    ignore_labels: exclude CDnet 85 (outside ROI) and 170 (unknown) pixels from the loss.
      The original counted them as background (bug B18); set False to reproduce.
    ring_px: "cis" mode only. Background pixels within ring_px tile pixels (a square
      neighbourhood) of a foreground pixel get the foreground's weight alpha * beta instead of
      1 - alpha, so a wrong halo around an object costs as much as a missed edge of it. 0 (off)
      is the original's loss.
    """

    mode: str = option("cis", "Class-in-scale focal loss, or exactly the TF1 loss.", flag="loss_mode",
                       choices=("cis", "tf1"))
    alpha: float = option(0.75, "Focal loss: weight of the foreground class.")
    gamma: float = option(0.0, "Focal exponent.")
    l1_weight: float = option(0.2, "Weight of the L1 term.")
    focal_weight: float = option(0.8, "Weight of the focal term.")
    f_weight: float = option(0.0, "Weight of a soft F-measure term over the batch (0: the original's loss).")
    beta_cap: float = option(50.0, "Class-in-scale: cap of H*W / mean object area, before the divisor.")
    beta_divisor: float = option(4.0, "Class-in-scale: beta = min(cap, H*W / mean object area) / divisor.")
    ignore_labels: bool = option(True, "Exclude CDnet 85/170 pixels from the loss.")
    ring_px: int = option(0, "Class-in-scale: background pixels within this many tile pixels of the "
                          "foreground weigh as much as the foreground (alpha*beta); 0: off.")

    def __post_init__(self) -> None:
        if self.mode not in ("cis", "tf1"):
            raise HOFAMInputError(f"loss mode must be 'cis' or 'tf1', got {self.mode!r}")
        if self.ring_px < 0:
            raise HOFAMInputError(f"loss ring_px must be >= 0, got {self.ring_px}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation in the tf.data pipeline (``hofam_tf.data.augment``), seeded by
    ``TrainConfig.seed``. On by default: without it HOFAM memorises its training scenes.

    Geometry (frame, HOP and labels alike): a random square crop whose side is a fraction in
    [min_crop, max_crop] of the tile, resized back to the tile (labels with nearest neighbour),
    and a horizontal flip with probability ``flip``. Zooming by 1/s makes objects and their motion
    1/s times larger, so the HOP's motion is scaled by 1/s too ("zoom-consistent", see
    ``hop_scaling``). A side above 1 zooms out: the tile shrinks inside a black border with no
    motion and weight 0 (outside the loss). Default [0.6, 1.6], the zoom out chosen on the
    leave-scenes-out benchmark (run configs written before ``max_crop`` mean 1).
    Frame only: brightness shift (+-brightness of the range), contrast factor in
    [1-contrast, 1+contrast], per-channel colour gain in [1-colour, 1+colour], greyscale with
    probability ``grey``, Gaussian noise of std up to ``noise`` (fraction of the range), and a
    3x3 blur with probability ``blur``.
    HOP only: a gain drawn log-uniformly in [1/hop_gain, hop_gain] (how far an object moves per
    frame depends on the scene), applied to every channel, then clipped to 255.
    hop_scaling: how the zoom factor and the gain act on the HOP. "motion" (default): they scale
      the encoded displacement, through the records' flow encoding (``FlowConfig.encoding``), so
      a zoomed or sped-up scene gets exactly the HOP its faster motion would have been encoded
      to. "grey" (earlier versions): the grey levels themselves are multiplied, which is the same
      thing for the "linear" encoding only; under "log" it also multiplies the background's noise
      level and stretches the scale non-uniformly. Run configs written before this field mean "grey".
    hop_noise: a flow-noise floor added to the HOP (``augment.motion_noise``): a smooth random
      field of mean amplitude drawn in [0, hop_noise] tile pixels, added in quadrature to the
      motion, labels unchanged, so weak blotchy motion (camera shake, compression, flicker) is
      learnt as background. Default 1, chosen on the leave-scenes-out benchmark; 0 turns it off
      (and is what run configs written before it mean).
    still: probability that an example's motion is taken away (``augment.still_examples``): its
      HOP becomes that of a scene where nothing moves (grey level 0, then the noise floor) and its
      mask becomes all background, so the model learns that what a frame shows without motion is
      not foreground (lane markings, shelves, a person-shaped poster). 0 is off.
    hop_spread: the HOP's motion spread out over its surroundings (``augment.spread_motion``): a
      grey dilation by a square of radius r tile pixels, r drawn per example in [0, hop_spread],
      labels unchanged. Optical flow smears an object's motion over the background around it, by
      more on some scenes than on others (small objects, plain backgrounds, long intervals), so
      the model has to take the outline from the frame. Default 3, chosen on the leave-scenes-out
      benchmark; 0 turns it off (and is what run configs written before it mean).
    frame_swap: probability that an example's frame is replaced by the next example's frame in
      the batch (``augment.swap_frames``; another scene or moment), HOP and labels kept: the frame
      then shows real-looking objects and textures that the labels say nothing about, and only
      the motion tells where the foreground is. 0 is off.
    paste: probability that the next example's objects in the batch are pasted into an example
      (``augment.paste_objects``): frame, HOP and labels inside the other example's mask dilated
      by ``paste_margin`` tile pixels, the frame blended over a soft edge, so objects move over
      backgrounds they were not filmed on. 0 is off.
    frame_drop: probability that an example's frame is replaced by uniform random noise, so the
    model must find the foreground from the motion alone and cannot lean on memorised scene
    looks (noise rather than a flat frame: a constant input makes the layer norm's gradients
    explode). Default 0.3, chosen on the leave-scenes-out benchmark.
    """

    enabled: bool = option(True, "Augment training batches (crops, flips, photometric, HOP gain).",
                           flag="augment")
    min_crop: float = option(0.6, "Augmentation: smallest crop side, as a fraction of the tile.")
    max_crop: float = option(1.6, "Augmentation: largest crop side; above 1 the tile is also zoomed "
                             "out (objects and motion shrink, the border is black and left out of the loss).")
    flip: float = option(0.5, "Augmentation: probability of a horizontal flip.", flag="aug_flip")
    brightness: float = option(0.2, "Augmentation: largest brightness shift (fraction of the range).",
                               flag="aug_brightness")
    contrast: float = option(0.3, "Augmentation: contrast factor in [1-c, 1+c].", flag="aug_contrast")
    colour: float = option(0.1, "Augmentation: per-channel colour gain in [1-c, 1+c].", flag="aug_colour")
    grey: float = option(0.1, "Augmentation: probability of a greyscale frame.", flag="aug_grey")
    noise: float = option(0.03, "Augmentation: largest Gaussian noise std (fraction of the range).",
                          flag="aug_noise")
    blur: float = option(0.2, "Augmentation: probability of a 3x3 blur.", flag="aug_blur")
    hop_gain: float = option(2.0, "Augmentation: HOP gain drawn log-uniformly in [1/g, g].")
    frame_drop: float = option(0.3, "Augmentation: probability that the frame is replaced by noise.")
    hop_noise: float = option(1.0, "Augmentation: largest mean amplitude (tile pixels) of a smooth "
                              "flow-noise floor added to the HOP; 0 is off.")
    still: float = option(0.0, "Augmentation: probability that an example's motion is removed "
                          "(HOP of a still scene, all-background mask).", flag="aug_still")
    hop_spread: int = option(3, "Augmentation: largest radius (tile pixels) of a grey dilation of the "
                             "HOP, drawn per example; 0 is off.")
    frame_swap: float = option(0.0, "Augmentation: probability that the frame is replaced by another "
                               "example's frame (HOP and labels kept).", flag="aug_frame_swap")
    channel_drop: float = option(0.0, "Augmentation: probability that one HOP channel (frame interval), "
                                 "drawn per example, keeps only a random fraction of its motion.",
                                 flag="aug_channel_drop")
    paste: float = option(0.0, "Augmentation: probability that another example's objects (frame, HOP "
                          "and labels) are pasted into an example.", flag="aug_paste")
    paste_margin: int = option(2, "Augmentation: the pasted region is the other example's mask dilated "
                               "by this many tile pixels.", flag="aug_paste_margin")
    hop_noise_grid: int = option(8, "Augmentation: the noise floor's field is drawn on this square "
                                 "grid and resized to the tile (smaller is smoother).")
    hop_scaling: str = option("motion", "Augmentation: zoom and gain scale the HOP's encoded motion "
                              "('motion') or its grey levels ('grey', earlier versions).",
                              choices=HOP_SCALINGS)

    # Fields added after run configs were first written, with the value an absent key stands for.
    ABSENT_MEANS = {"hop_scaling": "grey", "max_crop": 1.0, "hop_noise": 0.0, "still": 0.0,
                    "frame_swap": 0.0, "hop_spread": 0, "channel_drop": 0.0, "paste": 0.0}

    def __post_init__(self) -> None:
        if not 1 <= self.max_crop <= 3:
            raise HOFAMInputError(f"augment max_crop must be in [1, 3], got {self.max_crop}")
        if not 0 < self.min_crop <= self.max_crop:
            raise HOFAMInputError(f"augment min_crop must be in (0, max_crop={self.max_crop}], got {self.min_crop}")
        if self.hop_noise < 0:
            raise HOFAMInputError(f"augment hop_noise must be >= 0, got {self.hop_noise}")
        if self.hop_spread < 0:
            raise HOFAMInputError(f"augment hop_spread must be >= 0, got {self.hop_spread}")
        if self.paste_margin < 0:
            raise HOFAMInputError(f"augment paste_margin must be >= 0, got {self.paste_margin}")
        if self.hop_noise_grid < 1:
            raise HOFAMInputError(f"augment hop_noise_grid must be >= 1, got {self.hop_noise_grid}")
        if self.hop_gain < 1:
            raise HOFAMInputError(f"augment hop_gain must be >= 1, got {self.hop_gain}")
        if self.hop_scaling not in HOP_SCALINGS:
            raise HOFAMInputError(f"augment hop_scaling must be one of {HOP_SCALINGS}, got {self.hop_scaling!r}")
        for name in ("flip", "grey", "blur", "frame_drop", "still", "frame_swap", "channel_drop", "paste"):
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
      computed every ``val_every`` steps (``hofam_tf.tasks.validation``), written to TensorBoard, and the
      best checkpoint and its threshold are kept (``best.json``). early_stop: stop after this many
      validations without improvement (0: never).
    steps_per_loop: updates run inside one tf.function call (a device-side loop, no Python
      between them); logging, NaN checks, validation and checkpoints happen at loop boundaries,
      which always fall on their exact steps (a loop ends early at the next event).
    ema_decay: keep an exponential moving average of the weights with this decay
      (``hofam_tf.model.weight_average``) and validate, save and infer with it; 0 turns it off. Default
      0.99, chosen on the leave-scenes-out benchmark (README, "Cross-scene quality").
    lr_schedule: "constant" (default, the original's) or "cosine": half a cosine from
      ``learning_rate`` at update 0 to 0 at update ``steps`` (the optimizer's update count, so a
      resumed run continues the same curve).
    weight_decay: decoupled weight decay (AdamW): every update also multiplies each convolution
      and dense kernel by 1 - learning rate x weight_decay; biases and normalisation scales and
      offsets are left alone. 0 (default): plain Adam, the original's.
    scene_balance: 0 (default, the original's): every training example is drawn equally often, so
      a scene with 150 labelled frames weighs ten times one with 15. Above 0 each scene s is drawn
      in proportion to count_s ** (1 - scene_balance) (1: every scene equally often), by thinning
      the shuffled stream (``hofam_tf.data.dataset.scene_acceptance``; scenes by the records'
      ``sequence`` key).
    """

    train_pattern: str = option("", "TFRecord glob(s), comma-separated, for training "
                                f"(default {DEFAULT_RECORDS_DIR}/train-*.tfrecord*).")
    steps: int = option(64000, "Optimizer updates.")
    batch_size: int = option(1, "Global batch size.")
    learning_rate: float = option(5e-4, "Adam learning rate.")
    lr_schedule: str = option("constant", "Learning rate over the run: constant (the original's) or a cosine "
                              "decay from --learning_rate to 0 at --steps.", choices=LR_SCHEDULES)
    beta1: float = option(0.95, "Adam beta1.")
    beta2: float = option(0.999, "Adam beta2.")
    epsilon: float = option(1e-8, "Adam epsilon.")
    shuffle_buffer: int = option(2000, "Examples in the shuffle buffer.")
    seed: int = option(12138, "Seed of weight initialisation, shuffle, augmentation and dropout.")
    ckpt_every: int = option(2000, "Checkpoint every N steps.")
    keep_ckpts: int = option(5, "Checkpoints kept.")
    log_every: int = option(100, "TensorBoard scalars every N steps.")
    image_every: int = option(1000, "TensorBoard image panels every N steps (0: never).")
    xla: bool = option(False, "Compile the training step with XLA.")
    val_pattern: str = option("", "TFRecords of held-out scenes: validation F every --val_every steps, best "
                              "checkpoint and threshold kept.")
    val_every: int = option(500, "Validate every N steps (with --val_pattern).")
    early_stop: int = option(0, "Stop after N validations without improvement (0: never).")
    steps_per_loop: int = option(20, "Updates per tf.function call (device-side loop).")
    ema_decay: float = option(0.99, "Validate, save and infer with a moving average of the weights with this "
                              "decay (0: off).")
    weight_decay: float = option(0.0, "Decoupled weight decay of the kernels (AdamW; 0: plain Adam).")
    scene_balance: float = option(0.0, "How far training draws scenes equally instead of in proportion to "
                                  "their examples: 0 (the original's) to 1 (every scene equally often).")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "ckpt_every", "keep_ckpts", "log_every", "val_every", "steps_per_loop"):
            if getattr(self, name) < 1:
                raise HOFAMInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("image_every", "early_stop", "shuffle_buffer"):
            if getattr(self, name) < 0:
                raise HOFAMInputError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise HOFAMInputError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.weight_decay >= 0:
            raise HOFAMInputError(f"weight_decay must be 0 (off) or more, got {self.weight_decay}")
        if not 0 <= self.scene_balance <= 1:
            raise HOFAMInputError(f"scene_balance must be in [0, 1] (0: examples drawn equally), got {self.scene_balance}")
        if not 0 <= self.ema_decay < 1:
            raise HOFAMInputError(f"ema_decay must be in [0, 1) (0: no weight average), got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise HOFAMInputError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run directory needs to rebuild its model and its input pipeline."""

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    flow: FlowConfig = FlowConfig()
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self) -> None:
        # the model takes a background reference exactly when the data makes one
        reference = self.flow.reference_stride > 0
        if self.model.reference != reference:
            object.__setattr__(self, "model", dataclasses.replace(self.model, reference=reference))

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
            parts[field.name] = section_from_dict(sub_cls, values)
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
