"""``run_train``: the training phase (reference §6, without its bugs B5/B6).

One Adam update per step (the original ran 4 per loop step: 16,000 x 4 = 64,000 updates, our
default ``steps``). Runs under a tf.distribute strategy: MultiWorkerMirroredStrategy when
``TF_CONFIG`` is set, MirroredStrategy over all GPUs when there are several, else the default
strategy. ``batch_size`` is the global batch. Resuming is automatic: the step counter lives in
the checkpoint, so re-running the same command continues where the last checkpoint left off
(the example order restarts from a shuffle seeded with ``seed + step``).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import keras
import tensorflow as tf
from tqdm import tqdm

from hofam_tf.model.checkpoints import BEST_NAME, BEST_SUBDIR, CKPT_SUBDIR, CONFIG_NAME, FINAL_MODEL, make_checkpoint
from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, FlowConfig, RunConfig, TrainConfig
from hofam_tf.data.dataset import build_dataset, check_tfrecords, list_tfrecords
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import atomic_path, write_json
from hofam_tf.locks import folder_lock
from hofam_tf.model.graph_options import graph_options
from hofam_tf.model.losses import balanced_loss, hofam_loss
from hofam_tf.model.hofam import MAIN_LOGITS, build_hofam
from hofam_tf.model.weight_average import WeightAverage, averaged


class NaNLossError(HOFAMInputError):
    """The loss became NaN or infinite; no checkpoint was written for the bad steps."""


def choose_strategy(env: dict | None = None) -> tf.distribute.Strategy:
    env = os.environ if env is None else env
    if env.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def dataset_flow(files: list[str]) -> FlowConfig | None:
    """The flow settings recorded in the dataset.json of the folders holding ``files``; None when
    no folder records them. Folders made with different settings are an error."""
    import json

    from hofam_tf.data.schema import DATASET_INFO

    found: dict[str, FlowConfig] = {}
    unrecorded = []
    for folder in sorted({str(Path(f).parent) for f in files}):
        path = Path(folder) / DATASET_INFO
        flow = json.loads(path.read_text()).get("flow") if path.exists() else None
        if flow:
            found[str(path)] = FlowConfig.from_dict(flow)
        else:
            unrecorded.append(folder)
    if len(set(found.values())) > 1:
        raise HOFAMInputError("training records made with different flow settings cannot be mixed: "
                              + "; ".join(f"{k}: {v}" for k, v in found.items()))
    flow = next(iter(found.values()), None)
    if flow is not None and flow.background_stride and unrecorded:
        raise HOFAMInputError(f"records in {', '.join(unrecorded)} record no flow settings (their HOP's channel B is "
                              "the tau1 motion, as in the authors' demo composites) and cannot be mixed with records "
                              "whose channel B is the background difference (background_stride="
                              f"{flow.background_stride})")
    return flow


def adopt_flow(cfg: RunConfig, files: list[str], explicit: frozenset = frozenset()) -> RunConfig:
    """The run's flow settings come from its data: the records' dataset.json wins, and a field
    the caller set explicitly (``explicit``: FlowConfig field names) must agree with it."""
    data_flow = dataset_flow(files)
    if data_flow is None:
        return cfg
    for name in explicit:
        if getattr(cfg.flow, name) != getattr(data_flow, name):
            raise HOFAMInputError(f"flow setting {name}={getattr(cfg.flow, name)!r} contradicts the training "
                                  f"records, which were made with {name}={getattr(data_flow, name)!r}; "
                                  "drop the flag or remake the records")
    return dataclasses.replace(cfg, flow=data_flow)


def prepare_run_dir(run_dir: Path, cfg: RunConfig) -> RunConfig:
    """Creates the run directory or checks that an existing one was trained with the same model
    and loss; returns the config to use (the saved one's model, the new schedule)."""
    cfg_path = run_dir / CONFIG_NAME
    if cfg_path.exists():
        saved = RunConfig.load(cfg_path)
        for part in ("model", "loss", "flow"):
            if getattr(saved, part) != getattr(cfg, part):
                raise HOFAMInputError(
                    f"{cfg_path}: this run was started with another {part} configuration "
                    f"({getattr(saved, part)}); use a new --ckpt_dir or the same flags")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(cfg_path)
    return cfg


def _image_summary(model, batch, step: int) -> None:
    inputs, mask = batch[0], batch[1]
    prob = tf.sigmoid(model(inputs, training=False))
    n = min(3, int(tf.shape(mask)[0]))
    for key in (FRAME_KEY, HOP_KEY, BACKGROUND_KEY):
        if key in inputs:  # image bytes, as the model takes them (a float image would be read as [0, 1])
            image = tf.saturate_cast(tf.round(tf.cast(inputs[key][:n], tf.float32)), tf.uint8)
            tf.summary.image(key, image, step=step, max_outputs=n)
    tf.summary.image("gt", mask[:n], step=step, max_outputs=n)
    tf.summary.image("prediction", prob[:n], step=step, max_outputs=n)


def run_train(cfg: RunConfig, run_dir: str | Path, progress: bool = True,
              stop_after: int | None = None, strategy: tf.distribute.Strategy | None = None,
              explicit_flow: frozenset = frozenset()) -> dict:
    """Trains until ``cfg.train.steps`` updates exist in ``run_dir``. Returns a summary dict.

    ``stop_after`` ends this call after that many new steps (a checkpoint is written), as if the
    process had been interrupted; the next call resumes. ``strategy`` overrides
    ``choose_strategy()``. The flow settings are adopted from the records' dataset.json
    (``adopt_flow``); ``explicit_flow`` names the FlowConfig fields the user set, which must agree.
    Runs under ``graph_options()`` (Grappler's remapper off, see ``hofam_tf.model.graph_options``).
    """
    with graph_options():
        return _run_train(cfg, run_dir, progress, stop_after, strategy, explicit_flow)


def _run_train(cfg: RunConfig, run_dir: str | Path, progress: bool = True,
               stop_after: int | None = None, strategy: tf.distribute.Strategy | None = None,
               explicit_flow: frozenset = frozenset()) -> dict:
    run_dir = Path(run_dir)
    tc = cfg.train
    strategy = strategy or choose_strategy()  # first: collective ops must be set up before any other TF op
    chief = is_chief(strategy)
    files = list_tfrecords(tc.train_pattern)
    cfg = adopt_flow(cfg, files, explicit_flow)  # predict recomputes HOP images with these
    if chief:  # one training at a time writes a run directory (a second is refused)
        with folder_lock(run_dir, "train"):
            cfg = prepare_run_dir(run_dir, cfg)
            return _train(cfg, run_dir, run_dir, files, strategy, chief, progress, stop_after)
    import shutil
    import tempfile

    write_dir = Path(tempfile.mkdtemp(prefix="hofam-worker-"))  # other workers write only here
    try:
        return _train(cfg, run_dir, write_dir, files, strategy, chief, progress, stop_after)
    finally:
        shutil.rmtree(write_dir, ignore_errors=True)


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster (TF_CONFIG): the
    task "chief", or worker 0 when the cluster has no chief, writes the run directory."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def learning_rate(tc: TrainConfig):
    """Adam's learning rate: a float, or a schedule of the optimizer's update count."""
    if tc.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=tc.steps)
    return tc.learning_rate


