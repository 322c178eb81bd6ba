"""Scene adaptation (``--adapt_steps``): pseudo-labels, updates, predict's use of them."""
import dataclasses
import json

import cv2
import numpy as np
import pytest

from hofam_tf.data.composite import UNKNOWN
from hofam_tf.data.synthetic import make_scene
from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.adapt import pseudo_labels, round_steps
from hofam_tf.tasks.predict import PredictOptions, run_predict


def _disk(r):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def test_pseudo_labels_keep_the_object_whole_leave_its_halo_out_and_label_the_quiet_background():
    images, masks = make_scene(11, frames=30, size=256, objects=1)
    tiles = np.stack(images)
    truth = np.stack(masks) > 127
    halo = np.stack([cv2.dilate(m.astype(np.uint8), _disk(8)) > 0 for m in truth])  # the flow's halo
    probs = np.where(halo, 0.99, 0.01).astype(np.float32)
    labels = pseudo_labels(tiles, range(len(tiles)), probs, threshold=0.5)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 255, UNKNOWN}
    assert not (labels == 255)[probs < 0.5].any()  # foreground only where the model says so
    assert not (labels == 0)[probs >= 0.5].any()  # background only where it does not
    ghost = cv2.dilate(truth[0].astype(np.uint8), _disk(12)) > 0  # the rule's history starts at frame 0
    for i in range(20, 30):
        lab, obj = labels[i], truth[i]
        assert (lab[obj] == 255).mean() > 0.9, i  # the object, interior included
        ring = halo[i] & ~(cv2.dilate(obj.astype(np.uint8), _disk(3)) > 0)
        assert (lab[ring] != 255).mean() > 0.9, i  # its halo is not taught as foreground
        far = ~(cv2.dilate(obj.astype(np.uint8), _disk(12)) > 0) & ~ghost
        assert (lab[far] == 0).mean() > 0.99, i


def test_adapt_lowers_the_loss_on_its_labels_and_restored_weights_gives_the_model_back():
    import tensorflow as tf

    from hofam_tf.config import LossConfig, ModelConfig, model_inputs
    from hofam_tf.model.hofam import build_hofam
    from hofam_tf.model.losses import hofam_loss
    from hofam_tf.tasks.adapt import adapt, restored_weights

    images, masks = make_scene(4, frames=8, size=256, objects=2)
    tiles = np.stack(images)
    hops = np.stack([cv2.cvtColor(m, cv2.COLOR_GRAY2RGB) for m in masks])  # a HOP that shows the objects
    labels = np.where(np.stack(masks) > 127, 255, 0).astype(np.uint8)
    labels[:, :8] = UNKNOWN  # left out of the loss
    model = build_hofam(ModelConfig(ngf=2))
    cfg = LossConfig()

    def loss():
        m = (labels == 255).astype(np.float32)[..., None]
        w = (labels != UNKNOWN).astype(np.float32)[..., None]
        n = np.ones(len(labels), np.int64)
        return float(hofam_loss(model(model_inputs(tiles, hops), training=False), m, w, n, cfg)["loss"])

    before, weights = loss(), [w.copy() for w in model.get_weights()]
    with restored_weights(model):
        steps = adapt(model, cfg, tiles, hops, labels, steps=30, lr=1e-3)
        assert len(steps) == 30 and all(np.isfinite(steps))
        after = loss()
        assert after < 0.8 * before, (before, after)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    assert loss() == pytest.approx(before, rel=1e-6)
    assert adapt(model, cfg, tiles, hops, labels, steps=0) == []
    tf.keras.backend.clear_session()



