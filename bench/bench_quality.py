"""Cross-scene quality: leave-scenes-out k-fold over the real scenes of ``../shared/data``.

Each fold trains HOFAM on the other scenes (one of them held out for validation: best
checkpoint and threshold), then segments its whole unseen scenes with ``--phase=predict``'s code
at native resolution and scores them by CDnet rules with ``--phase=score``'s code. The classical
baselines (OpenCV MOG2, KNN, thresholded HOP) segment the same scenes through the same path.
Prints JSON: F per scene and method, the means over all scenes and per scene group
(``SCENE_GROUPS``: surveillance, dynamic_background), HOFAM / best baseline, and the scenes where
HOFAM is below MOG2. Every labelled scene of ``--data`` takes part (21 in ``../shared/data``);
``--groups surveillance`` keeps the 12 CDnet 2014 / SBI 2015 scenes.

The honest figures (``protocol`` in the JSON) make every choice on the fold's own validation
scenes, which it neither trains on nor reports: "hofam" is the plain model at the fold's validated
checkpoint and threshold; "hofam_nested" adds the post-processing (scene-adaptive threshold,
median gate radius, hole filling) that scored best on the fold's validation scenes among
``POST_GRID``. The other columns are diagnoses: "hofam_pooled_threshold" takes the threshold with
the best validation F over all folds' validation scenes, and another fold's validation scene may be
one this fold reports; the ``--calibrate_frames``/``--median_gate`` columns use constants chosen
by hand. ``--val_scenes N`` holds N scenes per fold out for validation (default 2: one of each scene
group, so both kinds of scene have a say in every choice).

    python -m bench.bench_quality                       # quick: about 15 minutes on 2 CPU cores
    python -m bench.bench_quality --setting=full        # 6 folds, longer training
    python -m bench.bench_quality --set flow.encoding=log --set augment.enabled=false

``--set section.field=value`` changes any field of the run configuration (``hofam_tf.config``),
e.g. ``model.ngf=16``, ``loss.mode=tf1``, ``flow.taus=[1,3,6]``, ``train.learning_rate=1e-3``.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hofam_tf.config import RunConfig  # noqa: E402
from hofam_tf.tasks.predict import FLOW_PRESET  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    # folds, steps, batch, val_every, ngf
    "quick": dict(folds=3, steps=500, batch=8, val_every=100, ngf=8),
    "full": dict(folds=6, steps=600, batch=8, val_every=100, ngf=8),
}
BASELINES = ("mog2", "knn", "hop")  # the target's baselines: HOFAM's mean over their best
EXTRA_BASELINES = ("median",)  # reported beside them (mean_f, per_scene_f, hofam_over_median)
# HOFAM's columns besides "hofam" (the per-run threshold): each gets <name>_over_best_baseline and
# scenes_below_mog2_<name without "hofam_"> (None and [] when the run did not make it)
VARIANTS = ("hofam_nested", "hofam_pooled_threshold", "hofam_scene_threshold", "hofam_gated", "hofam_scene_threshold_gated",
            "hofam_scene_threshold_gated_fill", "hofam_adapted", "hofam_adapted_rounds")


# The nested protocol's choices of post-processing (predict's calibrate_frames, median_gate, gate_mode,
# hysteresis, calibrate_range, adapt_steps):
# each fold segments its validation scenes with every entry, keeps the one with the best mean F there
# and segments its unseen scenes with it ("hofam_nested"). Only the fold's own validation scenes
# choose (never a scene the fold reports, nor another fold's validation scene, which may be one).
POST_GRID = {
    "plain": {},
    "calibrated": {"calibrate_frames": 200},
    "gate1.5": {"median_gate": 1.5},
    "calibrated_gate0.75": {"calibrate_frames": 200, "median_gate": 0.75},
    "calibrated_gate1.5": {"calibrate_frames": 200, "median_gate": 1.5},
    "calibrated_gate1.5_fill": {"calibrate_frames": 200, "median_gate": 1.5, "gate_mode": "fill"},
    "calibrated_gate3_fill": {"calibrate_frames": 200, "median_gate": 3.0, "gate_mode": "fill"},
    "gate1.5_fill": {"median_gate": 1.5, "gate_mode": "fill"},
    "calibrated_gate1.5_components": {"calibrate_frames": 200, "median_gate": 1.5, "gate_mode": "components"},
    "gate1.5_components": {"median_gate": 1.5, "gate_mode": "components"},
    "hyst10": {"hysteresis": 10.0},
    "hyst10_gate1.5_fill": {"hysteresis": 10.0, "median_gate": 1.5, "gate_mode": "fill"},
    "calibrated10": {"calibrate_frames": 200, "calibrate_range": 10.0},
    "calibrated10_gate1.5_fill": {"calibrate_frames": 200, "calibrate_range": 10.0, "median_gate": 1.5,
                                  "gate_mode": "fill"},
    "adapt60": {"adapt_steps": 60},
    "adapt60_gate1.5_fill": {"adapt_steps": 60, "median_gate": 1.5, "gate_mode": "fill"},
}
# what an entry leaves out is off: predict's post-processing fields (``checkpoints.POST_FIELDS``)
POST_OFF = {"calibrate_frames": 0, "median_gate": 0.0, "gate_mode": "pixel", "hysteresis": 0.0,
            "calibrate_range": 0.0, "adapt_steps": 0}


def post_entry(name: str) -> dict:
    """Every post-processing field (``POST_OFF``'s keys) of the ``POST_GRID`` entry ``name``."""
    return {**POST_OFF, **POST_GRID[name]}


def post_grid_arg(text: str) -> dict:
    """--post_grid: comma-separated POST_GRID names, "all" or "none"."""
    if text == "none":
        return {}
    names = list(POST_GRID) if text == "all" else [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(POST_GRID))
    if unknown:
        raise SystemExit(f"--post_grid: unknown {unknown}; the entries are {list(POST_GRID)}")
    return {n: post_entry(n) for n in names}


def choose_post(val_f: dict, test: list[str]) -> str:
    """The entry of ``val_f`` ({entry: {validation scene: F}}) with the best mean F over its scenes;
    ties go to the earlier entry (the simpler one). Refuses scores of a scene in ``test``."""
    seen = {scene for fs in val_f.values() for scene in fs}
    if seen & set(test):
        raise ValueError(f"post-processing would be chosen on reported scenes {sorted(seen & set(test))}")
    return max(val_f, key=lambda k: (sum(val_f[k].values()) / len(val_f[k]), -list(val_f).index(k)))


# The scene groups of ../shared/data, by top folder (its README): the surveillance scenes of CDnet
# 2014 and SBI 2015, and UCSD's dynamic backgrounds (water, waves, a waterfall, rain, snow, birds;
# greyscale, short). Quality is reported per group as well as over all scenes.
SCENE_GROUPS = {"cdnet2014": "surveillance", "sbi2015": "surveillance", "ucsd": "dynamic_background"}


def scene_sources(data: Path, groups=None) -> dict:
    """name -> Sequence for every labelled CDnet-style scene under the group folders of ``data``
    (``SCENE_GROUPS``; ``groups``: only those groups)."""
    from hofam_tf.data.sources import discover

    out = {}
    for sub, group in SCENE_GROUPS.items():
        if (data / sub).is_dir() and (not groups or group in groups):
            for seq in discover(data / sub):
                if seq.kind == "cdnet" and seq.labelled:
                    out[seq.path.name] = seq
    return out


def scene_group(seq, data: Path) -> str:
    """The group of a scene found by ``scene_sources`` under ``data``."""
    return SCENE_GROUPS[Path(seq.path).resolve().relative_to(Path(data).resolve()).parts[0]]


def by_group_draw(names: list[str], groups: dict, count: int, rng: random.Random) -> list[str]:
    """``count`` of ``names`` drawn with ``rng`` in turns over their groups (``groups``: name ->
    group), so that every group gives one before any gives two; sorted."""
    pools: dict[str, list[str]] = {}
    for n in sorted(names):
        pools.setdefault(groups[n], []).append(n)
    for pool in pools.values():
        rng.shuffle(pool)
    order = sorted(pools)
    rng.shuffle(order)
    out: list[str] = []
    while len(out) < min(count, len(names)):
        for g in order:
            if pools[g] and len(out) < count:
                out.append(pools[g].pop())
    return sorted(out)


def group_arg(text: str) -> list[str]:
    """--groups: comma-separated names of SCENE_GROUPS' groups (empty: all)."""
    names = [g for g in text.split(",") if g]
    unknown = set(names) - set(SCENE_GROUPS.values())
    if unknown:
        raise SystemExit(f"--groups: unknown {sorted(unknown)}; the groups are {sorted(set(SCENE_GROUPS.values()))}")
    return names


def make_folds(names: list[str], k: int, seed: int = 0) -> list[list[str]]:
    order = sorted(names)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def apply_overrides(cfg: RunConfig, sets: list[str]) -> RunConfig:
    data = cfg.to_dict()
    for item in sets:
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        if section not in data or field not in data[section]:
            raise SystemExit(f"--set {item}: unknown field {key}")
        try:
            data[section][field] = json.loads(value)
        except json.JSONDecodeError:
            data[section][field] = value
    return RunConfig.from_dict(data)


# FlowConfig fields added after composites were first cached: at the value their absence stands for
# (FlowConfig.ABSENT_MEANS) they are left out of the key, so cached composites made without them keep it.
KEY_LATER_FIELDS = ("reference_stride", "reference_spread")


def flow_key(flow) -> str:
    """Short hash of a flow configuration: names the cached composites made with it."""
    fields = {k: v for k, v in dataclasses.asdict(flow).items()
              if not (k in KEY_LATER_FIELDS and v == type(flow).ABSENT_MEANS[k])}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def composites(sources: dict, work: Path, flow) -> Path:
    """Composites of every scene with this flow configuration (cached by its hash)."""
    from hofam_tf.data.merging import merge_sequence

    comp = work / f"composites-{flow_key(flow)}"
    for name, seq in sources.items():
        if not (comp / seq.name / "sequence.json").exists():
            merge_sequence(seq, comp, flow, progress=False)
    return comp


def synthetic_composites(work: Path, count: int, flow) -> list[Path]:
    """Composite folders of ``count`` synthetic scenes (textured objects over textured
    backgrounds, exact masks), merged with the same flow settings as the real ones."""
    from hofam_tf.data.merging import merge_sequence
    from hofam_tf.data.sources import discover
    from hofam_tf.data.synthetic import write_scene

    raw, comp = work / "synthetic_raw", work / f"synthetic-{flow_key(flow)}"
    out = []
    for i in range(count):
        name = f"synthetic{i:02d}"
        if not (comp / name / "sequence.json").exists():
            if not (raw / name / "masks").is_dir():
                write_scene(raw / name, seed=5000 + i, frames=40, objects=1 + i % 3)
            merge_sequence(discover(raw / name)[0], comp, flow, progress=False)
        out.append(comp / name)
    return out


def demo_records(data: Path, work: Path) -> str:
    """The TFRecord pattern of the authors' demo composites (``data/hofam_demo``), written once
    under ``work``: all of them train (``bench/train_release.py`` adds the same to the release model)."""
    from hofam_tf.data.records import write_tfrecords

    out = work / "records_demo"
    if not (out / "dataset.json").exists():
        write_tfrecords(data / "hofam_demo", out, examples_per_shard=128, progress=False)
    return str(out / "train-*.tfrecord")


def fold_records(comp: Path, sources: dict, train: list[str], val: list[str], out: Path, extra=()) -> None:
    """TFRecords of one fold: train-* from ``train`` scenes (and the ``extra`` composite folders),
    test-* from the ``val`` scenes."""
    from hofam_tf.data.records import write_tfrecords

    links = out.parent / "links"
    links.mkdir(parents=True, exist_ok=True)
    for name in train + val:
        link = links / sources[name].name
        if not link.exists():
            link.symlink_to((comp / sources[name].name).resolve())
    for folder in extra:
        if not (links / folder.name).exists():
            (links / folder.name).symlink_to(folder.resolve())
    write_tfrecords(links, out, test_sequences=[sources[v].name for v in val], examples_per_shard=64, progress=False)


def scene_records_dir(comp: Path, name: str) -> Path:
    """Records of one scene alone (links/ beside them), made from the composites ``comp``: cached
    per flow configuration beside ``comp``, so a run never scores HOP images made with another one."""
    return comp.parent / f"scene_records-{comp.name.removeprefix('composites-')}" / name / "records"


def best_thresholds_in_hindsight(run: Path, comp: Path, sources: dict, scenes: list[str]) -> dict:
    """scene -> {"threshold", "f"}: the threshold of ``validation.THRESHOLDS`` that maximises the
    scene's own F (tile resolution, ``Validator``), a diagnosis of calibration across scenes."""
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.tasks.validation import Validator

    model, cfg = load_for_inference(run, precision="float32")
    out = {}
    for n in scenes:
        rec = scene_records_dir(comp, sources[n].name)
        if not (rec / "dataset.json").exists():
            fold_records(comp, sources, [n], [], rec)
        per = Validator(str(rec / "train-*.tfrecord"), background=cfg.model.reference).evaluate(model).per_threshold
        t = max(per, key=per.get)
        out[n] = {"threshold": t, "f": per[t]}
    return out


def score_scene(pred_dir: Path, seq, out: Path) -> float:
    from hofam_tf.tasks.evaluate import run_score

    metrics = run_score(pred_dir, seq.path, out, threshold=0.5, progress=False)
    return float(metrics["cdnet"]["per_sequence"][seq.path.name]["f_measure"])


_LOADED: list = []  # [(checkpoint, its files' stamp), (runner, RunConfig)]: the checkpoint loaded last


def loaded_runner(ckpt) -> tuple:
    """``runtimes.load_runner(ckpt)``, kept while the checkpoint's files stay as they are: a fold
    segments many scenes with many post-processing entries with one model, and loads it and traces
    its inference and scene adaptation once. The files are those under ``ckpt`` (a folder), or
    beside it with the config.json above (a file or a checkpoint prefix)."""
    from hofam_tf.tasks.runtimes import load_runner

    path = Path(ckpt)
    files = sorted(path.rglob("*")) if path.is_dir() else sorted(path.parent.glob("*")) + [path.parent.parent / "config.json"]
    stamp = tuple((str(f), s.st_mtime_ns, s.st_size, s.st_ino) for f in files if f.is_file() for s in [f.stat()])
    if not _LOADED or _LOADED[0] != (str(path), stamp):
        _LOADED[:] = [(str(path), stamp), load_runner(path)]
    return _LOADED[1]


def predict_scene(seq, out: Path, method: str, ckpt=None, threshold: float = 0.5, calibrate_frames: int = 0,
                  median_gate: float = 0.0, gate_mode: str = "pixel", flow_preset: str = FLOW_PRESET,
                  hysteresis: float = 0.0, calibrate_range: float = 0.0, adapt_steps: int = 0,
                  adapt_rounds: int = 1, adapt_min_recall: float = 0.0) -> float:
    """Segments one scene into ``out``; returns the threshold used (the scene's own when calibrated).
    ``flow_preset``: predict's DIS preset for HOFAM's HOP."""
    from hofam_tf.tasks.predict import PredictOptions, run_predict

    opts = PredictOptions(threshold=threshold, overlay_video=False, method=method, batch_size=8,
                          calibrate_frames=calibrate_frames, median_gate=median_gate, gate_mode=gate_mode,
                          flow_preset=flow_preset, hysteresis=hysteresis, calibrate_range=calibrate_range,
                          adapt_steps=adapt_steps, adapt_rounds=adapt_rounds,
                          adapt_min_recall=adapt_min_recall)
    loaded = loaded_runner(ckpt) if method == "hofam" else None
    return run_predict(seq.path, ckpt, out, opts, progress=False, loaded=loaded)["sequences"][0]["threshold"]


def post_on_validation(grid: dict, val: list[str], sources: dict, ckpt, threshold: float, work: Path,
                       reported: list[str], flow_preset: str = FLOW_PRESET) -> dict:
    """Segments the validation scenes ``val`` with every ``grid`` entry (``post_entry``: predict's
    post-processing fields) at native size under ``work``/val_post, scores them
    (``work``/val_post_scores) and returns the choice (``choose_post``, which refuses a scene of
    ``reported``) with every entry's validation F: the "post" record of a fold or a release model."""
    val_f: dict = {key: {} for key in grid}
    for key, fields in grid.items():
        for v in val:
            predict_scene(sources[v], work / "val_post" / key, "hofam", ckpt, threshold, flow_preset=flow_preset,
                          **fields)
            val_f[key][v] = score_scene(work / "val_post" / key, sources[v], work / "val_post_scores" / key / v)
    chosen = choose_post(val_f, reported)
    return {"chosen": chosen, **grid[chosen], "chosen_on": val, "validation_f": val_f}


def pick_scenes(sources: dict, names: str, data) -> dict:
    """``sources`` narrowed to the comma-separated ``names`` (all when empty); an unknown name exits
    with an error naming it."""
    chosen = [n for n in names.split(",") if n]
    unknown = sorted(set(chosen) - set(sources))
    if unknown:
        raise SystemExit(f"--scenes: {unknown} are not labelled scenes of {data}")
    return {n: sources[n] for n in chosen} if chosen else sources


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="quick")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/hofam_quality")
    ap.add_argument("--folds", type=int, default=None)
    ap.add_argument("--only_folds", default="", help="comma-separated fold indices to run")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--ngf", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--seed", type=int, default=12138)
    ap.add_argument("--val_scenes", type=int, default=2,
                    help="scenes per fold held out of training for validation (checkpoint, threshold and "
                         "post-processing choice); 2 or more are drawn in turns over the scene groups")
    ap.add_argument("--no_baselines", action="store_true")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--tag", default="", help="name of this variant's folder under --work")
    ap.add_argument("--scenes", default="", help="comma-separated scene names (default: every scene)")
    ap.add_argument("--groups", default="", help="comma-separated scene groups: surveillance, dynamic_background "
                                                 "(default: every labelled scene of --data)")
    ap.add_argument("--calibrate_frames", type=int, default=0,
                    help="also segment each unseen scene with the scene-adaptive threshold chosen on its first N "
                         "frames (predict's --calibrate_frames; 0: not)")
    ap.add_argument("--median_gate", type=float, default=0.0,
                    help="also segment each unseen scene with predict's --median_gate=R (and, with "
                         "--calibrate_frames, with both); 0: not")
    ap.add_argument("--gate_fill", action="store_true",
                    help="with --calibrate_frames and --median_gate, also the column hofam_scene_threshold_gated_fill: "
                         "predict's --gate_fill (the gate's holes filled)")
    ap.add_argument("--adapt_steps", type=int, default=0,
                    help="also segment each unseen scene with the plain model after N updates of scene adaptation "
                         "(predict's --adapt_steps; column hofam_adapted); 0: not")
    ap.add_argument("--adapt_rounds", type=int, default=1,
                    help="with --adapt_steps, also the column hofam_adapted_rounds: the same updates in this many "
                         "rounds of pseudo-labels (predict's --adapt_rounds); 1: not")
    ap.add_argument("--adapt_min_recall", type=float, default=0.0,
                    help="with --adapt_steps: predict's --adapt_min_recall for the adapted columns (each scene's "
                         "adaptation undone where the adapted model keeps less than this share of what it was taught)")
    ap.add_argument("--post_grid", default="all",
                    help="post-processing entries (POST_GRID) each fold chooses from on its validation scenes, "
                         "comma-separated, 'all' or 'none' (no hofam_nested column)")
    ap.add_argument("--flow_preset", default=FLOW_PRESET,
                    help="predict's DIS preset for HOFAM's HOP on every scene it segments: 'run' (the one the folds "
                         "trained with) or a preset (default: predict's own, hofam_tf.tasks.predict.FLOW_PRESET)")
    ap.add_argument("--keep_records", action="store_true",
                    help="keep each fold's TFRecords (by default deleted once the fold's model is trained: "
                         "about 0.4 GB a fold; a rerun of the tag reuses its finished folds' models)")
    ap.add_argument("--demo", action="store_true",
                    help="add the authors' 29 demo composites (hofam_demo under --data, with their own HOP tiles) to "
                         "every fold's training set, as bench/train_release.py does for the release model")
    ap.add_argument("--synthetic", type=int, default=0,
                    help="add this many synthetic scenes (hofam_tf.data.synthetic) to every fold's training set")
    args = ap.parse_args(argv)
    grid = post_grid_arg(args.post_grid)
    setting = dict(SETTINGS[args.setting])
    for k in ("folds", "steps", "batch", "ngf"):
        if getattr(args, k) is not None:
            setting[k] = getattr(args, k)

    from hofam_tf.config import ModelConfig, TrainConfig

    base = RunConfig(model=ModelConfig(ngf=setting["ngf"], dtype=args.precision),
                     train=TrainConfig(steps=setting["steps"], batch_size=setting["batch"],
                                       learning_rate=1e-3, beta1=0.9, seed=args.seed, shuffle_buffer=500,
                                       ckpt_every=setting["steps"], log_every=50, image_every=0,
                                       val_every=setting["val_every"]))
    cfg = apply_overrides(base, args.sets)
    work = Path(args.work)
    sources = scene_sources(Path(args.data), group_arg(args.groups))
    sources = pick_scenes(sources, args.scenes, args.data)
    if len(sources) < 3:
        raise SystemExit(f"{args.data}: need at least 3 labelled scenes, found {sorted(sources)}")
    names = sorted(sources)
    folds = make_folds(names, setting["folds"])
    t0 = time.time()
    comp = composites(sources, work, cfg.flow)
    extra = synthetic_composites(work, args.synthetic, cfg.flow) if args.synthetic else []
    demo_pattern = demo_records(Path(args.data), work) if args.demo else ""
    prep_s = time.time() - t0

    scores: dict[str, dict[str, float]] = {n: {} for n in names}
    hindsight: dict[str, dict] = {}
    scene_thresholds: dict[str, float] = {}  # --calibrate_frames: each unseen scene's own threshold
    if not args.no_baselines:
        for method in BASELINES + EXTRA_BASELINES:
            for n in names:
                pred = work / "baselines" / method
                if not (pred / n / "summary.json").exists():
                    predict_scene(sources[n], pred, method)
                scores[n][method] = score_scene(pred, sources[n], work / "scores" / method / n)
    base_s = time.time() - t0 - prep_s

    segment = functools.partial(predict_scene, flow_preset=args.flow_preset)  # HOFAM at predict's HOP preset
    tag = args.tag or hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    run_root = work / "runs" / tag
    fold_info = []
    only = {int(i) for i in args.only_folds.split(",") if i.strip()}
    from hofam_tf.model.checkpoints import stored_threshold
    from hofam_tf.tasks.train import run_train

    for i, test in enumerate(folds):
        if only and i not in only:
            continue
        rest = [n for n in names if n not in test]
        if args.val_scenes == 1:  # one scene drawn from all (the figures measured before --val_scenes 2)
            val = [rest[random.Random(args.seed + i).randrange(len(rest))]]
        else:  # N scenes spread over the scene groups, so that one kind of scene does not choose for all
            val = by_group_draw(rest, {n: scene_group(sources[n], Path(args.data)) for n in rest}, args.val_scenes,
                                random.Random(args.seed + 1000 + i))
        train = [n for n in rest if n not in val]
        fdir = run_root / f"fold{i}"
        split = {"test": test, "val": val, "train": train + (["hofam_demo"] if args.demo else [])}
        # a finished fold of an earlier call is reused when it had the same split
        trained = (fdir / "run" / "model.keras").exists() and (fdir / "split.json").exists() and \
            json.loads((fdir / "split.json").read_text()) == split
        if fdir.exists() and not trained:
            shutil.rmtree(fdir)
        fdir.mkdir(parents=True, exist_ok=True)
        (fdir / "split.json").write_text(json.dumps(split))
        ft = time.time()
        if not trained:
            rec = fdir / "records"
            fold_records(comp, sources, train, val, rec, extra)
            fcfg = dataclasses.replace(cfg, train=dataclasses.replace(
                cfg.train, train_pattern=",".join(p for p in (str(rec / "train-*.tfrecord"), demo_pattern) if p),
                val_pattern=str(rec / "test-*.tfrecord")))
            run_train(fcfg, fdir / "run", progress=False)
            if not args.keep_records:
                shutil.rmtree(rec)
        train_s = time.time() - ft
        threshold = stored_threshold(fdir / "run")
        for n in test:
            segment(sources[n], fdir / "pred", "hofam", fdir / "run", threshold)
            scores[n]["hofam"] = score_scene(fdir / "pred", sources[n], fdir / "scores" / n)
            if args.calibrate_frames:  # the scene-adaptive threshold, chosen on the scene without labels
                scene_thresholds[n] = segment(sources[n], fdir / "pred_scene", "hofam", fdir / "run", threshold,
                                              args.calibrate_frames)
                scores[n]["hofam_scene_threshold"] = score_scene(fdir / "pred_scene", sources[n],
                                                                 fdir / "scores_scene" / n)
            if args.median_gate:  # the same two thresholds, masks trimmed by the median gate
                segment(sources[n], fdir / "pred_gated", "hofam", fdir / "run", threshold, median_gate=args.median_gate)
                scores[n]["hofam_gated"] = score_scene(fdir / "pred_gated", sources[n], fdir / "scores_gated" / n)
                if args.calibrate_frames:
                    segment(sources[n], fdir / "pred_scene_gated", "hofam", fdir / "run", threshold,
                            args.calibrate_frames, args.median_gate)
                    scores[n]["hofam_scene_threshold_gated"] = score_scene(
                        fdir / "pred_scene_gated", sources[n], fdir / "scores_scene_gated" / n)
                    if args.gate_fill:
                        segment(sources[n], fdir / "pred_scene_gated_fill", "hofam", fdir / "run", threshold,
                                args.calibrate_frames, args.median_gate, gate_mode="fill")
                        scores[n]["hofam_scene_threshold_gated_fill"] = score_scene(
                            fdir / "pred_scene_gated_fill", sources[n], fdir / "scores_scene_gated_fill" / n)
            if args.adapt_steps:  # the plain model, adapted to the scene first
                segment(sources[n], fdir / "pred_adapted", "hofam", fdir / "run", threshold, adapt_steps=args.adapt_steps,
                        adapt_min_recall=args.adapt_min_recall)
                scores[n]["hofam_adapted"] = score_scene(fdir / "pred_adapted", sources[n], fdir / "scores_adapted" / n)
                if args.adapt_rounds > 1:
                    segment(sources[n], fdir / "pred_adapted_rounds", "hofam", fdir / "run", threshold,
                            adapt_steps=args.adapt_steps, adapt_rounds=args.adapt_rounds,
                            adapt_min_recall=args.adapt_min_recall)
                    scores[n]["hofam_adapted_rounds"] = score_scene(fdir / "pred_adapted_rounds", sources[n],
                                                                    fdir / "scores_adapted_rounds" / n)
        post = None
        if grid:  # nested: the fold's validation scenes choose the post-processing for its unseen scenes
            post = post_on_validation(grid, val, sources, fdir / "run", threshold, fdir, test, args.flow_preset)
            for n in test:
                segment(sources[n], fdir / "pred_nested", "hofam", fdir / "run", threshold,
                        **{k: post[k] for k in POST_OFF})
                scores[n]["hofam_nested"] = score_scene(fdir / "pred_nested", sources[n], fdir / "scores_nested" / n)
        hindsight.update(best_thresholds_in_hindsight(fdir / "run", comp, sources, test))
        best = json.loads((fdir / "run" / "best.json").read_text())
        history = best.get("history", [])
        fold_info.append({"fold": i, "test": test, "val": val, "train": train, "threshold": threshold,
                          "val_per_threshold": best.get("per_threshold"), "ckpt": str(fdir / "run"),
                          "val_f": best.get("f_measure"), "train_seconds": train_s, "post": post,
                          "val_curve": {h["step"]: round(h["f_measure"], 4) for h in history}})
        print(json.dumps({"fold": i, **{n: scores[n] for n in test}}), file=sys.stderr, flush=True)

    # The cross-validated threshold: the one whose validation F, averaged over the folds' validation
    # scenes (each fold's best checkpoint on its own), is highest. Only validation data chooses it;
    # the unseen scenes are then segmented again at it ("hofam_pooled_threshold").
    curves = [f["val_per_threshold"] for f in fold_info if f.get("val_per_threshold")]
    pooled = None
    if curves and len(curves) == len(fold_info):
        pooled = float(max(curves[0], key=lambda t: sum(c[t] for c in curves)))
        for f in fold_info:
            fdir = Path(f["ckpt"]).parent
            for n in f["test"]:
                segment(sources[n], fdir / "pred_pooled", "hofam", Path(f["ckpt"]), pooled)
                scores[n]["hofam_pooled_threshold"] = score_scene(fdir / "pred_pooled", sources[n],
                                                                  fdir / "scores_pooled" / n)

    def mean(method):
        vals = [s[method] for s in scores.values() if method in s and "hofam" in s]
        return sum(vals) / len(vals) if vals else None

    methods = ["hofam"] + [m for m in VARIANTS if any(m in s for s in scores.values())] + \
        ([] if args.no_baselines else list(BASELINES + EXTRA_BASELINES))
    means = {m: mean(m) for m in methods}

    def below_mog2(method):
        return sorted(n for n, s in scores.items() if method in s and "mog2" in s and s[method] < s["mog2"])

    best_base = max((means[m] for m in BASELINES if means.get(m) is not None), default=None)
    groups = {n: scene_group(sources[n], Path(args.data)) for n in names}

    def by_group(method):
        out = {}
        for g in sorted(set(groups.values())):
            vals = [s[method] for n, s in scores.items() if groups[n] == g and method in s and "hofam" in s]
            out[g] = sum(vals) / len(vals) if vals else None
        return out

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "setting": args.setting, "folds": setting["folds"], "steps": setting["steps"], "batch": setting["batch"],
        "ngf": setting["ngf"], "overrides": args.sets, "flow_preset": args.flow_preset,
        "synthetic_scenes": args.synthetic, "demo": args.demo, "tag": tag,
        "per_scene_f": {n: s for n, s in scores.items() if "hofam" in s},
        "mean_f": means,
        "scene_groups": groups,
        "mean_f_by_group": {m: by_group(m) for m in methods},
        "scenes_below_mog2_by_group": {
            m: {g: [n for n in below_mog2(m) if groups[n] == g] for g in sorted(set(groups.values()))}
            for m in ["hofam", *VARIANTS] if m in methods},
        "hofam_over_best_baseline": (means["hofam"] / best_base) if best_base and means["hofam"] else None,
        "hofam_over_median": (means["hofam"] / means["median"]) if means.get("median") and means["hofam"] else None,
        "pooled_threshold": pooled,
        "protocol": {"validation_only": ["hofam", "hofam_nested"],
                     "diagnosis": [m for m in VARIANTS if m != "hofam_nested"],
                     "nested_choices": {f["fold"]: f["post"]["chosen"] for f in fold_info if f.get("post")}},
        **{f"{m}_over_best_baseline": means[m] / best_base if best_base and means.get(m) is not None else None
           for m in VARIANTS},
        **{f"scenes_below_mog2_{m.removeprefix('hofam_')}": below_mog2(m) for m in VARIANTS},
        "scene_thresholds": scene_thresholds,
        "median_gate": args.median_gate,
        "scenes_below_mog2": below_mog2("hofam"),
        "target": {"ratio": 1.3, "max_scenes_below_mog2": 1},
        "fold_details": fold_info,
        # diagnosis, not a result: each unseen scene's best threshold chosen with its own labels
        # (tile resolution), and the mean F it would give; the gap to "hofam" is what threshold
        # choice costs, the rest is what the model's ranking of pixels costs
        "best_threshold_in_hindsight": hindsight,
        "mean_f_at_best_threshold_in_hindsight":
            sum(h["f"] for h in hindsight.values()) / len(hindsight) if hindsight else None,
        # validation F (held-out training-side scene of each fold) against training steps, mean over folds
        "val_curve_mean": {str(step): sum(f["val_curve"][step] for f in fold_info) / len(fold_info)
                           for step in (fold_info[0]["val_curve"] if fold_info else {})
                           if all(step in f["val_curve"] for f in fold_info)},
        "seconds": {"data_prep": prep_s, "baselines": base_s, "total": time.time() - t0},
    }
    print(json.dumps(report, indent=1))
    (run_root).mkdir(parents=True, exist_ok=True)
    (run_root / "report.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    from hofam_tf.model.graph_options import graph_options

    with graph_options():  # the hindsight diagnosis runs the model outside predict and train too
        main()
