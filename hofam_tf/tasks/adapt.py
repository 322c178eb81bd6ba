"""Scene adaptation (``PredictOptions.adapt_steps``, ``--adapt_steps``): a few updates of the model
on the scene it is segmenting, from labels it makes itself, before any mask is written.

HOFAM is trained once and used on scenes it never saw, and on such a scene its probabilities are
offset by an amount of its own (the best threshold moves between 0.1 and 0.995 from scene to
scene) and its masks swell into the halos of the flow. The scene itself says where the model is
right, without any label: where the model's mask at the run's threshold and the median rule
(``baselines.median_changed``, which compares each frame with the median of its recent past and
has no halo) agree. So on the first frames of a sequence (the frames held as for the scene-adaptive
threshold):

- **pseudo-labels** (``pseudo_labels``): foreground = the model's mask trimmed by the median gate
  of ``ADAPT_GATE`` tile pixels with its interiors filled (``apply_gate`` "fill"); background = the
  pixels that neither the model (below the threshold) nor the rule marks; every other pixel (the
  rule's changes the model does not see: shadows, light; the model's pixels the gate removed
  unless the rule is also quiet there) is left out of the loss (CDnet's "unknown", 170);
- **updates** (``adapt``): ``steps`` Adam updates at ``ADAPT_LR`` of every weight, batches of
  ``ADAPT_BATCH`` held frames drawn with a fixed seed (half of them mirrored), the run's own loss
  (``LossConfig``; the balanced head's unweighted loss for that variant), dropout on as in
  training;
- **rounds** (``PredictOptions.adapt_rounds``, ``round_steps``): the updates may be split into
  rounds, each on pseudo-labels made afresh from the weights the previous round left (each with
  its own Adam state and batch draws), so foreground the adapted model has learned to find
  labels the next round;
- **undoing** (``PredictOptions.adapt_min_recall``): where the adapted model marks less than that
  share of the foreground it was taught (or it was taught none: labels nearly all background, as on
  a short scene where the model found little), the updates have taught it to erase its objects,
  and the checkpoint's weights segment the sequence instead;
- the held frames are segmented again with the adapted weights, and the rest of the sequence
  with them too. The next sequence starts from the checkpoint's weights again
  (``restored_weights``).

The rule runs on the 256x256 tiles the model sees, in frame order. Deterministic for a given
input. TensorFlow runtime only (ONNX Runtime only infers), and not for the background-reference
variant (its references are not held). The leave-scenes-out benchmark offers it to each fold's
validation scenes (``bench_quality.POST_GRID``), which choose whether it is used.
"""
from __future__ import annotations

import contextlib

import cv2
import numpy as np

from hofam_tf.config import TILE
from hofam_tf.data.composite import UNKNOWN
from hofam_tf.errors import HOFAMInputError

ADAPT_LR = 1e-4
ADAPT_BATCH = 8
ADAPT_GATE = 1.5  # tile pixels: the median gate radius of the pseudo-labels (predict's MEDIAN_GATE)
ADAPT_SEED = 12138
MAX_ADAPT_STEPS = 10_000


def pseudo_labels(tiles: np.ndarray, indices, probs: np.ndarray, threshold: float,
                  gate: float = ADAPT_GATE) -> np.ndarray:
    """CDnet-style labels uint8 [N, H, W] (255 foreground, 0 background, ``UNKNOWN`` left out) of
    the frame tiles ``tiles`` uint8 [N, H, W, 3] (RGB, in frame order; ``indices`` their frame
    positions) from the model's probabilities ``probs`` [N, H, W] (module docstring)."""
    from hofam_tf.tasks.baselines import MedianSegmenter
    from hofam_tf.tasks.predict import apply_gate, median_gate_kernel

    rule = MedianSegmenter()
    kernel = median_gate_kernel(gate, (TILE, TILE))
    out = np.full(probs.shape, UNKNOWN, np.uint8)
    for i, (tile, index, prob) in enumerate(zip(tiles, indices, probs)):
        changed = rule(tile, None, int(index)) > 0
        fg = prob >= threshold
        near = cv2.dilate(changed.astype(np.uint8), kernel) > 0
        kept = apply_gate(fg, near, "fill")
        out[i][~kept & ~changed & ~fg] = 0
        out[i][kept] = 255
    return out


