"""tf.data input pipelines over the TFRecords described in ``hofam_tf.data.schema``."""
from __future__ import annotations

import glob
from pathlib import Path

import tensorflow as tf

from hofam_tf.data.composite import IGNORED_LABELS
from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, TILE, FlowConfig, model_inputs
from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.schema import DATASET_INFO, compression_of, decode_examples, parse_shard_name, sequence_names


def list_tfrecords(pattern: str | list[str]) -> list[str]:
    """Sorted files matching a glob (or comma-separated globs / a list). Raises if none match."""
    patterns = pattern if isinstance(pattern, (list, tuple)) else str(pattern).split(",")
    files = sorted({f for p in patterns if p for f in glob.glob(p.strip())})
    files = [f for f in files if not Path(f).name.startswith(".")]
    if not files:
        raise HOFAMInputError(f"TFRecord pattern {pattern!r} matches no file")
    check_shard_sets(files)
    return files


def check_shard_sets(files: list[str]) -> None:
    """Refuses incomplete or mixed sets of shards named ``{split}-NNNNN-of-NNNNN.tfrecord``: every
    such set must come from a finished ``data_prep/tfrecord.py`` (its folder holds dataset.json),
    hold all N shards, and not be mixed with a set of another N. Files named otherwise (the
    original's own TFRecords, say) are taken as they are."""
    sets: dict[tuple[str, str], dict[int, set]] = {}
    for f in files:
        parsed = parse_shard_name(Path(f).name)
        if parsed:
            split, index, count = parsed
            sets.setdefault((str(Path(f).parent), split), {}).setdefault(count, set()).add(index)
    for (folder, split), by_count in sorted(sets.items()):
        if len(by_count) > 1:
            counts = ", ".join(f"-of-{n:05d}" for n in sorted(by_count))
            raise HOFAMInputError(f"{folder}: {split} shards of two different writes are mixed ({counts}); "
                                  "re-run data_prep/tfrecord.py into an empty folder")
        (count, indices), = by_count.items()
        missing = sorted(set(range(count)) - indices)
        if missing:
            names = ", ".join(f"{split}-{i:05d}-of-{count:05d}" for i in missing[:3])
            raise HOFAMInputError(f"{folder}: incomplete {split} set: {len(missing)} of {count} shards missing ({names})")
        if not (Path(folder) / DATASET_INFO).exists():
            raise HOFAMInputError(f"{folder}: no {DATASET_INFO}: data_prep/tfrecord.py did not finish writing "
                                  "these shards; run it again")


def check_required_keys(files: list[str], background: bool = False) -> None:
    """Reads the first record of every file and raises HOFAMInputError naming a file whose
    records lack a key the reader needs (``schema.REQUIRED_KEYS``, and ``img_background`` when
    ``background``) or that holds no Example."""
    from hofam_tf.data.schema import KEY_BACKGROUND, REQUIRED_KEYS

    for path in files:
        try:
            first = next(iter(tf.data.TFRecordDataset(path, compression_type=compression_of(path)).take(1)), None)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.UnknownError) as err:
            raise HOFAMInputError(f"{path}: not a readable TFRecord ({str(err).splitlines()[0]})") from None
        if first is None:
            continue
        try:
            keys = set(tf.train.Example.FromString(first.numpy()).features.feature)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError
            raise HOFAMInputError(f"{path}: record 0 is not a tf.train.Example") from None
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        if missing:
            raise HOFAMInputError(f"{path}: record 0 lacks the key(s) {missing} "
                                  f"(a HOFAM record needs {list(REQUIRED_KEYS)})")
        if background and KEY_BACKGROUND not in keys:
            raise HOFAMInputError(f"{path}: record 0 has no {KEY_BACKGROUND!r}: the background-reference model needs "
                                  "records made with --reference_stride (data_prep/merge.py, then data_prep/tfrecord.py)")


def check_tfrecords(files: list[str]) -> int:
    """Reads every record of every file; raises HOFAMInputError naming a corrupt or truncated
    file. Returns the number of records."""
    total = 0
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=compression_of(path)):
                total += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.UnknownError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise HOFAMInputError(f"{path}: corrupt or truncated TFRecord after {total} records ({msg})") from None
    return total


def _records(files: list[str], shuffle_files: bool, seed: int) -> tf.data.Dataset:
    comps = {compression_of(f) for f in files}
    if len(comps) > 1:
        raise HOFAMInputError("cannot mix GZIP (.gz) and uncompressed TFRecords in one pattern")
    comp = comps.pop()
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed)
    return ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=comp),
        cycle_length=min(4, len(files)) if shuffle_files else 1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )


def scene_counts(files: list[str]) -> dict[str, int]:
    """Examples per ``sequence`` name in ``files`` (records with only the original keys count
    under "")."""
    from collections import Counter

    counts = Counter(name.decode() for batch in _records(files, False, 0).batch(256)
                     for name in sequence_names(batch).numpy())
    return dict(counts)


def scene_acceptance(counts: dict[str, int], balance: float) -> dict[str, float]:
    """The probability that ``build_dataset`` keeps a drawn example of each scene so that scene s is
    trained on in proportion to count_s ** (1 - balance): (min count / count_s) ** balance. 0 keeps
    every example (scenes weigh as many examples as they have), 1 makes every scene equally likely."""
    least = min(counts.values())
    return {name: (least / n) ** balance for name, n in counts.items()}


