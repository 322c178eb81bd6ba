"""``prefetch``: run an iterator on a thread of its own, a bounded number of items ahead.

Predict decodes frames (and feeds the median rule) this way while its main thread resizes, runs
the model and post-processes: OpenCV's decoding releases the GIL, so the two overlap on separate
cores. The items come out in order; an exception the iterator raises comes out where its item
would have; and when the consumer stops early (``--max_frames``, Ctrl-C, an error of its own) the
thread stops at its next item and closes the iterator there (a camera is released by the thread
that reads it), and the consumer waits for that, up to ``join_timeout`` seconds.
"""
from __future__ import annotations

import queue
import threading

_END, _ERROR, _ITEM = "end", "error", "item"


def prefetch(iterable, depth: int, name: str = "prefetch", join_timeout: float = 30.0):
    """Yields the items of ``iterable``, produced on a thread named ``name`` at most ``depth``
    items ahead of the consumer (module docstring)."""
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                items.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(iterable)
        try:
            while not stop.is_set():
                try:
                    item = next(it)
                except StopIteration:
                    put((_END, None))
                    return
                if not put((_ITEM, item)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            put((_ERROR, err))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
        thread.join(join_timeout)
