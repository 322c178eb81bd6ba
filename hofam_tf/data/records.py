"""Composite PNGs -> sharded TFRecords, split by whole sequences (the library side of
``data_prep/tfrecord.py``).

Writes ``REC/train-00000-of-0000N.tfrecord`` ..., ``REC/test-...`` and ``REC/dataset.json``
(splits, sequences, counts, flow settings) last. Every shard is written under a hidden temporary
name and renamed when complete. A sequence goes to train or to test, never both (cross-scene
evaluation). Sequences without masks are left out unless ``include_unlabelled``. The input may
also be a flat folder of the original's 256x768 composites (``flat_composites``).
"""
from __future__ import annotations

import dataclasses
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from hofam_tf.data.composite import binarize_gt, read_composite_tiles
from hofam_tf.config import FlowConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import atomic_path, write_json
from hofam_tf.data.flat_composites import FLAT_KIND, flat_sequences
from hofam_tf.data.schema import DATASET_INFO, encode_example, parse_shard_name, shard_name
from hofam_tf.data.sequence_meta import SequenceMeta

DEFAULT_TEST_FRACTION = 0.25  # a quarter of the sequences (at least one) form the unseen test split


def read_sequences(input_dir: str | Path) -> list[SequenceMeta]:
    """The sequence.json of every sequence folder under ``input_dir`` (sorted by name), or the
    inferred sequences of a flat folder of composites (``flat_sequences``)."""
    root = Path(input_dir)
    if not root.is_dir():
        raise HOFAMInputError(f"{root}: composites folder does not exist")
    has_dirs = any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    if not has_dirs and any(p.suffix.lower() == ".png" for p in root.iterdir()):
        return flat_sequences(root)
    metas = [SequenceMeta.load(folder)
             for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]
    if not metas:
        raise HOFAMInputError(f"{root}: no sequence folders (make the composites first: data_prep/merge.py)")
    return metas


def split_sequences(names: list[str], test_sequences=(), test_fraction: float = 0.0,
                    seed: int = 12138) -> dict[str, list[str]]:
    """Whole sequences -> {"train": [...], "test": [...]}, deterministic for a seed."""
    names = sorted(names)
    if test_sequences:
        unknown = sorted(set(test_sequences) - set(names))
        if unknown:
            raise HOFAMInputError(f"--test_sequences names unknown sequences {unknown}; have {names}")
        test = sorted(test_sequences)
    else:
        n = int(round(len(names) * test_fraction))
        if test_fraction > 0 and n == 0 and len(names) > 1:
            n = 1
        shuffled = names[:]
        random.Random(seed).shuffle(shuffled)
        test = sorted(shuffled[:n])
    return {"train": [s for s in names if s not in test], "test": test}


def write_split(examples: list[tuple[SequenceMeta, str]], output_dir: Path, split: str, per_shard: int,
                gzip: bool, progress: bool = True, workers: int = 2) -> list[str]:
    """Writes (meta, frame_id) examples of one split into shards. Returns the shard names."""
    import tensorflow as tf

    if not examples:
        return []
    count = (len(examples) + per_shard - 1) // per_shard
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    names = []
    bar = tqdm(total=len(examples), desc=split, unit="ex", disable=not progress, leave=False)

    def serialize(item) -> bytes:  # PNG decoding releases the GIL: runs on worker threads
        meta, frame_id = item
        path = Path(meta.folder) / f"{frame_id}.png"
        frame, hop, labels, background = read_composite_tiles(path)
        reference = bool((meta.flow or {}).get("reference_stride", 0))
        if meta.binarize_gt:
            labels = binarize_gt(labels)
        if (background is not None) != reference:
            raise HOFAMInputError(f"{path}: {'a' if background is not None else 'no'} background tile, but the "
                                  f"sequence's flow settings say reference_stride={meta.flow.get('reference_stride', 0)}")
        return encode_example(frame, hop, labels, meta.name, frame_id, meta.flow["taus"], meta.labelled, background)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for s in range(count):
            name = shard_name(split, s, count, gzip)
            with atomic_path(output_dir / name) as tmp:
                with tf.io.TFRecordWriter(str(tmp), options) as writer:
                    for record in pool.map(serialize, examples[s * per_shard : (s + 1) * per_shard]):
                        writer.write(record)
                        bar.update(1)
            names.append(name)
    bar.close()
    return names


def common_flow(metas: list[SequenceMeta]) -> dict | None:
    """The flow settings all sequences were made with (from their sequence.json), carried into
    dataset.json so that training adopts them; None when unknown (the original's flat folders).
    Sequences made with different settings cannot share one dataset."""
    flows = {FlowConfig.from_dict(m.flow) if m.flow else None for m in metas if m.kind != FLAT_KIND}
    if len(flows) > 1:
        detail = "; ".join(f"{m.name}: {m.flow}" for m in metas[:4])
        raise HOFAMInputError(f"sequences made with different flow settings cannot be mixed in one dataset ({detail})")
    flow = next(iter(flows), None)
    return dataclasses.asdict(flow) if flow else None


def clear_output(out: Path) -> None:
    """Prepares the output folder: removes what an earlier run of this tool left (shards, its
    dataset.json, hidden temporary files), dataset.json first so a crash in between leaves a set
    that readers refuse; refuses a folder holding anything else."""
    out.mkdir(parents=True, exist_ok=True)
    entries = [p for p in out.iterdir()]
    foreign = [p.name for p in entries if not (p.name == DATASET_INFO or p.name.startswith(".tmp-")
                                             or parse_shard_name(p.name))]
    if foreign:
        raise HOFAMInputError(f"{out}: the output folder holds files this tool did not write "
                              f"({', '.join(sorted(foreign)[:3])}); use an empty or new folder")
    (out / DATASET_INFO).unlink(missing_ok=True)
    for p in entries:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def write_tfrecords(input_dir, output_dir, test_sequences=(), test_fraction: float = 0.0,
                    seed: int = 12138, examples_per_shard: int = 256, gzip: bool = False,
                    include_unlabelled: bool = False, progress: bool = True) -> dict:
    """Composites under ``input_dir`` -> shards + dataset.json under ``output_dir``.

    Returns the dataset.json content.
    """
    if examples_per_shard < 1:
        raise HOFAMInputError("--examples_per_shard must be positive")
    metas = read_sequences(input_dir)
    skipped = [m.name for m in metas if not m.labelled and not include_unlabelled]
    metas = [m for m in metas if m.labelled or include_unlabelled]
    if not metas:
        raise HOFAMInputError(f"{input_dir}: only unlabelled sequences ({skipped}); "
                              "pass --include_unlabelled to write them anyway")
    by_name = {m.name: m for m in metas}
    flow = common_flow(metas)
    splits = split_sequences(list(by_name), test_sequences, test_fraction, seed)
    out = Path(output_dir)
    clear_output(out)
    info = {"splits": {}, "skipped_unlabelled": skipped, "seed": seed, "gzip": gzip, "flow": flow}
    for split, seq_names in splits.items():
        examples = [(by_name[n], f) for n in seq_names for f in by_name[n].frames]
        random.Random(seed).shuffle(examples)  # deterministic for a seed
        shards = write_split(examples, out, split, examples_per_shard, gzip, progress)
        info["splits"][split] = {"sequences": seq_names, "examples": len(examples), "shards": shards}
    write_json(out / DATASET_INFO, info)
    return info