def _balanced(ds: tf.data.Dataset, files: list[str], balance: float, seed: int) -> tf.data.Dataset:
    """``ds`` (serialized examples, repeated) thinned by ``scene_acceptance``: each example is kept
    with its scene's probability, drawn statelessly from ``seed`` and the example's position (as
    the seed pair's negative second half, which the batch augmentation's never is). Counting the
    scenes reads every record once before training starts."""
    accept = scene_acceptance(scene_counts(files), balance)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(accept)), tf.constant(list(accept.values()), tf.float32)),
        default_value=1.0)

    def with_acceptance(serialized):  # the parse runs in parallel; the filter only draws
        return table.lookup(sequence_names(serialized[None])[0]), serialized

    def keep(index, item):
        draw = tf.random.stateless_uniform([], tf.stack([tf.constant(seed, tf.int64), -1 - index]))
        return draw < item[0]

    ds = ds.map(with_acceptance, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.enumerate().filter(keep).map(lambda index, item: item[1])


def parse_examples(serialized, ignore_labels: bool = True, background: bool = False) -> dict:
    """A batch of serialized examples [B] -> ``schema.decode_examples``'s arrays (with the
    background reference when ``background``) plus what
    training and scoring need: mask float32 [B,256,256,1] in {0,1} (foreground: GT > 200) and
    weight float32 [B,256,256,1], 0 where the label is 85/170 (``composite.IGNORED_LABELS``) when
    ``ignore_labels``, else 1."""
    ex = decode_examples(serialized, background)
    ex["mask"] = tf.cast(ex["gt"] > 200, tf.float32)
    if ignore_labels:
        ignored = tf.zeros_like(ex["labels"], tf.bool)
        for value in IGNORED_LABELS:
            ignored = ignored | tf.equal(ex["labels"], value)
        ex["weight"] = tf.cast(~ignored, tf.float32)[..., None]
    else:
        ex["weight"] = tf.ones_like(ex["mask"])
    return ex


def read_examples(pattern, ignore_labels: bool = True, batch_size: int | None = None,
                  background: bool = False) -> tf.data.Dataset:
    """Every example, in file order, as the dict of ``parse_examples``: batched by
    ``batch_size`` (the last batch may be smaller), or one example at a time when None."""
    files = list_tfrecords(pattern)
    check_required_keys(files, background)
    parse = tf.autograph.experimental.do_not_convert(lambda s: parse_examples(s, ignore_labels, background))
    ds = _records(files, False, 0).batch(batch_size or 64).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds if batch_size else ds.unbatch()


def build_dataset(pattern, batch_size: int = 1, training: bool = True, shuffle_buffer: int = 2000,
                  seed: int = 12138, ignore_labels: bool = True, repeat: bool | None = None,
                  with_target_num: bool = False, size: tuple[int, int] | None = None,
                  augment=None, flow=None, scene_balance: float = 0.0) -> tf.data.Dataset:
    """Batches ``({"frame", "hop"}, mask, weight)`` for training or evaluation.

    frame, hop (and background, when ``flow.reference_stride`` says the records hold the background
    reference): uint8 [B,256,256,3] (the model normalises); mask: float32 [B,256,256,1] in {0,1};
    weight: float32 [B,256,256,1], 0 on ignored pixels (85/170 when ``ignore_labels``).
    ``with_target_num`` appends the int64 [B] instance counts used by the class-in-scale loss.
    Training shuffles files and examples with ``seed`` and repeats forever. ``size`` (H, W)
    resizes the 256x256 tiles for a model of another input size: frame and HOP bilinearly (kept as
    float bytes), mask and weight with nearest neighbour. ``augment`` (an ``AugmentConfig`` with
    ``enabled``) augments each batch with the stateless seed (``seed``, batch number), see
    ``hofam_tf.data.augment``; frame and HOP then come as float32 bytes. ``flow`` (a ``FlowConfig``;
    None: the defaults) says how the records' HOP images were made, for the augmentation.
    ``scene_balance`` (training only; ``TrainConfig.scene_balance``): 0 draws every example equally
    often, so a scene weighs as many examples as it has; above 0 the shuffled stream is thinned
    per scene (``scene_acceptance``; scenes by the records' ``sequence`` key) towards equal scenes at 1.
    """
    files = list_tfrecords(pattern)
    background = bool(flow is not None and flow.reference_stride)
    check_required_keys(files, background)
    ds = _records(files, training, seed)
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat if repeat is not None else training:
        ds = ds.repeat()
    if training and scene_balance:
        ds = _balanced(ds, files, scene_balance, seed)

    augmenting = augment is not None and augment.enabled

    def to_tuple(index, serialized):  # parses a whole batch at once (vectorised, faster than per example)
        ex = parse_examples(serialized, ignore_labels, background)
        if augmenting:
            from hofam_tf.data.augment import augment_batch

            ex = augment_batch(ex, tf.stack([tf.constant(seed, tf.int64), index]), augment, flow or FlowConfig())
        if size is not None and tuple(size) != (TILE, TILE):
            for k in (FRAME_KEY, HOP_KEY, BACKGROUND_KEY):
                if k in ex:
                    ex[k] = tf.image.resize(tf.cast(ex[k], tf.float32), size, method="bilinear")
            for k in ("mask", "weight"):
                ex[k] = tf.image.resize(ex[k], size, method="nearest")
        out = (model_inputs(ex[FRAME_KEY], ex[HOP_KEY], ex.get(BACKGROUND_KEY)), ex["mask"], ex["weight"])
        return out + (ex["target_num"],) if with_target_num else out

    ds = ds.batch(batch_size, drop_remainder=training).enumerate()
    # traced as written: no tensor-valued Python control flow, so autograph's conversion (seconds) is skipped
    to_tuple = tf.autograph.experimental.do_not_convert(to_tuple)
    return ds.map(to_tuple, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
