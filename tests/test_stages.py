"""Predict's stage profile (hofam_tf.tasks.stages): what summary.json records and what bounds the rate."""
import json

import cv2
import pytest

from hofam_tf.data.synthetic import make_scene
from hofam_tf.tasks.predict import PredictOptions, run_predict
from hofam_tf.tasks.stages import STAGES, StageTimes


def test_the_bound_is_the_largest_main_thread_stage_unless_the_flow_threads_are_slower():
    st = StageTimes({"flows": 2, "masks": 2})
    assert st.bound() is None
    st.add("model", 0.05)
    st.add("post", 0.01)
    st.add("masks", 0.02)  # 0.01 per writer thread
    st.add("flows", 0.10)  # 0.05 per worker: below the main thread's 0.06
    assert st.bound() == "model"
    st.add("flows", 0.04)  # 0.07 per worker > 0.06
    assert st.bound() == "flows"
    st.add("video", 0.08)  # one thread: 0.08 > 0.07
    assert st.bound() == "video"
    s = st.summary(frames=10, wall_seconds=1.0)
    assert s["ms_per_frame"]["flows"] == pytest.approx(14.0) and s["main_thread_ms_per_frame"] == pytest.approx(6.0)
    assert s["wall_ms_per_frame"] == pytest.approx(100.0) and s["bound_by"] == "video"
    assert s["threads"] == {"flows": 2, "masks": 2, "video": 1}
    assert list(st.timed_iter("decode", iter([1, 2, 3]))) == [1, 2, 3] and st.seconds["decode"] >= 0


@pytest.mark.parametrize("defaults", [False, True])
def test_summary_records_each_stage_of_the_run(tmp_path, tiny_model, defaults):
    images, _ = make_scene(4, frames=14, size=256)
    writer = cv2.VideoWriter(str(tmp_path / "cam.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 12, (320, 240))
    for im in images:
        writer.write(cv2.cvtColor(cv2.resize(im, (320, 240)), cv2.COLOR_RGB2BGR))
    writer.release()
    opts = PredictOptions(batch_size=4) if defaults else PredictOptions(batch_size=4, calibrate_frames=0, median_gate=0)
    result = run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / "out", opts, progress=False)
    summary = json.loads((tmp_path / "out" / "cam" / "summary.json").read_text())
    assert summary == result["sequences"][0] and summary["frames"] == 14
    stages = summary["stages"]
    ms = stages["ms_per_frame"]
    assert set(ms) == set(STAGES) and all(v >= 0 for v in ms.values())
    for stage in ("decode", "resize", "flows", "model", "masks", "video"):
        assert ms[stage] > 0, stage
    assert (ms["gate"] > 0) == defaults and (ms["calibration"] > 0) == defaults
    main = sum(v for k, v in ms.items() if k not in ("flows", "masks", "video"))
    assert stages["main_thread_ms_per_frame"] == pytest.approx(main, abs=0.01)
    # the main-thread stages happen inside the sequence's wall time, one after another
    assert main <= stages["wall_ms_per_frame"] * 1.01
    assert stages["bound_by"] in STAGES and stages["threads"] == {"flows": opts.workers, "masks": 2, "video": 1}


@pytest.mark.slow
def test_threaded_writing_gives_the_masks_and_video_of_one_writer_at_a_time(tmp_path, tiny_model, monkeypatch):
    import numpy as np
    from PIL import Image

    import hofam_tf.tasks.predict as predict

    images, _ = make_scene(5, frames=30, size=256)
    writer = cv2.VideoWriter(str(tmp_path / "cam.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 12, (320, 240))
    for im in images:
        writer.write(cv2.cvtColor(cv2.resize(im, (320, 240)), cv2.COLOR_RGB2BGR))
    writer.release()
    opts = PredictOptions(batch_size=4, threshold=0.5, calibrate_frames=0, median_gate=1.5, side_by_side=True)
    run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / "threads", opts, progress=False)
    monkeypatch.setattr(predict, "MASK_THREADS", 1)
    monkeypatch.setattr(predict, "QUEUE_DEPTH", 1)  # each write finishes before the next frame: sequential
    run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / "one", opts, progress=False)
    names = sorted(p.name for p in (tmp_path / "one" / "cam" / "masks").glob("*.png"))
    assert len(names) == 30 and names == sorted(p.name for p in (tmp_path / "threads" / "cam" / "masks").glob("*.png"))
    for n in names:
        a = np.asarray(Image.open(tmp_path / "threads" / "cam" / "masks" / n))
        b = np.asarray(Image.open(tmp_path / "one" / "cam" / "masks" / n))
        assert np.array_equal(a, b), n

    def frames(path):
        cap, out = cv2.VideoCapture(str(path)), []
        while True:
            ok, f = cap.read()
            if not ok:
                return out
            out.append(f)

    for video in ("overlay.mp4", "side_by_side.mp4"):
        a, b = frames(tmp_path / "threads" / "cam" / video), frames(tmp_path / "one" / "cam" / video)
        assert len(a) == len(b) == 30 and all(np.array_equal(x, y) for x, y in zip(a, b)), video