@dataclasses.dataclass
class TrainState:
    """What a checkpoint holds: the model, the optimizer (its moments and update count), the
    step counter and, with ``ema_decay``, the weight average; plus the manager that writes it."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable
    average: WeightAverage | None
    manager: tf.train.CheckpointManager

    @classmethod
    def create(cls, cfg: RunConfig, strategy, run_dir: Path, write_dir: Path) -> "TrainState":
        """Builds the state under ``strategy`` and restores the run's latest checkpoint, if any."""
        tc = cfg.train
        keras.utils.set_random_seed(tc.seed)  # weight initialisation and dropout follow --seed
        # Mixed precision is a per-layer dtype policy (ModelConfig.dtype): no global state is changed.
        with strategy.scope():
            model = build_hofam(cfg.model)
            optimizer = keras.optimizers.Adam(learning_rate(tc), beta_1=tc.beta1, beta_2=tc.beta2,
                                              epsilon=tc.epsilon, weight_decay=tc.weight_decay or None)
            if tc.weight_decay:  # kernels only (TrainConfig.weight_decay)
                optimizer.exclude_from_weight_decay(
                    var_list=[v for v in model.trainable_variables if v.name != "kernel"])
            if cfg.model.dtype == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            average = WeightAverage(model.trainable_variables, tc.ema_decay) if tc.ema_decay else None
        ckpt = make_checkpoint(model, optimizer, step, average)
        manager = tf.train.CheckpointManager(ckpt, str(write_dir / CKPT_SUBDIR), max_to_keep=tc.keep_ckpts)
        state = cls(model, optimizer, step, average, manager)
        latest = tf.train.latest_checkpoint(str(run_dir / CKPT_SUBDIR))  # every worker resumes from the chief's
        if latest:
            try:
                ckpt.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as err:
                raise HOFAMInputError(f"{latest}: cannot resume from this checkpoint "
                                      f"({str(err).splitlines()[0][:300]})") from None
            if average is not None:
                average.swap()  # checkpoints hold the average in `model` (see hofam_tf.model.weight_average)
        return state

    def save(self) -> None:
        """A checkpoint at the current step (its `model` holds the weights to infer with). A full
        disk is a HOFAMInputError naming the folder and the checkpoint; the partial files are
        removed, and the previous complete checkpoint stays the one a re-run resumes from."""
        number = int(self.step.numpy())
        try:
            with averaged(self.average):
                self.manager.save(checkpoint_number=number)
        except tf.errors.OpError as err:
            if "No space left on device" not in str(err):
                raise
            import shutil

            folder = Path(self.manager.directory)
            for partial in folder.glob(f"ckpt-{number}_temp*"):
                shutil.rmtree(partial, ignore_errors=True)
            for partial in folder.glob(f"ckpt-{number}.*"):
                partial.unlink(missing_ok=True)
            raise HOFAMInputError(f"{folder}: no space left on device while writing checkpoint {number}; "
                                  "free some space and run the same command again to resume from the last "
                                  "complete checkpoint") from None


