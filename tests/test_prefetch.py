"""``prefetch``: the decode thread's iterator runs ahead in order, hands errors over, and stops."""
import threading
import time

import pytest

from hofam_tf.tasks.prefetch import prefetch


def test_items_come_in_order_and_at_most_depth_ahead():
    produced = []

    def numbers():
        for i in range(50):
            produced.append(i)
            yield i

    it = prefetch(numbers(), depth=3)
    assert next(it) == 0
    time.sleep(0.3)  # the thread fills the queue and waits
    assert len(produced) <= 1 + 3 + 1  # the one taken, the queue, and the one waiting to go in
    assert list(it) == list(range(1, 50))


def test_an_error_comes_out_where_its_item_would_have():
    def failing():
        yield 1
        yield 2
        raise ValueError("frame 3 is unreadable")

    it = prefetch(failing(), depth=8)
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(ValueError, match="frame 3"):
        next(it)


def test_an_early_stop_closes_the_source_on_its_own_thread():
    closed = {}

    def source():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed["thread"] = threading.current_thread().name

    it = prefetch(source(), depth=2, name="decode")
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()  # the consumer stops (--max_frames, Ctrl-C): the producer stops and closes its source
    assert closed == {"thread": "decode"}
    assert not any(t.name == "decode" for t in threading.enumerate())
    with pytest.raises(ValueError, match="depth"):
        next(prefetch(iter([]), depth=0))


def test_predict_reads_no_frame_past_the_last_one_it_will_segment():
    from types import SimpleNamespace

    from hofam_tf.tasks.predict import decoded_frames

    pulled = []

    def source():  # two lookback frames, then scored ones; a live source never ends
        i = 0
        while True:
            pulled.append(i)
            yield SimpleNamespace(index=i, scored=i >= 2)
            i += 1

    got = [fr.index for fr in decoded_frames(source(), max_frames=5)]
    assert got == list(range(7)) and pulled == list(range(7))
    assert [fr.index for fr in decoded_frames(iter([SimpleNamespace(index=0, scored=True)]))] == [0]
