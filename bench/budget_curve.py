"""Unseen-scene F against training updates: every checkpoint a run kept, on scenes it never trained on.

    python -m bench.budget_curve [--run /tmp/hofam_release/run] [--scenes office,surfers]

For each checkpoint ``ckpt-N`` of the run (``bench/train_release.py`` keeps one per validation,
every 500 updates by default), each scene is segmented whole at native size through
``--phase=predict``'s code and scored by CDnet rules, twice: the plain model at the threshold the
run's validation chose at that step (``best.json`` history; ``calibrate_frames=0, median_gate=0``)
and with predict's fixed defaults (scene-adaptive threshold over 200 frames, median gate 1.5).
The scenes default to the run's validation scenes (``--out``'s ``best.json``): the only real scenes
the run never trained on, so every point of the curve is an unseen-scene figure. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hofam_tf.tasks.predict import CALIBRATE_FRAMES, MEDIAN_GATE  # noqa: E402  (predict's fixed defaults)

from bench.bench_quality import ROOT, pick_scenes, predict_scene, scene_sources, score_scene  # noqa: E402


def checkpoints(ckpt_dir: Path) -> dict[int, Path]:
    """step -> checkpoint prefix of every complete checkpoint in ``ckpt_dir``."""
    steps = {}
    for index in ckpt_dir.glob("ckpt-*.index"):
        m = re.fullmatch(r"ckpt-(\d+)\.index", index.name)
        if m:
            steps[int(m.group(1))] = index.with_suffix("")
    return dict(sorted(steps.items()))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="/tmp/hofam_release/run", help="a run directory (config.json, ckpt/, best.json)")
    ap.add_argument("--ckpt_dir", default="", help="where its checkpoints are: a folder beside a config.json "
                                                   "(default: RUN/ckpt)")
    ap.add_argument("--out", default=str(ROOT / "checkpoints" / "release"),
                    help="the release folder whose best.json names the validation scenes")
    ap.add_argument("--scenes", default="", help="comma-separated scenes (default: the run's validation scenes)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/hofam_budget")
    ap.add_argument("--every", type=int, default=1, help="every k-th checkpoint (the last is always taken)")
    args = ap.parse_args(argv)

    run = Path(args.run)
    history = {h["step"]: h for h in json.loads((run / "best.json").read_text()).get("history", [])}
    names = args.scenes or ",".join(json.loads((Path(args.out) / "best.json").read_text())["validation_scenes"])
    sources = pick_scenes(scene_sources(Path(args.data), ()), names, args.data)
    names = list(sources)
    ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else run / "ckpt"
    if not (ckpt_dir.parent / "config.json").exists():  # how a checkpoint prefix finds its model (checkpoints.py)
        sys.exit(f"error: {ckpt_dir}: not a run's checkpoint folder (no config.json beside it)")
    found = checkpoints(ckpt_dir)
    if not found:
        sys.exit(f"error: {ckpt_dir}: no checkpoints")
    steps = list(found)
    steps = sorted(set(steps[args.every - 1::args.every]) | {steps[-1]})
    work = Path(args.work)
    curve, t0 = {}, time.time()
    for step in steps:
        if step not in history:
            continue
        threshold = history[step]["threshold"]
        row = {"validation_f_tiles": history[step]["f_measure"], "threshold": threshold}
        for mode, (cal, gate) in {"plain": (0, 0.0), "defaults": (CALIBRATE_FRAMES, MEDIAN_GATE)}.items():
            fs = {}
            for n in names:
                out = work / f"step{step}" / mode
                predict_scene(sources[n], out, "hofam", found[step], threshold, cal, gate)
                fs[n] = score_scene(out, sources[n], work / f"step{step}" / f"scores_{mode}" / n)
            row[mode] = {"mean_f": sum(fs.values()) / len(fs), "per_scene_f": fs}
        curve[step] = row
        print(json.dumps({"step": step, **row}), file=sys.stderr, flush=True)
    report = {"run": str(run), "scenes": names, "curve": curve, "seconds": time.time() - t0}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
