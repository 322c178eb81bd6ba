"""Where predict's time goes: seconds per pipeline stage, measured in the run itself.

The stages (``STAGES``): ``decode`` (reading and decoding frames), ``resize`` (frame tiles and
their grey versions), ``flows`` (the HOP images' optical flows, on the flow worker threads:
compute time, which overlaps the rest), ``gate`` (the median rule behind the median gate),
``model``, ``calibration`` (the scene-adaptive threshold), ``post`` (threshold, gate, filters and
ROI at native size), ``masks`` (PNG writing) and ``video`` (MP4 writing). Every stage but
``flows`` runs on the main thread, one after another, so the main thread's share of a frame is
their sum; the flows run on ``workers`` threads beside it. The stage that bounds the frame rate
is the largest of the main-thread stages, or the flows when their compute per frame divided by
the workers exceeds the whole main-thread share.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

STAGES = ("decode", "resize", "flows", "gate", "model", "calibration", "post", "masks", "video")
WORKER_STAGES = ("flows",)  # run on worker threads, overlapping the main thread


class StageTimes:
    """Accumulates seconds per stage (thread-safe); ``workers`` flow threads run beside the main one."""

    def __init__(self, workers: int = 1):
        self.seconds = {s: 0.0 for s in STAGES}
        self.workers = max(1, workers)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    @contextmanager
    def timed(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t)

    def timed_iter(self, stage: str, iterable):
        """Yields from ``iterable``, counting the time its ``next`` takes as ``stage``."""
        it = iter(iterable)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.add(stage, time.perf_counter() - t)
                return
            self.add(stage, time.perf_counter() - t)
            yield item

    def ms_per_frame(self, frames: int) -> dict:
        return {s: round(1000 * v / frames, 3) for s, v in self.seconds.items()} if frames else {}

    def bound(self) -> str | None:
        """The stage that limits the frame rate now (module docstring), or None before any time."""
        main = {s: v for s, v in self.seconds.items() if s not in WORKER_STAGES}
        if not any(main.values()) and not self.seconds["flows"]:
            return None
        if self.seconds["flows"] / self.workers > sum(main.values()):
            return "flows"
        return max(main, key=main.get)

    def summary(self, frames: int, wall_seconds: float) -> dict:
        main = sum(v for s, v in self.seconds.items() if s not in WORKER_STAGES)
        return {"ms_per_frame": self.ms_per_frame(frames), "flow_workers": self.workers,
                "main_thread_ms_per_frame": round(1000 * main / frames, 3) if frames else None,
                "wall_ms_per_frame": round(1000 * wall_seconds / frames, 3) if frames else None,
                "bound_by": self.bound()}
