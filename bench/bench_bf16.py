"""bfloat16 against float32 inference on this CPU: speed, and agreement of the masks on real scenes.

    python -m bench.bench_bf16 [--ckpt checkpoints/release] [--scenes office,Board,HighwayI]

Speed: HOFAM forward at ngf 64 (and the checkpoint's width), batch 8, 256x256, float32 vs
``mixed_bfloat16``. Agreement: the checkpoint segments each scene through ``--phase=predict``'s
code in both precisions; prints the fraction of mask pixels that agree and the CDnet F of each.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def forward_fps(ngf: int, dtype: str, batch: int = 8, reps: int = 3) -> float:
    import numpy as np
    import tensorflow as tf

    from hofam_tf.config import ModelConfig
    from hofam_tf.model.hofam import build_hofam

    model = build_hofam(ModelConfig(ngf=ngf, dtype=dtype))
    x = {k: tf.constant(np.random.default_rng(0).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8))
         for k in ("frame", "hop")}
    fn = tf.function(lambda v: model(v, training=False))
    fn(x)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(x).numpy()
    return batch * reps / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "release"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--scenes", default="office,Board,HighwayI,pedestrians")
    args = ap.parse_args(argv)

    import numpy as np
    from PIL import Image

    from bench.bench_quality import scene_sources, score_scene
    from hofam_tf.model.checkpoints import stored_threshold
    from hofam_tf.model.precision import cpu_has_bf16
    from hofam_tf.tasks.predict import PredictOptions, run_predict

    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu_bf16": cpu_has_bf16()},
              "speed_frames_per_s": {}, "agreement": {}}
    for ngf in (64, 8):
        report["speed_frames_per_s"][f"ngf{ngf}"] = {d: forward_fps(ngf, d) for d in ("float32", "mixed_bfloat16")}
    sources = scene_sources(Path(args.data))
    threshold = stored_threshold(args.ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in [s for s in args.scenes.split(",") if s]:
            seq = sources[name]
            fs, masks = {}, {}
            for prec in ("float32", "bfloat16"):
                out = tmp / prec
                run_predict(seq.path, args.ckpt, out, PredictOptions(threshold=threshold, overlay_video=False),
                            progress=False, precision=prec)
                fs[prec] = score_scene(out, seq, tmp / "score" / prec / name)
                masks[prec] = {p.name: np.asarray(Image.open(p)) for p in sorted((out / name / "masks").glob("*.png"))}
            same = sum(int((masks["float32"][k] == masks["bfloat16"][k]).sum()) for k in masks["float32"])
            total = sum(m.size for m in masks["float32"].values())
            report["agreement"][name] = {"pixels_agreeing": same / total, "f_float32": fs["float32"],
                                         "f_bfloat16": fs["bfloat16"], "f_difference": fs["bfloat16"] - fs["float32"]}
    agree = [v["pixels_agreeing"] for v in report["agreement"].values()]
    report["min_pixels_agreeing"] = min(agree) if agree else None
    report["max_abs_f_difference"] = max((abs(v["f_difference"]) for v in report["agreement"].values()), default=None)
    report["targets"] = {"pixels_agreeing": 0.995, "abs_f_difference": 0.005}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