def make_train_loop(state: TrainState, cfg: RunConfig, strategy):
    """``train_loop(iterator, n)``: ``n`` updates inside one tf.function call (the device-side
    loop); returns the last update's loss parts and whether every loss of the ``n`` was finite."""
    model, optimizer, average = state.model, state.optimizer, state.average
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables
    balanced = cfg.model.balanced_head
    # with the balanced head: the main head's logits take the class-in-scale loss, the model's
    # output (the balanced head, gradients stopped at its inputs) the unweighted one
    forward = keras.Model(model.inputs, [model.get_layer(MAIN_LOGITS).output, model.output]) if balanced \
        else model
    part_names = ("loss", "l1", "focal", "soft_f") + (("balanced",) if balanced else ())

    # autograph=False: the step has no tensor-valued Python control flow, so it is traced as written
    # (converting the model's and the loss's code took seconds of every training start)
    @tf.function(jit_compile=cfg.train.xla or None, autograph=False)
    def train_step(inputs, mask, weight, target_num):
        with tf.GradientTape() as tape:
            outputs = forward(inputs, training=True)
            parts = hofam_loss(outputs[0] if balanced else outputs, mask, weight, target_num, cfg.loss)
            if balanced:
                parts["balanced"] = balanced_loss(outputs[1], mask, weight)
                parts["loss"] = parts["loss"] + parts["balanced"]
            loss = parts["loss"] / replicas
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return parts

    @tf.function
    def train_loop(iterator, n):
        parts = {k: tf.constant(0.0) for k in part_names}
        finite = tf.constant(True)
        for _ in tf.range(n):
            out = strategy.run(train_step, args=next(iterator))
            parts = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, out[k], axis=None) for k in parts}
            finite = tf.logical_and(finite, tf.math.is_finite(parts["loss"]))
            if average is not None:
                average.update()
            state.step.assign_add(1)
        return parts, finite

    return train_loop


