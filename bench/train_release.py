"""Trains the release model shipped in ``checkpoints/release`` (README, "Release model").

Data: every labelled scene of ``../shared/data`` (3 CDnet 2014, 9 SBI 2015, 9 UCSD; DIS HOP computed
here; ``--groups surveillance`` keeps the 12 CDnet 2014 / SBI 2015 scenes) plus the authors' demo
composites (LASIESTA, their own HOP).

Validation scenes: ``--val_scenes`` (default: one scene of each scene group, drawn with the seed) are
held out of training. The run validates on them every ``--val_every`` updates, keeps the weights
with the best validation F and takes the threshold that gave it, so the number of updates and the
threshold are chosen on scenes the model never trained on (``--threshold`` overrides the latter
with a number chosen elsewhere). ``best.json`` records the recipe, the updates, the training and
validation scenes, the validation curve and where each number came from. Last, the validation scenes
choose predict's post-processing for the model among ``--post_grid`` (scene-adaptive threshold,
median gate radius and mode; ``bench.bench_quality.POST_GRID``), segmented at native size and
scored by CDnet rules: best.json's "post" holds the choice, which predict takes as its defaults
for this model (flags given win). A stopped run resumes
where its last checkpoint left it when the same command runs again (``--fresh`` starts over).
``--post_only`` makes that last choice again for the model already in ``--out``, on the validation
scenes its best.json names, over today's grid (nothing is trained; the rest of best.json stays).

    python -m bench.train_release --steps 8000     # the shipped model (about 45 minutes on 2 cores)
    python -m bench.train_release --post_only      # its post-processing chosen again over today's grid
    python -m bench.budget_curve                   # then: unseen-scene F at each kept checkpoint
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.bench_quality import (ROOT, apply_overrides, composites, demo_records, fold_records, group_arg,  # noqa: E402
                                  pick_scenes, post_grid_arg, post_on_validation, scene_group, scene_sources)


def validation_scenes(sources: dict, data: Path, names: str, seed: int) -> list[str]:
    """The scenes held out for validation: ``names`` (comma-separated; "none": no scene), else one
    scene of each scene group, drawn with ``seed``."""
    if names == "none":
        return []
    if names:
        chosen = [n for n in names.split(",") if n]
        unknown = sorted(set(chosen) - set(sources))
        if unknown:
            raise SystemExit(f"--val_scenes: {unknown} are not labelled scenes of {data}")
        return sorted(chosen)
    groups: dict[str, list[str]] = {}
    for n in sorted(sources):
        groups.setdefault(scene_group(sources[n], data), []).append(n)
    rng = random.Random(seed)
    return sorted(rng.choice(groups[g]) for g in sorted(groups))


MIN_STORAGE_AGREEMENT = 0.999  # float16 storage: the least fraction of validation pixels whose masks agree


def store_half(out: Path, val_pattern: str, threshold: float) -> dict:
    """Rewrites ``out``'s model.keras with float16 weights (``checkpoints.save_half``) once its masks
    at ``threshold`` agree with the float32 model's on at least ``MIN_STORAGE_AGREEMENT`` of the
    validation pixels; the float32 file stays otherwise, and the run stops with an error."""
    from hofam_tf.model.checkpoints import FINAL_MODEL, load_for_inference, save_half
    from hofam_tf.tasks.validation import Validator

    if not val_pattern:
        raise SystemExit("--storage float16 needs validation scenes to check the masks against float32")
    full, cfg = load_for_inference(out / FINAL_MODEL, precision="float32")  # both compared in float32
    candidate = out / ".half.keras"
    try:
        save_half(full, cfg, candidate)
        half, _ = load_for_inference(candidate, precision="float32")
        agreement = Validator(val_pattern, background=cfg.model.reference).mask_agreement(full, half, threshold)
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    if agreement < MIN_STORAGE_AGREEMENT:
        candidate.unlink()
        raise SystemExit(f"{out / FINAL_MODEL}: float16 storage changes the masks of {1 - agreement:.4%} of the "
                         f"validation pixels (at most {1 - MIN_STORAGE_AGREEMENT:.1%}); kept in float32")
    os.replace(candidate, out / FINAL_MODEL)
    return {"dtype": "float16", "mask_agreement_with_float32": agreement, "threshold": threshold,
            "on": "every pixel of the validation records"}


def record_post(info: dict, out: Path, grid: dict, val: list[str], sources: dict, work: Path,
                reported: list[str]) -> dict:
    """best.json's "post": the validation scenes ``val`` choose predict's post-processing for the model
    in ``out`` at its threshold over ``grid`` (``post_on_validation``, under ``work``/val_post, emptied
    first; ``reported``: scenes that must not choose); ``out``/best.json is written with it."""
    from hofam_tf.files import write_json
    from hofam_tf.model.checkpoints import BEST_NAME

    shutil.rmtree(work / "val_post", ignore_errors=True)
    info["post"] = post_on_validation(grid, val, sources, out, info["threshold"], work, reported=reported)
    write_json(out / BEST_NAME, info)
    return info


def choose_post_again(out: Path, data: Path, work: Path, grid: dict) -> dict:
    """The post-processing of the model in ``out`` chosen again over ``grid`` on the validation scenes
    its best.json names (``record_post``, the step ``main`` ends with); best.json keeps every other
    entry. Returns the new best.json."""
    from hofam_tf.model.checkpoints import BEST_NAME

    if not (out / BEST_NAME).is_file():
        raise SystemExit(f"{out / BEST_NAME}: no release record to choose the post-processing for")
    info = json.loads((out / BEST_NAME).read_text())
    val = info.get("validation_scenes") or []
    if not val:
        raise SystemExit(f"{out / BEST_NAME}: names no validation scenes, so nothing may choose its post-processing")
    sources = scene_sources(data)
    missing = sorted(set(val) - set(sources))
    if missing:
        raise SystemExit(f"{data}: the validation scenes {missing} of {out / BEST_NAME} are not labelled scenes here")
    return record_post(info, out, grid, val, sources, work, reported=info.get("training_scenes", []))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/hofam_release")
    ap.add_argument("--out", default=str(ROOT / "checkpoints" / "release"))
    ap.add_argument("--steps", type=int, default=None, help="most updates; the validated best is kept (required "
                                                               "unless --post_only)")
    ap.add_argument("--post_only", action="store_true",
                    help="train nothing: choose the post-processing of the model in --out again over --post_grid, "
                         "on the validation scenes its best.json names")
    ap.add_argument("--threshold", type=float, default=None,
                    help="stored threshold (default: the one chosen on the validation scenes)")
    ap.add_argument("--val_scenes", default="",
                    help="comma-separated scenes held out for validation (default: one of each scene group, "
                         "drawn with --seed); 'none': train on every scene, keep the last weights")
    ap.add_argument("--val_every", type=int, default=500)
    ap.add_argument("--fresh", action="store_true", help="delete the run of an earlier call instead of resuming it")
    ap.add_argument("--ngf", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=12138)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--scenes", default="", help="comma-separated scene names (default: every scene of --groups)")
    ap.add_argument("--groups", default="", help="scene groups to train on (bench.bench_quality.SCENE_GROUPS; "
                                                 "default: every labelled scene of --data)")
    ap.add_argument("--post_grid", default="all",
                    help="predict's post-processing entries (bench.bench_quality.POST_GRID) tried on the validation "
                         "scenes; the best is stored in best.json as the model's predict defaults ('none': not)")
    ap.add_argument("--storage", choices=("float32", "float16"), default="float32",
                    help="dtype of model.keras's weights: float16 halves the file (predict computes in float32 or "
                         "bfloat16 either way); refused unless its masks agree with float32's on >= 99.9%% of the "
                         "validation pixels")
    ap.add_argument("--threshold_from", default="",
                    help="where --threshold comes from (stored in best.json; required with --threshold)")
    args = ap.parse_args(argv)
    if args.threshold is not None and not args.threshold_from:
        ap.error("--threshold needs --threshold_from: say where the number was chosen")
    if args.post_only:
        if args.post_grid == "none":
            ap.error("--post_only needs a --post_grid to choose from")
        info = choose_post_again(Path(args.out), Path(args.data), Path(args.work), post_grid_arg(args.post_grid))
        print(json.dumps(info, indent=1))
        return info
    if args.steps is None:
        ap.error("--steps is required (or --post_only)")

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
    sources = pick_scenes(sources, args.scenes, args.data)
    if not sources:
        raise SystemExit(f"{args.data}: no labelled scenes under cdnet2014/, sbi2015/ or ucsd/")
    val = validation_scenes(sources, Path(args.data), args.val_scenes, args.seed)
    train = sorted(n for n in sources if n not in val)
    comp = composites(sources, work, cfg.flow)
    split = hashlib.sha1(",".join(val).encode()).hexdigest()[:8]
    real_rec = work / f"records_real_{comp.name}_{split}"  # keyed by flow and split
    if not (real_rec / "dataset.json").exists():
        fold_records(comp, sources, train, val, real_rec)
    pattern = f"{real_rec}/train-*.tfrecord,{demo_records(Path(args.data), work)}"
    ckpt_every = min(args.val_every, args.steps)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, train_pattern=pattern, val_pattern=str(real_rec / "test-*.tfrecord") if val else "",
        val_every=args.val_every, ckpt_every=ckpt_every,
        keep_ckpts=args.steps // ckpt_every + 1))  # all: bench.budget_curve reads them
    run = work / "run"
    if args.fresh:
        shutil.rmtree(run, ignore_errors=True)
    out = Path(args.out)
    prior = json.loads((out / BEST_NAME).read_text()) if (out / BEST_NAME).exists() else {}
    t0 = time.time()
    result = run_train(cfg, run, progress=True)
    train_seconds, final_loss = time.time() - t0, result.get("last_loss")
    if result["steps"] == result.get("resumed_from") and prior.get("max_steps") == args.steps and \
            prior.get("validation_scenes") == val:  # a finished run again: keep what training it took
        train_seconds, final_loss = prior.get("train_seconds"), prior.get("final_loss")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / FINAL_MODEL) as tmp:  # a half-copied model is never taken for complete
        shutil.copy(run / FINAL_MODEL, tmp)
    saved = RunConfig.from_dict(json.loads((run / CONFIG_NAME).read_text()))
    saved = dataclasses.replace(saved, train=dataclasses.replace(saved.train, train_pattern=""))
    saved.save(out / CONFIG_NAME)
    validated = json.loads((run / BEST_NAME).read_text()) if val else {}
    from hofam_tf.tasks.validation import THRESHOLDS

    if val and {float(t) for t in validated.get("per_threshold", {})} != set(THRESHOLDS):
        # the run validated over another threshold grid: the kept model scored again over today's
        from hofam_tf.model.checkpoints import load_for_inference
        from hofam_tf.tasks.validation import Validator

        model, run_cfg = load_for_inference(out)
        scored = Validator(cfg.train.val_pattern, background=run_cfg.model.reference).evaluate(model)
        validated.update(threshold=scored.threshold, f_measure=scored.f_measure, per_threshold=scored.per_threshold)
    threshold = args.threshold if args.threshold is not None else validated.get("threshold", 0.5)
    info = {"threshold": threshold, "steps": validated.get("step", result["steps"]), "max_steps": args.steps,
            "recipe": args.sets, "ngf": args.ngf, "groups": group_arg(args.groups) or "all",
            "batch": args.batch, "seed": args.seed, "training_scenes": train + ["hofam_demo"],
            "validation_scenes": val,
            "steps_from": f"best validation F on {val} over {args.steps} updates" if val else "the last update",
            "threshold_from": args.threshold_from if args.threshold is not None else
            (f"best validation F on {val} at the kept step, over the grid hofam_tf.tasks.validation.THRESHOLDS"
             if val else "default 0.5"),
            "validation_f": validated.get("f_measure"),
            "validation_curve": {h["step"]: h["f_measure"] for h in validated.get("history", [])},
            "validation_per_threshold": validated.get("per_threshold"),
            "train_seconds": train_seconds, "final_loss": final_loss}
    if args.storage == "float16":
        info["storage"] = store_half(out, cfg.train.val_pattern if val else "", threshold)
    write_json(out / BEST_NAME, info)
    grid = post_grid_arg(args.post_grid) if val else {}
    if grid:  # the validation scenes choose predict's post-processing for this model, at native size
        record_post(info, out, grid, val, sources, work, reported=train)
    print(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    main()
