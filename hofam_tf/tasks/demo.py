"""``run_demo``: the embedded default for a fresh machine with no dataset and no weights.

Builds a small synthetic cross-scene set (``hofam_tf.data.synthetic``), runs it through the real data
path (DIS flows -> composite PNGs -> TFRecords, split by scene so the test scenes are unseen),
trains a small-width model on CPU for a few minutes, and tests it on the unseen scenes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from hofam_tf.config import AugmentConfig, FlowConfig, LossConfig, ModelConfig, RunConfig, TrainConfig
from hofam_tf.data.schema import DATASET_INFO


def run_demo(work_dir: str | Path, steps: int = 400, ngf: int = 8, batch_size: int = 4,
             train_scenes: int = 6, test_scenes: int = 2, frames: int = 24, progress: bool = True,
             keep_intermediate: bool = False) -> dict:
    """Returns {"run_dir", "test_dir", "metrics"}; everything is written under ``work_dir``. The
    synthetic frames, composites, TFRecords and intermediate checkpoints are deleted at the end
    unless ``keep_intermediate``; the final model (``run/model.keras``), the TensorBoard logs and
    the test outputs stay."""
    from hofam_tf.data.merging import merge_dataset
    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.tasks.evaluate import run_test
    from hofam_tf.data.synthetic import write_scene
    from hofam_tf.tasks.train import run_train

    work = Path(work_dir)
    raw, comp, rec = work / "raw", work / "composites", work / "tfrecords"
    names = [f"scene{i:02d}" for i in range(train_scenes + test_scenes)]
    for i, name in enumerate(names):
        if not (raw / name / "masks").is_dir():
            write_scene(raw / name, seed=1000 + i, frames=frames)
    # The demo keeps the linear HOP encoding: on its synthetic scenes (busy textures, where DIS's
    # noise floor turns bright under "log") it measured paper F 0.90 with linear and 0.76 with log
    # after 400 steps, while on real unseen scenes log measured better (README, "Cross-scene quality").
    # Those figures were measured with DIS "balanced" and no reverse check (the real-footage
    # defaults came later), which it keeps: its textured objects are what "balanced" tracks well.
    flow = FlowConfig(encoding="linear", dis_preset="balanced", reverse_check=False)
    # Likewise it trains without frame drop, zoom out, the HOP noise floor, the HOP spread and the
    # weight average (defaults chosen on real footage; zoom out, the noise floor and the spread
    # came later and were not measured here): with frame drop and the weight average, its 400
    # steps at threshold 0.5 measured paper F 0.80 instead of 0.90 (fatter masks, precision 0.68);
    # with the soft F term (loss.f_weight=1, off by default) 0.94 this way and 0.88 with both.
    augment = AugmentConfig(frame_drop=0.0, max_crop=1.0, hop_noise=0.0, hop_spread=0)
    if not (rec / DATASET_INFO).exists():
        merge_dataset(raw, comp, flow, progress=progress)
        write_tfrecords(comp, rec, test_sequences=names[train_scenes:], progress=progress)
    cfg = RunConfig(
        model=ModelConfig(ngf=ngf),
        loss=LossConfig(),
        train=dataclasses.replace(TrainConfig(), train_pattern=str(rec / "train-*.tfrecord"), steps=steps,
                                  batch_size=batch_size, learning_rate=1e-3, beta1=0.9,
                                  ckpt_every=max(steps // 4, 1), log_every=25, image_every=100,
                                  shuffle_buffer=500, ema_decay=0.0),
        flow=flow,
        augment=augment,
    )
    run_dir = work / "run"
    run_train(cfg, run_dir, progress=progress)
    test_dir = work / "test"
    metrics = run_test(run_dir, str(rec / "test-*.tfrecord"), test_dir, threshold=0.5, progress=progress)
    if not keep_intermediate:  # keep what a user looks at (test outputs, logs) and the final model
        import shutil

        for folder in (raw, comp, rec, run_dir / "ckpt"):
            shutil.rmtree(folder, ignore_errors=True)
    return {"run_dir": str(run_dir), "test_dir": str(test_dir), "metrics": metrics}