def test_a_reused_adapter_updates_each_call_as_a_new_optimizer_would_without_tracing_again():
    """predict adapts to one sequence after another with one ``SceneAdapter``: every call starts
    from a fresh Adam state (a second call that kept the first's moments and update count would
    move the weights otherwise), and its update is traced once."""
    from hofam_tf.config import LossConfig, ModelConfig
    from hofam_tf.model.hofam import build_hofam
    from hofam_tf.tasks.adapt import SceneAdapter, adapt, restored_weights

    images, masks = make_scene(7, frames=4, size=256, objects=1)
    tiles, hops = np.stack(images), np.stack([cv2.cvtColor(m, cv2.COLOR_GRAY2RGB) for m in masks])
    labels = np.where(np.stack(masks) > 127, 255, 0).astype(np.uint8)
    model = build_hofam(ModelConfig(ngf=2))
    start = [w.copy() for w in model.get_weights()]
    adapter = SceneAdapter(model, LossConfig(), lr=1e-3)

    def moved(run):
        with restored_weights(model):
            losses = run()
            return losses, [a - b for a, b in zip(model.get_weights(), start)]

    first = moved(lambda: adapter(tiles, hops, labels, steps=3))
    second = moved(lambda: adapter(tiles, hops, labels, steps=3))
    alone = moved(lambda: adapt(model, LossConfig(), tiles, hops, labels, steps=3, lr=1e-3))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start))
    assert max(float(np.abs(d).max()) for d in first[1]) > 1e-4  # the updates moved the weights
    for other in (second, alone):
        np.testing.assert_allclose(other[0], first[0], rtol=1e-5)
        for a, b in zip(other[1], first[1]):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-7)
    assert adapter._step.experimental_get_tracing_count() == 1

def _video(path, seed, frames=11):
    images, _ = make_scene(seed, frames=frames, size=256)
    h, w = 240, 320
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (w, h))
    for f in images:
        writer.write(cv2.cvtColor(cv2.resize(f, (w, h)), cv2.COLOR_RGB2BGR))
    writer.release()


def _masks(folder):
    return {p.name: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((folder / "masks").glob("*.png"))}


@pytest.mark.slow  # about 45 s: two predict runs with adaptation
def test_predict_adapts_each_sequence_from_the_checkpoint_and_records_it(tmp_path, tiny_model):
    (tmp_path / "two").mkdir()
    _video(tmp_path / "two" / "a.avi", 5)
    _video(tmp_path / "two" / "b.avi", 6)
    (tmp_path / "alone").mkdir()
    _video(tmp_path / "alone" / "b.avi", 6)
    opts = PredictOptions(batch_size=4, threshold=0.5, calibrate_frames=0, median_gate=0.0, overlay_video=False,
                          adapt_steps=4, adapt_frames=6)
    both = run_predict(tmp_path / "two", tiny_model / "model.keras", tmp_path / "out2", opts, progress=False)
    alone = run_predict(tmp_path / "alone", tiny_model / "model.keras", tmp_path / "out1", opts, progress=False)
    plain = run_predict(tmp_path / "alone", tiny_model / "model.keras", tmp_path / "out0",
                        PredictOptions(batch_size=4, threshold=0.5, calibrate_frames=0, median_gate=0.0,
                                       overlay_video=False), progress=False)
    a, b = both["sequences"]
    for s in (a, b, alone["sequences"][0]):
        assert s["frames"] == 11 and s["adaptation"]["steps"] == 4 and s["adaptation"]["frames"] == 6
        assert s["calibration_frames_held"] == 6 and 0 < s["adaptation"]["labelled_share"] <= 1
        assert s["stages"]["ms_per_frame"]["adaptation"] > 0
    assert plain["sequences"][0]["adaptation"] is None
    # b after a equals b alone: each sequence adapts from the checkpoint's weights, not a's
    second, first = _masks(tmp_path / "out2" / "b"), _masks(tmp_path / "out1" / "b")
    assert len(second) == 11 and second.keys() == first.keys()
    assert all(np.array_equal(second[k], first[k]) for k in first)
    stored = json.loads((tmp_path / "out1" / "b" / "summary.json").read_text())
    assert stored["adaptation"] == alone["sequences"][0]["adaptation"] and stored["adaptation"]["rounds"] == 1
    # in two rounds: the first round labels as a one-round run does; the record holds each round
    rounds = run_predict(tmp_path / "alone", tiny_model / "model.keras", tmp_path / "out3",
                         dataclasses.replace(opts, adapt_rounds=2), progress=False)["sequences"][0]["adaptation"]
    assert rounds["rounds"] == 2 and rounds["steps"] == 4 and len(rounds["foreground_share_per_round"]) == 2
    record = stored["adaptation"]
    assert rounds["foreground_share_per_round"][0] == record["foreground_share"]
    # undone where the adapted model keeps too little of what it was taught: the checkpoint's masks
    for least in (1e-9, 1.0):
        run = run_predict(tmp_path / "alone", tiny_model / "model.keras", tmp_path / f"out_least{least}",
                          dataclasses.replace(opts, adapt_min_recall=least), progress=False)["sequences"][0]
        got, recall = run["adaptation"], record["taught_recall"]
        assert got["taught_recall"] == recall and record["undone"] is False
        assert got["undone"] is (recall is None or recall < least)
        masks = _masks(tmp_path / f"out_least{least}" / "b")
        assert all(np.array_equal(masks[k], (_masks(tmp_path / "out0" / "b") if got["undone"] else first)[k])
                   for k in first)
    assert recall is None or recall < 1.0  # so the strict bound was undone above