def _distributed_batches(cfg: RunConfig, files, strategy, start: int):
    """(per-replica iterator, plain dataset) of training batches, shuffled from ``seed + start``.
    Each worker reads every file and keeps its own share of every global batch (DATA sharding):
    the shuffle and augmentation are seeded alike on all workers, so the global batches are the
    same as in one process, and the number of files does not limit the number of workers."""
    tc = cfg.train
    ds = build_dataset(files, tc.batch_size, training=True, shuffle_buffer=tc.shuffle_buffer,
                       seed=tc.seed + start, ignore_labels=cfg.loss.ignore_labels, with_target_num=True,
                       size=(cfg.model.height, cfg.model.width), augment=cfg.augment, flow=cfg.flow,
                       scene_balance=tc.scene_balance)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(ds.with_options(options))), ds


def _train(cfg: RunConfig, run_dir: Path, write_dir: Path, files, strategy, chief: bool, progress: bool,
           stop_after) -> dict:
    tc = cfg.train
    state = TrainState.create(cfg, strategy, run_dir, write_dir)
    start = int(state.step.numpy())
    if start >= tc.steps:
        return {"steps": start, "resumed_from": start, "run_dir": str(run_dir)}
    batches, ds = _distributed_batches(cfg, files, strategy, start)
    train_loop = make_train_loop(state, cfg, strategy)
    keeper = BestKeeper(write_dir, cfg, state.model, state_dir=run_dir, average=state.average) \
        if tc.val_pattern else None
    writer = tf.summary.create_file_writer(str(write_dir / "logs")) if chief else tf.summary.create_noop_writer()
    sample_batch = next(iter(ds.take(1))) if tc.image_every else None  # fixed images to watch
    end = tc.steps if stop_after is None else min(tc.steps, start + stop_after)
    bar = tqdm(total=tc.steps, initial=start, desc="train", unit="step", disable=not progress)
    last, t0 = {}, time.time()
    step = start
    periods = [tc.log_every, tc.ckpt_every] + ([tc.image_every] if tc.image_every else []) + \
              ([tc.val_every] if keeper is not None else [])
    with writer.as_default():
        while step < end:
            # Run up to the next event (log, checkpoint, images, validation, end), at most
            # steps_per_loop updates, so that every event happens at its exact step.
            n = min([end - step, tc.steps_per_loop] + [p - step % p for p in periods])
            try:
                parts, finite = train_loop(batches, tf.constant(n, tf.int64))
            except tf.errors.DataLossError:
                check_tfrecords(files)  # names the corrupt file
                raise
            step += n
            bar.update(n)
            # A NaN or infinite loss anywhere in the loop stops training before anything is saved.
            if not bool(finite):
                where = f"at step {step}" if n == 1 else f"between step {step - n + 1} and step {step}"
                raise NaNLossError(f"loss became NaN or infinite {where}; stopped without saving "
                                   f"(last good checkpoint: {state.manager.latest_checkpoint})")
            # Log the loss, then images, then validate (keeping the best checkpoint), then checkpoint.
            if step % tc.log_every == 0 or step % tc.ckpt_every == 0 or step == end:
                last = {k: float(v) for k, v in parts.items()}
                for k, v in last.items():
                    tf.summary.scalar(f"loss/{k}", v, step=step)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
            if tc.image_every and step % tc.image_every == 0:
                _image_summary(state.model, sample_batch, step)
            stop = False
            if keeper is not None and (step % tc.val_every == 0 or step == end):
                stop = keeper.validate(step)
                bar.set_postfix(loss=f"{last.get('loss', float('nan')):.4f}", val_f=f"{keeper.best_f:.3f}")
            if step % tc.ckpt_every == 0 or step == end or stop:
                state.save()
            if stop:
                break
    bar.close()
    writer.flush()
    model = state.model
    result = {"steps": step, "resumed_from": start, "run_dir": str(run_dir), "last_loss": last,
              "seconds": time.time() - t0, "chief": chief,
              "weights_checksum": float(sum(tf.reduce_sum(tf.abs(tf.cast(v, tf.float64))) for v in model.trainable_variables))}
    if keeper is not None:
        result["best"] = keeper.summary()
    # The finished run's model.keras holds the best validated weights, else the weight average.
    if chief and (step >= tc.steps or (keeper is not None and keeper.stopped)):
        if keeper is not None and keeper.best_prefix:
            keeper.restore_best()
        elif state.average is not None:
            state.average.swap()
        with atomic_path(run_dir / FINAL_MODEL) as tmp:
            model.save(tmp)
    return result