def round_steps(steps: int, rounds: int) -> list[int]:
    """The updates of each of ``rounds`` rounds, ``steps`` in all (the earlier rounds take the
    remainder): ``round_steps(60, 2) == [30, 30]``."""
    return [steps // rounds + (r < steps % rounds) for r in range(rounds)]


def _targets(labels: np.ndarray) -> np.ndarray:
    """Instances per pseudo-label (8-connected foreground components, at least 1), as the records'
    ``target_num``."""
    return np.array([max(1, cv2.connectedComponents((lab == 255).astype(np.uint8), connectivity=8)[0] - 1)
                     for lab in labels], np.int64)


class SceneAdapter:
    """The updates of ``adapt`` for one Keras ``model`` (logits out), traced once and reused: each
    call starts from a fresh Adam state (moments and update count zero, as a new optimizer), so
    adapting to one sequence after another gives each the updates it would get alone, without
    tracing the update again (about 10-20 s on a 2-core CPU). The optimizer is built before the
    update is traced, which halves that trace."""

    def __init__(self, model, loss_cfg, lr: float = ADAPT_LR, balanced: bool = False):
        import keras
        import tensorflow as tf

        from hofam_tf.model.losses import balanced_loss, hofam_loss

        self.model = model
        variables = model.trainable_variables
        self.optimizer = keras.optimizers.Adam(lr)
        self.optimizer.build(variables)
        self._fresh = [v.numpy() for v in self.optimizer.variables]

        @tf.function(autograph=False)  # traced as written (no tensor-valued control flow): faster
        def step(x, m, w, n):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = balanced_loss(logits, m, w) if balanced else hofam_loss(logits, m, w, n, loss_cfg)["loss"]
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        self._step = step

    def __call__(self, tiles: np.ndarray, hops: np.ndarray, labels: np.ndarray, steps: int,
                 seed: int = ADAPT_SEED) -> list[float]:
        """``steps`` updates of the model in place on the tiles ``tiles``/``hops`` with the labels
        ``labels`` (``pseudo_labels``); returns the loss of every update."""
        import tensorflow as tf

        from hofam_tf.config import model_inputs

        if not len(tiles) or not steps:
            return []
        for variable, value in zip(self.optimizer.variables, self._fresh):
            variable.assign(value)
        mask = (labels == 255).astype(np.float32)[..., None]
        weight = (labels != UNKNOWN).astype(np.float32)[..., None]
        targets = _targets(labels)
        rng = np.random.default_rng(seed)
        losses = []
        with _seeded_dropout(self.model, seed):
            for _ in range(steps):
                pick = rng.choice(len(tiles), min(ADAPT_BATCH, len(tiles)), replace=len(tiles) < ADAPT_BATCH)
                parts = [tiles[pick], hops[pick], mask[pick], weight[pick]]
                if rng.random() < 0.5:
                    parts = [p[:, :, ::-1] for p in parts]
                fr, hop, m, w = (np.ascontiguousarray(p) for p in parts)
                losses.append(float(self._step(model_inputs(fr, hop), tf.constant(m), tf.constant(w),
                                               tf.constant(targets[pick]))))
        return losses


def adapt(model, loss_cfg, tiles: np.ndarray, hops: np.ndarray, labels: np.ndarray, steps: int,
          lr: float = ADAPT_LR, balanced: bool = False, seed: int = ADAPT_SEED) -> list[float]:
    """``steps`` updates of the Keras ``model`` (logits out) in place on the tiles ``tiles``/``hops``
    with the labels ``labels`` (``pseudo_labels``); returns the loss of every update. One call;
    ``SceneAdapter`` reuses its traced update over many."""
    return SceneAdapter(model, loss_cfg, lr, balanced)(tiles, hops, labels, steps, seed)


@contextlib.contextmanager
def _seeded_dropout(model, seed: int):
    """Runs the block with every dropout layer's random state set from ``seed`` (the same draws
    for the same input), then gives the layers their states back."""
    import keras

    generators = [layer.seed_generator for layer in model.layers
                  if isinstance(getattr(layer, "seed_generator", None), keras.random.SeedGenerator)]
    held = [g.state.numpy() for g in generators]
    for i, g in enumerate(generators):
        g.state.assign(np.array([seed + i, 0], g.state.dtype))
    try:
        yield
    finally:
        for g, state in zip(generators, held):
            g.state.assign(state)


@contextlib.contextmanager
def restored_weights(model):
    """Runs the block, then gives ``model`` back the weights it had before it."""
    held = model.get_weights()
    try:
        yield
    finally:
        model.set_weights(held)


def check_adaptable(runner, cfg) -> None:
    """Refuses scene adaptation where it cannot run (module docstring)."""
    if getattr(runner, "model", None) is None:
        raise HOFAMInputError("--adapt_steps needs the TensorFlow runtime (--runtime=tf): ONNX Runtime only infers")
    if cfg.model.reference:
        raise HOFAMInputError("--adapt_steps does not support the background-reference variant "
                              "(model.reference): its references are not held")