def test_round_steps_share_the_updates_out():
    assert round_steps(60, 1) == [60] and round_steps(60, 2) == [30, 30]
    assert round_steps(7, 3) == [3, 2, 2] and round_steps(3, 3) == [1, 1, 1]
    for steps in range(1, 40):
        for rounds in range(1, steps + 1):
            got = round_steps(steps, rounds)
            assert len(got) == rounds and sum(got) == steps and max(got) - min(got) <= 1 and min(got) >= 1


def test_adaptation_is_refused_where_it_cannot_run(tmp_path, tiny_model):
    for bad in (dict(adapt_steps=-1), dict(adapt_steps=10**6), dict(adapt_frames=0), dict(adapt_rounds=0),
                dict(adapt_steps=3, adapt_rounds=4), dict(adapt_min_recall=1.5)):
        with pytest.raises(HOFAMInputError, match="adapt_"):
            PredictOptions(**bad)
    _video(tmp_path / "a.avi", 5, frames=4)
    from hofam_tf.config import ModelConfig, RunConfig
    from hofam_tf.model.hofam import build_hofam

    ref = tmp_path / "ref_model"
    ref.mkdir()
    cfg = RunConfig.from_dict({**RunConfig(model=ModelConfig(ngf=2)).to_dict()})
    data = cfg.to_dict()
    data["flow"]["reference_stride"] = 5
    data["model"]["reference"] = True
    cfg = RunConfig.from_dict(data)
    build_hofam(cfg.model).save(ref / "model.keras")
    cfg.save(ref / "config.json")
    with pytest.raises(HOFAMInputError, match="background-reference"):
        run_predict(tmp_path / "a.avi", ref / "model.keras", tmp_path / "out",
                    PredictOptions(adapt_steps=2, calibrate_frames=0, median_gate=0.0, overlay_video=False),
                    progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # about 30 s: one predict over two clips with adaptation
def test_bench_adapt_reports_each_clips_adaptation(tmp_path, tiny_model, capsys):
    from bench.bench_adapt import main

    _video(tmp_path / "v.avi", 8, frames=12)
    report = main([f"--video={tmp_path / 'v.avi'}", "--clips=2", "--frames=6", "--steps=2",
                   f"--ckpt={tiny_model / 'model.keras'}"])
    assert json.loads(capsys.readouterr().out) == report
    assert [r["clip"] for r in report["clips"]] == ["clip0", "clip1"]
    assert all(r["frames"] == 6 and r["adaptation_s"] > 0 for r in report["clips"])
    first, later = (r["adaptation_s"] for r in report["clips"])
    assert report["first_clip_adaptation_s"] == first and report["later_clips_adaptation_s_mean"] == later
    assert report["one_time_cost_s"] == pytest.approx(first - later, abs=0.011)
    with pytest.raises(SystemExit):  # 12 frames do not make 3 clips of 6
        main([f"--video={tmp_path / 'v.avi'}", "--clips=3", "--frames=6", f"--ckpt={tiny_model / 'model.keras'}"])
