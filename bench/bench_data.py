"""Data-path throughput on this machine, printed as JSON.

    python -m bench.bench_data                 # data prep with the default flow settings
    python -m bench.bench_data --fast_flow     # data prep with DIS balanced, no reverse check

Figures (256x256 tiles, three intervals tau = 1, 5, 10), all from the real CDnet frames in
../shared/data (decoded once beforehand where a stage does not include decoding):
  flow_fps.<estimator>   HOP images per second (3 flows each), 2 worker threads
  composite_write_fps    composite PNGs encoded and written per second
  tfrecord_write_fps     composites read back and serialised into TFRecords per second
  reader_examples_per_s  tf.data examples per second (parse + shuffle + batch 8)
  data_prep_fps          raw CDnet folder -> composites -> TFRecords, end to end (data_prep_flow:
                         the flow settings it used)
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
DATA = ROOT.parent / "shared" / "data" / "cdnet2014"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fast_flow", action="store_true",
                    help="data prep with DIS balanced and no reverse check (the earlier default flow)")
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf  # noqa: F401  (imported up front: its start-up is not throughput)

    from hofam_tf.data.merging import merge_dataset
    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.data.composite import compose
    from hofam_tf.config import FlowConfig
    from hofam_tf.files import write_png
    from hofam_tf.data.flow import iter_hop
    from hofam_tf.data.sources import discover

    seqs = discover(DATA)
    frames = [fr for s in seqs for fr in s.iter_frames(lookback=0)]
    out: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "python": platform.python_version()}, "frames": len(frames)}

    flow_fps = {}
    for name, cfg in (("dis_medium_reverse_check_default", FlowConfig()),
                      ("dis_medium", FlowConfig(reverse_check=False)),
                      ("dis_balanced_reverse_check", FlowConfig(dis_preset="balanced")),
                      ("dis_balanced", FlowConfig(dis_preset="balanced", reverse_check=False)),
                      ("dis_ultrafast_reverse_check", FlowConfig(dis_preset="ultrafast")),
                      ("dis_ultrafast", FlowConfig(dis_preset="ultrafast", reverse_check=False)),
                      ("farneback", FlowConfig(estimator="farneback", reverse_check=False))):
        t = time.perf_counter()
        hops = [(fr, tile, hop) for fr, tile, hop, _ in iter_hop(iter(frames), cfg, workers=2)]
        flow_fps[name] = len(hops) / (time.perf_counter() - t)
    out["flow_fps"] = flow_fps

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        unknown = np.zeros((256, 256), np.uint8)
        t = time.perf_counter()
        for fr, tile, hop in hops:
            write_png(tmp / "c" / f"{fr.index:06d}.png", compose(tile, hop, unknown))
        out["composite_write_fps"] = len(hops) / (time.perf_counter() - t)

        prep_flow = FlowConfig(dis_preset="balanced", reverse_check=False) if args.fast_flow else FlowConfig()
        out["data_prep_flow"] = {"dis_preset": prep_flow.dis_preset, "reverse_check": prep_flow.reverse_check}
        t = time.perf_counter()
        merged = merge_dataset(DATA, tmp / "comp", prep_flow, progress=False)
        t_merge = time.perf_counter() - t
        t = time.perf_counter()
        info = write_tfrecords(tmp / "comp", tmp / "rec", test_fraction=0.0, progress=False)
        t_rec = time.perf_counter() - t
        n = sum(merged.values())
        out["merge_fps"] = n / t_merge
        out["tfrecord_write_fps"] = info["splits"]["train"]["examples"] / t_rec
        out["data_prep_fps"] = n / (t_merge + t_rec)

        from hofam_tf.data.dataset import build_dataset

        ds = build_dataset(str(tmp / "rec" / "train-*.tfrecord"), batch_size=8, training=True,
                           shuffle_buffer=256, with_target_num=True)
        it = iter(ds)
        for _ in range(5):
            next(it)
        count, t = 0, time.perf_counter()
        while time.perf_counter() - t < 5.0:
            batch = next(it)
            count += int(batch[1].shape[0])
        out["reader_examples_per_s"] = count / (time.perf_counter() - t)
    out["targets"] = {"data_prep_fps": 100, "reader_examples_per_s": 2000}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
