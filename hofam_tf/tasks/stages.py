"""Where predict's time goes: seconds per pipeline stage, measured in the run itself.

The stages (``STAGES``): ``decode`` (reading and decoding frames), ``resize`` (frame tiles and
their grey versions), ``flows`` (the HOP images' optical flows, on the flow worker threads:
compute time, which overlaps the rest), ``gate`` (the median rule behind the median gate, near the mask),
``model``, ``adaptation`` (scene adaptation: pseudo-labels, updates, the held frames again),
``calibration`` (the scene-adaptive threshold), ``post`` (threshold, hysteresis, gate, filters and
ROI at native size), ``masks`` (PNG writing) and ``video`` (overlay drawing and MP4 writing).
The flows, the masks and the video run on their own threads (``threads``: how many each), beside
the main thread, which runs the other stages one after another, so its share of a frame is their
sum. The stage that bounds the frame rate is the threaded stage whose time per frame divided by
its threads is largest, unless the whole main-thread share is larger: then the largest
main-thread stage.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

STAGES = ("decode", "resize", "flows", "gate", "model", "adaptation", "calibration", "post", "masks", "video")
WORKER_STAGES = ("flows", "masks", "video")  # run on threads of their own, overlapping the main thread


class StageTimes:
    """Accumulates seconds per stage (thread-safe); ``threads``: stage -> threads running it
    (the ``WORKER_STAGES``; 1 where not given)."""

    def __init__(self, threads: dict | None = None):
        self.seconds = {s: 0.0 for s in STAGES}
        self.threads = {s: max(1, (threads or {}).get(s, 1)) for s in WORKER_STAGES}
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
        if not any(self.seconds.values()):
            return None
        threaded = {s: self.seconds[s] / n for s, n in self.threads.items()}
        slowest = max(threaded, key=threaded.get)
        if threaded[slowest] > sum(main.values()):
            return slowest
        return max(main, key=main.get)

    def summary(self, frames: int, wall_seconds: float) -> dict:
        main = sum(v for s, v in self.seconds.items() if s not in WORKER_STAGES)
        return {"ms_per_frame": self.ms_per_frame(frames), "threads": dict(self.threads),
                "main_thread_ms_per_frame": round(1000 * main / frames, 3) if frames else None,
                "wall_ms_per_frame": round(1000 * wall_seconds / frames, 3) if frames else None,
                "bound_by": self.bound()}