class BestKeeper:
    """Validates on ``cfg.train.val_pattern`` and keeps the best checkpoint in ``best/``.

    ``best.json`` (written last, atomically) names the checkpoint, its step, validation F and the
    threshold that gave it; older best checkpoints are deleted after it is written. The state
    survives a resume: the best F so far is read back from ``best.json``.
    """

    def __init__(self, run_dir: Path, cfg: RunConfig, model, state_dir: Path | None = None, average=None):
        from hofam_tf.tasks.validation import Validator

        self.run_dir, self.model, self.tc, self.average = run_dir, model, cfg.train, average
        self.validator = Validator(self.tc.val_pattern, background=cfg.model.reference)
        if self.validator.frames == 0:
            raise HOFAMInputError(f"{self.tc.val_pattern}: no labelled validation example")
        self.best_f, self.best_prefix, self.since_best, self.stopped = -1.0, None, 0, False
        self.history: list = []
        state_dir = state_dir or run_dir  # the chief's run directory, where a resumed run's state is
        best_json = state_dir / BEST_NAME
        if best_json.exists():
            import json

            saved = json.loads(best_json.read_text())
            self.best_f, self.best_prefix = saved["f_measure"], str(state_dir / saved["checkpoint"])
            self.history = saved.get("history", [])

    def validate(self, step: int) -> bool:
        """Scores the model now (its weight average when there is one); saves it if best.
        Returns True when training should stop early."""
        with averaged(self.average):
            return self._validate(step)

    def _validate(self, step: int) -> bool:
        res = self.validator.evaluate(self.model)
        tf.summary.scalar("val/f_measure", res.f_measure, step=step)
        tf.summary.scalar("val/threshold", res.threshold, step=step)
        self.history.append({"step": step, "f_measure": res.f_measure, "threshold": res.threshold})
        if res.f_measure > self.best_f:
            self.best_f, self.since_best = res.f_measure, 0
            old = self.best_prefix
            prefix = make_checkpoint(self.model).write(str(self.run_dir / BEST_SUBDIR / f"ckpt-{step}"))
            self.best_prefix = prefix
            self._write_json(step, res)
            if old and old != prefix:
                for f in Path(old).parent.glob(Path(old).name + ".*"):
                    f.unlink(missing_ok=True)
        else:
            self.since_best += 1
            self._write_json(None, res)
        self.stopped = bool(self.tc.early_stop and self.since_best >= self.tc.early_stop)
        return self.stopped

    def _write_json(self, step, res) -> None:
        import json

        path = self.run_dir / BEST_NAME
        saved = json.loads(path.read_text()) if path.exists() else {}
        if step is not None:
            saved = {"checkpoint": str(Path(self.best_prefix).relative_to(self.run_dir)), "step": step,
                     "f_measure": res.f_measure, "threshold": res.threshold,
                     "per_threshold": {str(t): f for t, f in res.per_threshold.items()},
                     "val_pattern": self.tc.val_pattern, "validation_frames": self.validator.frames}
        saved["history"] = self.history
        write_json(path, saved)

    def restore_best(self) -> None:
        from hofam_tf.model.checkpoints import restore_weights

        restore_weights(self.model, self.best_prefix)

    def summary(self) -> dict:
        return {"f_measure": self.best_f, "checkpoint": self.best_prefix, "stopped_early": self.stopped}
