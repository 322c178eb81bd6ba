"""Trains the release model shipped in ``checkpoints/release`` (README, "Release model").

Data: every labelled scene of ``../shared/data`` (3 CDnet 2014, 9 SBI 2015, 9 UCSD; DIS HOP computed
here; ``--groups surveillance`` keeps the 12 CDnet 2014 / SBI 2015 scenes, as the shipped model
was trained) plus the authors' demo composites (LASIESTA, their own HOP). No scene is held out: the number of
steps and the threshold come from the leave-scenes-out benchmark (``bench/bench_quality.py``),
whose folds chose them on validation scenes; they are passed here as ``--steps`` and
``--threshold``. Writes ``config.json``, ``model.keras`` and ``best.json`` (threshold, recipe).

    python -m bench.train_release --steps 600 --threshold 0.97 --groups surveillance   # the shipped model
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.bench_quality import ROOT, apply_overrides, composites, group_arg, scene_sources  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/hofam_release")
    ap.add_argument("--out", default=str(ROOT / "checkpoints" / "release"))
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--ngf", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=12138)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--groups", default="", help="scene groups to train on (bench.bench_quality.SCENE_GROUPS; "
                                                 "default: every labelled scene of --data)")
    ap.add_argument("--threshold_from", default="leave-scenes-out benchmark (python -m bench.bench_quality): the "
                    "cross-validated threshold, best mean validation F over the folds' validation scenes",
                    help="where --threshold comes from (stored in best.json)")
    args = ap.parse_args(argv)

    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.model.checkpoints import BEST_NAME, CONFIG_NAME, FINAL_MODEL
    from hofam_tf.config import ModelConfig, RunConfig, TrainConfig
    from hofam_tf.files import atomic_path, write_json
    from hofam_tf.tasks.train import run_train

    work = Path(args.work)
    base = RunConfig(model=ModelConfig(ngf=args.ngf),
                     train=TrainConfig(steps=args.steps, batch_size=args.batch, learning_rate=1e-3, beta1=0.9,
                                       seed=args.seed, shuffle_buffer=2000, ckpt_every=args.steps, log_every=50,
                                       image_every=0))
    cfg = apply_overrides(base, args.sets)
    sources = scene_sources(Path(args.data), group_arg(args.groups))
    if not sources:
        raise SystemExit(f"{args.data}: no labelled scenes under cdnet2014/, sbi2015/ or ucsd/")
    comp = composites(sources, work, cfg.flow)
    real_rec, demo_rec = work / f"records_real_{comp.name}", work / "records_demo"  # keyed by the flow settings
    for folder, src in ((real_rec, comp), (demo_rec, Path(args.data) / "hofam_demo")):
        if not (folder / "dataset.json").exists():
            write_tfrecords(src, folder, examples_per_shard=128, progress=False)
    pattern = f"{real_rec}/train-*.tfrecord,{demo_rec}/train-*.tfrecord"
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, train_pattern=pattern))
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.time()
    result = run_train(cfg, run, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / FINAL_MODEL) as tmp:  # a half-copied model is never taken for complete
        shutil.copy(run / FINAL_MODEL, tmp)
    saved = RunConfig.from_dict(json.loads((run / CONFIG_NAME).read_text()))
    saved = dataclasses.replace(saved, train=dataclasses.replace(saved.train, train_pattern=""))
    saved.save(out / CONFIG_NAME)
    info = {"threshold": args.threshold, "steps": result["steps"], "recipe": args.sets, "ngf": args.ngf,
            "groups": group_arg(args.groups) or "all",
            "batch": args.batch, "seed": args.seed, "training_scenes": sorted(sources) + ["hofam_demo"],
            "threshold_from": args.threshold_from,
            "train_seconds": time.time() - t0, "final_loss": result.get("last_loss")}
    write_json(out / BEST_NAME, info)
    print(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    main()
