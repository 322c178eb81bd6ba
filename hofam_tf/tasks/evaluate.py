"""``run_test`` (predict every test example, write masks / panels / error maps / metrics.json)
and ``run_score`` (score any method's mask PNGs against composites or CDnet-style folders).

Output layout of both (``output_dir``):
    masks/<sequence>/<frame id>.png    0 / 255 foreground mask at the threshold
    panels/<sequence>/<frame id>.png   [frame | GT | HOP | prediction] (test only)
    errors/<sequence>/<frame id>.png   TP white, FP green, FN red, ignored grey
    metrics.json                       see ``hofam_tf.tasks.metrics``
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from hofam_tf.model.graph_options import graph_options
from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, model_inputs
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import read_image, safe_name, write_json, write_png
from hofam_tf.tasks.metrics import Scorer, byte_threshold, to_json_safe
from hofam_tf.data.sequence_meta import SEQUENCE_META, SequenceMeta
from hofam_tf.tasks.viz import error_map, test_panel

METRICS_NAME = "metrics.json"


def _write_outputs(out: Path, seq: str, fid: str, frame, hop, labels, prob, threshold, panels=True):
    fg = prob >= threshold
    write_png(out / "masks" / seq / f"{fid}.png", np.where(fg, 255, 0).astype(np.uint8))
    write_png(out / "errors" / seq / f"{fid}.png", error_map(fg, labels))
    if panels:
        write_png(out / "panels" / seq / f"{fid}.png", test_panel(frame, labels, hop, prob))


@graph_options()
def run_test(ckpt, test_pattern, output_dir, threshold: float = 0.5, batch_size: int = 8,
             panels: bool = True, progress: bool = True, model_overrides: dict | None = None,
             precision: str | None = None) -> dict:
    """Predicts every example of ``test_pattern`` with the model in ``ckpt``; returns metrics."""
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.model.hofam import tile_probabilities
    from hofam_tf.data.dataset import check_tfrecords, list_tfrecords, read_examples

    if batch_size < 1:
        raise HOFAMInputError(f"eval batch size must be at least 1, got {batch_size}")
    files = list_tfrecords(test_pattern)
    total = check_tfrecords(files)
    model, cfg = load_for_inference(ckpt, model_overrides, precision)
    predict = tile_probabilities(model)

    out = Path(output_dir)
    scorer = Scorer(threshold)
    unlabelled = 0
    ds = read_examples(files, ignore_labels=True, batch_size=batch_size,
                       background=cfg.model.reference).prefetch(2)
    index = 0
    with tqdm(total=total, desc="test", unit="frame", disable=not progress) as bar:
        for ex in ds:
            prob = predict(model_inputs(ex[FRAME_KEY], ex[HOP_KEY], ex.get(BACKGROUND_KEY))).numpy()[..., 0]
            for b in range(prob.shape[0]):
                seq = ex["sequence"][b].numpy().decode(errors="replace") or "unnamed"
                fid = ex["frame_id"][b].numpy().decode(errors="replace") or f"{index:06d}"
                try:
                    safe_name(seq, "sequence")
                    safe_name(fid, "frame_id")
                except HOFAMInputError as err:
                    raise HOFAMInputError(f"{test_pattern}: record {index}: {err}") from None
                labels = ex["labels"][b].numpy()
                _write_outputs(out, seq, fid, ex[FRAME_KEY][b].numpy(), ex[HOP_KEY][b].numpy(), labels,
                               prob[b], threshold, panels)
                if int(ex["labelled"][b]):
                    scorer.add_probability(prob[b], labels, seq)
                else:
                    unlabelled += 1
                index += 1
                bar.update(1)
    metrics = scorer.result()
    metrics.update({"checkpoint": str(ckpt), "test_pattern": str(test_pattern),
                    "unlabelled_frames": unlabelled})
    write_json(out / METRICS_NAME, to_json_safe(metrics))
    return metrics


def _gt_items(gt_dir: Path):
    """(sequence, its prediction sub-folder, frame id, gt file name, labels) for composites (a
    flat folder of the original's composites: sequences inferred, predictions side by side; or
    composite sequence folders with ``sequence.json``), or for any labelled sequence folders
    ``hofam_tf.data.sources`` reads (CDnet/SBI, LASIESTA, frames with masks). ``labels`` are the raw
    label bytes in every layout."""
    from hofam_tf.data.composite import read_composite
    from hofam_tf.data.sources import discover

    seq_dirs = [p for p in sorted(gt_dir.iterdir()) if p.is_dir()] if gt_dir.is_dir() else []
    if gt_dir.is_dir() and not seq_dirs and any(p.suffix.lower() == ".png" for p in gt_dir.iterdir()):
        from hofam_tf.data.flat_composites import flat_sequences

        # the original's flat folder: masks named like it. The GT tile goes to the scorer as it is,
        # as in every other layout: the scoring rules (hofam_tf.tasks.metrics) decide which values count.
        # The > 200 binarisation (meta.binarize_gt) is the original's rule for training records only.
        for meta in flat_sequences(gt_dir):
            for fid in meta.frames:
                yield meta.name, "", fid, f"{fid}.png", read_composite(gt_dir / f"{fid}.png")[2]
        return
    composite_dirs = [d for d in seq_dirs if (d / SEQUENCE_META).exists()]
    if composite_dirs:
        for d in composite_dirs:
            meta = SequenceMeta.load(d)
            if not meta.labelled:
                continue
            for fid in meta.frames:
                yield d.name, d.name, fid, f"{fid}.png", read_composite(d / f"{fid}.png")[2]
        return
    for seq in discover(gt_dir):
        if seq.kind == "video" or not seq.labelled:
            continue
        for i, fid, labels in seq.iter_labels():
            yield seq.name, seq.name, fid, seq.mask_paths[i].name, labels


def _find_prediction(pred_dir: Path, seq: str, fid: str, gt_name: str) -> Path | None:
    for cand in (pred_dir / seq / gt_name, pred_dir / seq / f"{fid}.png", pred_dir / seq / f"bin{fid}.png",
                 pred_dir / seq / "masks" / f"{fid}.png", pred_dir / seq / "masks" / f"bin{fid}.png"):
        if cand.exists():
            return cand
    return None


def run_score(pred_dir, gt_dir, output_dir, threshold: float = 0.5, progress: bool = True) -> dict:
    """Scores mask PNGs ``pred_dir/<sequence>/<name>`` against ground truth in ``gt_dir``.

    ``<name>`` is the GT file's name (``gt000600.png``), ``<frame id>.png``, CDnet's
    ``bin000600.png``, or ``masks/<frame id>.png`` / ``masks/bin000600.png`` (the layouts ``--phase=predict`` writes, so its
    output folder is a ``pred_dir`` as it is). Predictions of another size are resized to the GT (nearest). Only sequences
    with a folder in ``pred_dir`` are scored (the others are listed as ``skipped_sequences``);
    inside a scored sequence, a GT frame without prediction is an error naming the expected file.
    """
    import cv2

    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise HOFAMInputError(f"{pred_dir}: predictions folder does not exist")
    if not gt_dir.exists():
        raise HOFAMInputError(f"{gt_dir}: ground-truth folder does not exist")
    scorer = Scorer(threshold)
    cut = byte_threshold(threshold)
    out = Path(output_dir)
    skipped = set()
    for seq, sub, fid, gt_name, labels in tqdm(_gt_items(gt_dir), desc="score", unit="frame", disable=not progress):
        if not (pred_dir / sub).is_dir():
            skipped.add(seq)
            continue
        path = _find_prediction(pred_dir, sub, fid, gt_name)
        if path is None:
            raise HOFAMInputError(f"{pred_dir / sub / gt_name}: no prediction for this ground-truth frame")
        pred = read_image(path, "L")
        if pred.shape != labels.shape:
            pred = cv2.resize(pred, labels.shape[::-1], interpolation=cv2.INTER_NEAREST)
        scorer.add_bytes(pred, labels, seq)
        write_png(out / "errors" / seq / f"{fid}.png", error_map(pred >= cut, labels))
    if scorer.images == 0:
        raise HOFAMInputError(f"{gt_dir}: no labelled ground-truth frame matches a sequence folder "
                              f"of {pred_dir}")
    metrics = scorer.result()
    metrics.update({"pred_dir": str(pred_dir), "gt_dir": str(gt_dir),
                    "skipped_sequences": sorted(skipped)})
    write_json(out / METRICS_NAME, to_json_safe(metrics))
    return metrics
