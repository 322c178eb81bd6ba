import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.predict import PredictOptions, run_predict
from hofam_tf.data.synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _write_video(path, frames, fps=12):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_predict_video_end_to_end(tmp_path, tiny_model):
    images, _ = make_scene(3, frames=11, size=256)
    frames = [cv2.resize(i, (320, 240)) for i in images]
    _write_video(tmp_path / "cam.avi", frames)
    result = run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / "out",
                         PredictOptions(batch_size=4, panels=True, calibrate_frames=0, median_gate=0), progress=False)
    (summary,) = result["sequences"]
    assert summary["frames"] == 11
    out = tmp_path / "out" / "cam"
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 11
    m = np.asarray(Image.open(masks[5]))
    assert m.shape == (240, 320) and set(np.unique(m)) <= {0, 255}  # native resolution
    assert np.asarray(Image.open(out / "panels" / "000005.png")).shape == (256, 1024, 3)
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 11 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 320
    assert json.loads((out / "summary.json").read_text())["frames"] == 11
    # the masks are the model's prediction: recompute one frame independently
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.data.flow import hop_from_grays, resize_frame, to_gray

    model, cfg = load_for_inference(tiny_model / "model.keras")
    decoded = []
    cap = cv2.VideoCapture(str(tmp_path / "cam.avi"))
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    tiles = [resize_frame(f) for f in decoded]
    grays = {i: to_gray(t) for i, t in enumerate(tiles)}
    hop = hop_from_grays(grays, 7, dataclasses.replace(cfg.flow, dis_preset=PredictOptions().flow_preset))
    p = 1 / (1 + np.exp(-np.asarray(model({"frame": tiles[7][None], "hop": hop[None]}))[0, ..., 0]))
    expected = cv2.resize(p, (320, 240), interpolation=cv2.INTER_LINEAR) >= 0.5
    got = np.asarray(Image.open(out / "masks" / "000007.png")) == 255
    assert (expected == got).mean() > 0.999


def test_preview_videos_are_scaled_to_video_max_side_and_the_masks_stay_native(tmp_path, tiny_model):
    from hofam_tf.tasks.predict import preview_size
    from hofam_tf.tasks.viz import overlay

    images, _ = make_scene(4, frames=9, size=256)
    frames = [cv2.resize(i, (320, 240)) for i in images]
    _write_video(tmp_path / "cam.avi", frames)
    opts = dict(batch_size=4, calibrate_frames=0, median_gate=0, side_by_side=True)
    for name, max_side, size in (("small", 100, (100, 76)), ("native", 0, (320, 240))):
        run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / name,
                    PredictOptions(**opts, video_max_side=max_side), progress=False)
        out = tmp_path / name / "cam"
        mask = np.asarray(Image.open(out / "masks" / "000006.png")) == 255
        assert mask.shape == (240, 320)  # masks are native whatever the videos' size
        for video, width in (("overlay.mp4", size[0]), ("side_by_side.mp4", 3 * size[0])):
            cap = cv2.VideoCapture(str(out / video))
            assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (width, size[1]), video
        # the overlay's frame 6 against the same preview made here from the decoded frame and the mask
        cap = cv2.VideoCapture(str(out / "overlay.mp4"))
        for _ in range(7):
            ok, got = cap.read()
        decoded = cv2.VideoCapture(str(tmp_path / "cam.avi"))
        for _ in range(7):
            _, bgr = decoded.read()
        rgb, fg = preview_size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), mask, max_side)
        assert fg.shape == size[::-1] and fg.dtype == bool
        # MPEG-4 is lossy, and the tiny model's masks are speckled: compared after a low-pass filter
        low = lambda x: cv2.GaussianBlur(np.asarray(x, np.float32), (0, 0), 2)  # noqa: E731
        tinted = np.abs(low(got) - low(overlay(rgb, fg, bgr=True))).mean()
        untinted = np.abs(low(got) - low(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))).mean()
        assert ok and tinted < 4 and untinted > 3 * tinted, (name, tinted, untinted)  # the tint is there
    frame, full = np.zeros((240, 320, 3), np.uint8), np.ones((240, 320), bool)
    assert preview_size(frame, full, 100)[1].all()  # a mask scaled by nearest neighbour stays a mask
    assert all(a is b for a, b in zip(preview_size(frame, full, 320), (frame, full)))  # under the cap: as is
    with pytest.raises(HOFAMInputError, match="video_max_side"):
        PredictOptions(video_max_side=-1)


def test_predict_computes_the_hop_at_its_own_dis_preset(tmp_path, tiny_model):
    """predict's HOP uses PredictOptions.flow_preset (its default, or "run": the model's own preset),
    every other flow setting the run's; the HOP tile of the panels is compared with HOP images computed
    here from the decoded frames, and summary.json records the settings used."""
    from hofam_tf.config import RunConfig
    from hofam_tf.data.flow import hop_from_grays, resize_frame, to_gray
    from hofam_tf.tasks.predict import FLOW_PRESET

    images, _ = make_scene(2, frames=12, size=256)
    _write_video(tmp_path / "cam.avi", [cv2.resize(i, (320, 240)) for i in images])
    cap, decoded = cv2.VideoCapture(str(tmp_path / "cam.avi")), []
    while (got := cap.read())[0]:
        decoded.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    grays = {i: to_gray(resize_frame(f)) for i, f in enumerate(decoded)}
    run_flow = RunConfig.load(tiny_model / "config.json").flow
    assert run_flow.dis_preset != FLOW_PRESET and run_flow.reverse_check  # the two runs below must differ
    hops = {}
    for preset in (None, "run"):
        opts = dict(batch_size=4, panels=True, calibrate_frames=0, median_gate=0, overlay_video=False)
        opts.update({"flow_preset": preset} if preset else {})
        out = tmp_path / f"out_{preset}"
        (summary,) = run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", out, PredictOptions(**opts),
                                 progress=False)["sequences"]
        used = dataclasses.replace(run_flow, dis_preset=FLOW_PRESET if preset is None else run_flow.dis_preset)
        assert summary["flow"] == {"estimator": "dis", "dis_preset": used.dis_preset, "reverse_check": True,
                                   "taus": list(run_flow.taus)}
        assert json.loads((out / "cam" / "summary.json").read_text())["flow"] == summary["flow"]
        hops[preset] = np.asarray(Image.open(out / "cam" / "panels" / "000011.png"))[:, 512:768]
        np.testing.assert_array_equal(hops[preset], hop_from_grays(grays, 11, used))
    assert (hops[None] != hops["run"]).any()
    with pytest.raises(HOFAMInputError, match="flow preset"):
        PredictOptions(flow_preset="fastest")


def test_predict_bad_inputs_leave_no_complete_looking_output(tmp_path, tiny_model):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF not really a video" * 50)
    with pytest.raises(HOFAMInputError, match="broken.avi"):
        run_predict(bad, tiny_model / "model.keras", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "broken" / "overlay.mp4").exists()
    assert not (tmp_path / "out" / "broken" / "summary.json").exists()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, size in enumerate([(64, 48)] * 3 + [(80, 48)]):
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(folder / f"{i:03d}.png")
    with pytest.raises(HOFAMInputError, match="003.png: frame size 80x48 differs"):
        run_predict(folder, tiny_model / "model.keras", tmp_path / "out2", PredictOptions(batch_size=2), progress=False)
    assert not (tmp_path / "out2" / "frames" / "overlay.mp4").exists()
    assert not list((tmp_path / "out2").rglob(".tmp-*"))


@pytest.mark.slow
def test_export_loads_with_tensorflow_alone(tmp_path, tiny_model):
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.tasks.export import export_serving

    model, _ = load_for_inference(tiny_model / "model.keras")
    paths = export_serving(model, tmp_path / "serving")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (2, 256, 256, 3)).astype(np.uint8)
    hop = rng.integers(0, 256, (2, 256, 256, 3)).astype(np.uint8)
    expected = 1 / (1 + np.exp(-np.asarray(model({"frame": frame, "hop": hop}))))
    np.save(tmp_path / "frame.npy", frame)
    np.save(tmp_path / "hop.npy", hop)
    code = f"""
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load({paths['saved_model']!r})
f, h = np.load({str(tmp_path / 'frame.npy')!r}), np.load({str(tmp_path / 'hop.npy')!r})
a = m.serve_uint8(tf.constant(f), tf.constant(h)).numpy()
b = m.serve(tf.constant(f.astype(np.float32)), tf.constant(h.astype(np.float32))).numpy()
np.save({str(tmp_path / 'a.npy')!r}, a); np.save({str(tmp_path / 'b.npy')!r}, b)
print('hofam_tf' in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("False")  # the library was never imported
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), expected, atol=1e-5)
    import keras

    prob = keras.saving.load_model(paths["keras"])
    np.testing.assert_allclose(np.asarray(prob({"frame": frame, "hop": hop})), expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not VTEST.exists(), reason="Debian opencv-doc's vtest.avi is not installed")
def test_predict_cli_on_vtest(tmp_path, tiny_model):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=predict", f"--input={VTEST}",
                           f"--ckpt={tiny_model / 'model.keras'}", f"--output_dir={tmp_path}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "vtest" / "masks").glob("*.png"))) == 795
    assert np.asarray(Image.open(tmp_path / "vtest" / "masks" / "000100.png")).shape == (576, 768)


def test_precision_choice_and_same_weights_in_bfloat16(tiny_model):
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.model.precision import cpu_has_bf16, inference_dtype

    assert cpu_has_bf16("flags\t\t: fpu sse avx512f avx512_bf16\n") and cpu_has_bf16("flags : amx_bf16 amx_tile")
    assert not cpu_has_bf16("flags : fpu sse avx2 avx512f\n")
    assert inference_dtype("float32") == "float32" and inference_dtype("bfloat16") == "mixed_bfloat16"
    assert inference_dtype("auto") == ("mixed_bfloat16" if cpu_has_bf16() else "float32")
    f32, _ = load_for_inference(tiny_model / "model.keras", precision="float32")
    b16, cfg = load_for_inference(tiny_model / "model.keras", precision="bfloat16")
    assert cfg.model.dtype == "mixed_bfloat16"
    rng = np.random.default_rng(1)
    x = {k: rng.integers(0, 256, (2, 256, 256, 3)).astype(np.uint8) for k in ("frame", "hop")}
    a, b = np.asarray(f32(x)), np.asarray(b16(x))
    assert b.dtype == np.float32
    assert np.abs(a - b).max() < 0.1 * (np.abs(a).max() + 1)  # same weights, bf16 rounding only


def test_keras_file_takes_model_overrides(tiny_model):
    """--hop_channels=r on a .keras file: the red-only graph with the file's weights."""
    from hofam_tf.model.checkpoints import load_for_inference

    rgb, _ = load_for_inference(tiny_model / "model.keras")
    red, cfg = load_for_inference(tiny_model / "model.keras", {"hop_channels": "r"})
    assert cfg.model.hop_channels == "r"
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (1, 256, 256, 3)).astype(np.uint8)
    hop = rng.integers(0, 256, (1, 256, 256, 3)).astype(np.uint8)
    only_r = hop.copy()
    only_r[..., 1:] = 0
    np.testing.assert_allclose(np.asarray(red({"frame": frame, "hop": hop})),
                               np.asarray(red({"frame": frame, "hop": only_r})), atol=1e-6)
    assert not np.allclose(np.asarray(rgb({"frame": frame, "hop": hop})), np.asarray(red({"frame": frame, "hop": hop})))


def test_scene_threshold_picks_the_masks_that_match_the_changed_pixels():
    from hofam_tf.tasks.predict import scene_threshold
    from hofam_tf.data.sources import Frame
    from hofam_tf.tasks.validation import THRESHOLDS

    h, w = 60, 80
    background = np.full((h, w, 3), 90, np.uint8)
    items = []
    for i in range(12):
        rgb = background.copy()
        prob = np.full((h, w), 0.1, np.float32)
        if i >= 6:  # an object enters: 40 grey levels brighter (the rule marks it), ...
            rgb[20:40, 10 + i:30 + i] = 130
            prob[16:44, 6 + i:34 + i] = 0.72  # ... the model puts a halo of 0.72 around it
            prob[20:40, 10 + i:30 + i] = 0.96  # and 0.96 on it
        items.append((Frame(i, f"{i:03d}", rgb, None, True), None, None, prob))
    threshold, agreement = scene_threshold(items, None, 0.5)
    assert threshold == 0.75  # the first threshold above the halo and not above the object
    assert agreement["0.75"] == agreement["0.95"] == 1.0 and agreement["0.97"] == 0.0
    halo = 20 * 20 / (28 * 28)  # at 0.7 the masks are the object and its halo: Dice 2|A|/(|A|+|A+halo|)
    assert agreement["0.7"] == pytest.approx(2 * halo / (1 + halo), abs=1e-4)
    # inside an ROI that leaves the object out, nothing changes and the model's masks should be empty
    roi = np.zeros((h, w), bool)
    roi[45:, :] = True
    assert scene_threshold(items, roi, 0.5)[0] == 0.5  # no agreement anywhere: the fallback
    # an empty scene: the rule sees a few noisy pixels, the model a few false ones at low thresholds;
    # the best agreement (2 of 100 + 60 pixels at 0.05 … 0.25) is too weak to choose a threshold on
    empty = []
    for i in range(12):
        rgb = background.copy()
        prob = np.full((h, w), 0.1, np.float32)
        if i == 8:
            rgb[0, :60] = 200  # 60 noisy pixels the rule marks
            prob[0, 58:78] = prob[1, :80] = 0.3  # 100 pixels the model marks up to 0.25, 2 of them shared
        empty.append((Frame(i, f"{i:03d}", rgb, None, True), None, None, prob))
    threshold, weak = scene_threshold(empty, None, 0.5)
    assert threshold == 0.5 and 0 < max(weak.values()) < 0.1
    assert set(agreement) == {str(t) for t in THRESHOLDS}
    # bounded: from a validated 0.97 (odds 32.3), odds within 3x reach 0.915..0.99, so the best
    # agreement there is 0.95 (the object alone); within 1.1x only 0.97 itself, which marks nothing
    # the rule marks, so the fallback stays
    bounded, same = scene_threshold(items, None, 0.97, odds_range=3)
    assert bounded == 0.95 and same == agreement
    assert scene_threshold(items, None, 0.97, odds_range=1.1)[0] == 0.97
    assert scene_threshold(items, None, 0.6, odds_range=1000)[0] == 0.75  # wide: the unbounded choice


def test_predict_with_a_scene_threshold_replays_the_calibration_frames(tmp_path, tiny_model, monkeypatch):
    import hofam_tf.tasks.predict as predict

    monkeypatch.setattr(predict, "MIN_AGREEMENT", 0.0)  # the untrained model agrees with the rule only weakly
    images, _ = make_scene(5, frames=11, size=256)
    _write_video(tmp_path / "cam.avi", [cv2.resize(i, (320, 240)) for i in images])
    result = run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / "cal",
                         PredictOptions(batch_size=4, calibrate_frames=6, overlay_video=False), progress=False)
    (summary,) = result["sequences"]
    assert summary["frames"] == 11 and summary["calibrate_frames"] == 6
    agreement = summary["agreement_by_threshold"]
    assert agreement[str(summary["threshold"])] == max(agreement.values())  # the best agreement (4 decimals)
    # the same masks as a plain run at that threshold, the calibration frames included
    run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / "fixed",
                PredictOptions(batch_size=4, threshold=summary["threshold"], overlay_video=False, calibrate_frames=0),
                progress=False)
    for i in range(11):
        a = np.asarray(Image.open(tmp_path / "cal" / "cam" / "masks" / f"{i:06d}.png"))
        np.testing.assert_array_equal(a, np.asarray(Image.open(tmp_path / "fixed" / "cam" / "masks" / f"{i:06d}.png")))
    with pytest.raises(HOFAMInputError, match="calibrate_frames"):
        PredictOptions(calibrate_frames=-1)


def test_gate_fill_restores_a_hollow_object_and_still_trims_its_halo():
    """A solid object whose plain surface the median rule does not mark (only its outline), with
    a halo strip the model adds beside it: the pixel gate leaves a ring; --gate_fill restores the
    inside and keeps the halo trimmed."""
    from hofam_tf.tasks.predict import apply_gate

    yy, xx = np.mgrid[:64, :64]
    body = (yy - 32) ** 2 + (xx - 24) ** 2 <= 12 ** 2
    halo = (np.abs(yy - 32) <= 4) & (xx > 36) & (xx < 56)  # attached to the body, outside it
    fg = body | halo
    outline = body & ~((yy - 32) ** 2 + (xx - 24) ** 2 <= 10 ** 2)  # the rule's changes: the edge
    pixel, filled = apply_gate(fg, outline), apply_gate(fg, outline, "fill")
    np.testing.assert_array_equal(pixel, outline)  # hollow
    np.testing.assert_array_equal(filled, body)  # solid again, halo still cut
    assert not apply_gate(fg, np.zeros_like(fg), "fill").any()


def test_component_gate_keeps_touched_objects_whole_and_drops_the_rest():
    """--gate_mode=components: a component of the mask with at least GATE_OVERLAP of its pixels
    in the gate is kept whole (interior and attached halo), one below it is dropped whole; the
    shares are counted here independently, pixel by pixel."""
    from hofam_tf.tasks.predict import GATE_OVERLAP, apply_gate

    yy, xx = np.mgrid[:64, :96]
    person = (yy - 32) ** 2 + (xx - 20) ** 2 <= 12 ** 2
    ripple = (np.abs(yy - 10) <= 3) & (xx > 50) & (xx < 90)  # a blob the rule barely sees
    grazed = (np.abs(yy - 45) <= 5) & (xx > 50) & (xx < 80)  # touched on just under the share
    fg = person | ripple | grazed
    gate = person & ~((yy - 32) ** 2 + (xx - 20) ** 2 <= 10 ** 2)  # the rule marks the person's edge
    gate |= ripple & (xx <= 51)
    cols = np.flatnonzero(grazed.any(axis=0))
    need = int(np.ceil(GATE_OVERLAP * grazed.sum()))
    grazed_gate = np.zeros_like(grazed)
    grazed_gate[grazed] = np.arange(grazed.sum()) < need - 1  # one pixel short of the share
    gate |= grazed_gate
    assert cols.size and (gate & person).sum() >= GATE_OVERLAP * person.sum()
    assert (gate & ripple).sum() < GATE_OVERLAP * ripple.sum()
    kept = apply_gate(fg, gate, "components")
    np.testing.assert_array_equal(kept, person)
    grazed_gate[grazed] = np.arange(grazed.sum()) < need  # exactly the share: kept whole
    np.testing.assert_array_equal(apply_gate(fg, gate | grazed_gate, "components"), person | grazed)
    assert not apply_gate(np.zeros_like(fg), gate, "components").any()
    with pytest.raises(HOFAMInputError, match="gate mode"):
        PredictOptions(gate_mode="holes")


@pytest.mark.slow
def test_median_gate_trims_masks_to_the_dilated_changed_pixels(tmp_path, tiny_model):
    from hofam_tf.tasks.predict import median_gate_kernel

    images, _ = make_scene(5, frames=11, size=256)
    _write_video(tmp_path / "cam.avi", [cv2.resize(i, (320, 240)) for i in images])

    def masks(name, **kw):
        run_predict(tmp_path / "cam.avi", tiny_model / "model.keras", tmp_path / name,
                    PredictOptions(batch_size=4, overlay_video=False, calibrate_frames=0, **kw), progress=False)
        return [np.asarray(Image.open(tmp_path / name / "cam" / "masks" / f"{i:06d}.png")) > 127 for i in range(11)]

    # the rule computed here from the decoded frames: |grey - median of the 9 frames 10 apart before| >= 30
    cap = cv2.VideoCapture(str(tmp_path / "cam.avi"))
    grey = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        grey.append(cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cv2.COLOR_RGB2GRAY).astype(np.int16))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # radius 1.5 tile px x 320/256 -> 2 px
    expected = []
    for t in range(11):
        median = np.median(np.stack([grey[max(t - 10 * j, 0)] for j in range(1, 10)]), axis=0).astype(np.int16)
        expected.append(cv2.dilate((np.abs(grey[t] - median) >= 30).astype(np.uint8), disk) > 0)
    assert 0 < sum(e.sum() for e in expected) < 0.5 * 11 * 240 * 320  # the moving objects, not the frame

    everything = masks("all", threshold=0.0, median_gate=1.5)  # every pixel passes: the gate alone
    for got, want in zip(everything, expected):
        np.testing.assert_array_equal(got, want)
    plain, gated = masks("plain", threshold=0.5, median_gate=0), masks("gated", threshold=0.5, median_gate=1.5)
    for p, g, want in zip(plain, gated, expected):
        np.testing.assert_array_equal(g, p & want)
    summary = json.loads((tmp_path / "gated" / "cam" / "summary.json").read_text())
    assert summary["median_gate"] == 1.5 and summary["gate_mode"] == "pixel"
    # --gate_mode=fill: the gated mask with the holes it encloses filled, computed here with scipy
    from scipy.ndimage import binary_fill_holes, label

    filled = masks("filled", threshold=0.5, median_gate=1.5, gate_mode="fill")
    for p, g, f in zip(plain, gated, filled):
        np.testing.assert_array_equal(f, p & binary_fill_holes(g))
    assert json.loads((tmp_path / "filled" / "cam" / "summary.json").read_text())["gate_mode"] == "fill"
    # --gate_mode=components: scipy's 8-connected components of the plain mask, each kept whole
    # when a fifth of it (GATE_OVERLAP) is in the gate
    from hofam_tf.tasks.predict import GATE_OVERLAP

    whole = masks("whole", threshold=0.5, median_gate=1.5, gate_mode="components")
    for p, want, w in zip(plain, expected, whole):
        labels, n = label(p, structure=np.ones((3, 3)))
        keep = [k for k in range(1, n + 1) if (want & (labels == k)).sum() >= GATE_OVERLAP * (labels == k).sum()]
        np.testing.assert_array_equal(w, np.isin(labels, keep) & p)
    assert median_gate_kernel(0, (240, 320)) is None
    assert median_gate_kernel(1.5, (1080, 1920)).shape == (23, 23)  # 1.5 x 1920/256 = 11.25 -> radius 11
    with pytest.raises(HOFAMInputError, match="median_gate"):
        PredictOptions(median_gate=-1)


@pytest.mark.slow
def test_predict_cli_defaults_choose_the_threshold_unless_one_is_given(tmp_path, tiny_model):
    from hofam_tf.model.checkpoints import stored_threshold
    from hofam_tf.tasks.predict import CALIBRATE_FRAMES, MEDIAN_GATE, MIN_AGREEMENT

    images, _ = make_scene(4, frames=8, size=256)
    _write_video(tmp_path / "cam.avi", [cv2.resize(i, (320, 240)) for i in images])

    def summary(name, *args):
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=predict", f"--input={tmp_path / 'cam.avi'}",
                               f"--ckpt={tiny_model}", f"--output_dir={tmp_path / name}", "--nooverlay_video", *args],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads((tmp_path / name / "cam" / "summary.json").read_text())

    default = summary("default")  # the scene-adaptive threshold and the median gate
    assert default["calibrate_frames"] == CALIBRATE_FRAMES and default["median_gate"] == MEDIAN_GATE
    agreement = default["agreement_by_threshold"]
    if max(agreement.values()) >= MIN_AGREEMENT:  # the best agreement, else the run's own threshold
        assert agreement[str(default["threshold"])] == max(agreement.values())
    else:
        assert default["threshold"] == stored_threshold(tiny_model)
    given = summary("given", "--threshold=0.3")  # a threshold given alone is used as it is
    assert given["threshold"] == 0.3 and given["calibrate_frames"] == 0 and given["agreement_by_threshold"] is None
    both = summary("both", "--threshold=0.3", "--calibrate_frames=3", "--median_gate=0")
    assert both["calibrate_frames"] == 3 and both["median_gate"] == 0 and both["agreement_by_threshold"] is not None


def _graph_dtypes(saved_model_dir) -> set:
    """Every dtype named in the SavedModel's graph and function library (attrs of every node),
    and the dtypes of its variables."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    found = set()
    for mg in sm.meta_graphs:
        nodes = list(mg.graph_def.node)
        for fn in mg.graph_def.library.function:
            nodes.extend(fn.node_def)
        for node in nodes:
            for attr in node.attr.values():
                if attr.HasField("type"):
                    found.add(tf.dtypes.as_dtype(attr.type).name)
                found.update(tf.dtypes.as_dtype(t).name for t in attr.list.type)
                if attr.HasField("tensor"):
                    found.add(tf.dtypes.as_dtype(attr.tensor.dtype).name)
    for v in tf.saved_model.load(str(saved_model_dir)).variables:
        found.add("variable:" + v.dtype.name)
    return found


@pytest.mark.slow
def test_export_is_float32_whatever_the_host_cpu(tmp_path, tiny_model, monkeypatch):
    """On a host with native bf16 (mocked), auto picks bf16 for predict, but the default export
    holds only float32 variables and constants, and says so in export.json; bf16 is exported
    only when asked for."""
    import json

    import hofam_tf.model.precision as precision
    from hofam_tf.tasks.export import export_checkpoint

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda cpuinfo=None: True)
    assert precision.inference_dtype("auto") == "mixed_bfloat16"  # the mock is what auto sees
    default = export_checkpoint(tiny_model / "model.keras", tmp_path / "default")
    dtypes = _graph_dtypes(tmp_path / "default" / "saved_model")
    assert "bfloat16" not in dtypes and "variable:float32" in dtypes
    assert {d for d in dtypes if d.startswith("variable:") and "float" in d} == {"variable:float32"}
    meta = json.loads((tmp_path / "default" / "export.json").read_text())
    assert meta["precision"] == "float32" and meta["dtype_policy"] == "float32" == default["dtype_policy"]
    bf16 = export_checkpoint(tiny_model / "model.keras", tmp_path / "bf16", precision="auto")
    assert "bfloat16" in _graph_dtypes(tmp_path / "bf16" / "saved_model")  # the scan sees bf16 when present
    assert json.loads((tmp_path / "bf16" / "export.json").read_text())["dtype_policy"] == "mixed_bfloat16"
    assert bf16["precision"] == "auto"


@pytest.mark.slow
def test_predict_defaults_are_the_models_validated_post_processing(tmp_path, tiny_model):
    """best.json's "post" (chosen on the run's validation scenes) gives predict's defaults for that
    model; a flag given wins; --gate_fill contradicting --gate_mode is an error."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    (run / "best.json").write_text(json.dumps({"threshold": 0.6, "post": {
        "chosen": "x", "calibrate_frames": 0, "median_gate": 3.0, "gate_mode": "components"}}))
    images, _ = make_scene(4, frames=6, size=256)
    _write_video(tmp_path / "cam.avi", [cv2.resize(i, (320, 240)) for i in images])

    def predict(name, *flags):
        return subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=predict", f"--input={tmp_path / 'cam.avi'}",
                               f"--output_dir={tmp_path / name}", f"--ckpt={run}", "--nooverlay_video", *flags],
                              capture_output=True, text=True, cwd=ROOT)

    proc = predict("stored")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((tmp_path / "stored" / "cam" / "summary.json").read_text())
    assert (s["threshold"], s["calibrate_frames"], s["median_gate"], s["gate_mode"]) == (0.6, 0, 3.0, "components")
    assert s["hysteresis"] == 0.0 and s["low_threshold"] == 0.6  # a record from before the field: off
    proc = predict("given", "--median_gate=1.5", "--gate_fill", "--calibrate_frames=4", "--hysteresis=10",
                   "--calibrate_range=5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((tmp_path / "given" / "cam" / "summary.json").read_text())
    assert (s["calibrate_frames"], s["median_gate"], s["gate_mode"], s["hysteresis"]) == (4, 1.5, "fill", 10.0)
    assert s["calibrate_range"] == 5.0
    bad = predict("bad", "--gate_fill", "--gate_mode=pixel")
    assert bad.returncode == 2 and "--gate_fill means --gate_mode=fill" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_fill_holes_matches_scipy_on_random_masks():
    """predict's flood-fill hole filling against scipy's binary_fill_holes, independently."""
    from scipy.ndimage import binary_fill_holes

    from hofam_tf.tasks.predict import fill_holes

    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = rng.integers(1, 120, 2)
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
        np.testing.assert_array_equal(fill_holes(mask), binary_fill_holes(mask))
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7], ring[3:6, 3:6] = True, False
    assert fill_holes(ring)[4, 4] and not fill_holes(ring)[0, 0]


def _hysteresis_by_scipy(prob, high, low):
    """Hysteresis thresholding written independently: scipy's 8-connected labelling of the low mask,
    each label kept when any of its pixels is at or above ``high``."""
    from scipy.ndimage import label

    labels, _ = label(prob >= low, structure=np.ones((3, 3)))
    seeded = np.unique(labels[(prob >= high) & (labels > 0)])
    return np.isin(labels, seeded) & (labels > 0)


def test_hysteresis_keeps_the_connected_regions_that_hold_a_sure_pixel():
    from hofam_tf.tasks.predict import hysteresis_mask, low_threshold

    # the low threshold's odds are K times lower than the threshold's
    for t, k in ((0.99, 10), (0.97, 100), (0.5, 3)):
        low = low_threshold(t, k)
        assert (t / (1 - t)) / (low / (1 - low)) == pytest.approx(k)
    assert low_threshold(0.9, 0) == low_threshold(0.9, 1) == 0.9 and low_threshold(1.0, 10) == 1.0
    rng = np.random.default_rng(5)
    for _ in range(30):
        h, w = rng.integers(1, 90, 2)
        prob = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), float(rng.uniform(0.5, 3)))
        prob = (prob - prob.min()) / max(float(np.ptp(prob)), 1e-6)
        t, k = float(rng.uniform(0.3, 0.95)), float(rng.choice([2.0, 10.0, 100.0]))
        got = hysteresis_mask(prob, t, k)
        np.testing.assert_array_equal(got, _hysteresis_by_scipy(prob, t, low_threshold(t, k)))
        assert (got >= (prob >= t)).all()  # only ever adds pixels to the plain mask
        np.testing.assert_array_equal(hysteresis_mask(prob, t, 0.0), prob >= t)
    # a weak object with a sure core comes back whole; a weak blob with none stays out
    prob = np.zeros((20, 40), np.float32)
    prob[4:12, 3:12] = 0.8
    prob[7, 7] = 0.995
    prob[4:12, 25:35] = 0.9
    mask = hysteresis_mask(prob, 0.99, 100)
    assert mask[4:12, 3:12].all() and not mask[:, 20:].any() and mask.sum() == 72


def test_hysteresis_option_is_checked_and_recorded_by_runs(tmp_path):
    from hofam_tf.model.checkpoints import POST_FIELDS, stored_post

    for bad in (-1.0, 0.5, 1e7):
        with pytest.raises(HOFAMInputError, match="hysteresis"):
            PredictOptions(hysteresis=bad)
        with pytest.raises(HOFAMInputError, match="calibrate_range"):
            PredictOptions(calibrate_range=bad)
    PredictOptions(hysteresis=1.0)
    post = {"chosen": "x", "calibrate_frames": 0, "median_gate": 1.5, "gate_mode": "fill"}
    (tmp_path / "best.json").write_text(json.dumps({"threshold": 0.9, "post": post}))
    fields = {k: v for k, v in post.items() if k != "chosen"}
    assert stored_post(tmp_path) == {**fields, "hysteresis": 0.0, "calibrate_range": 0.0, "adapt_steps": 0}  # older record: off
    (tmp_path / "best.json").write_text(json.dumps({"threshold": 0.9, "post": {**post, "hysteresis": 10.0}}))
    assert stored_post(tmp_path)["hysteresis"] == 10.0 and set(stored_post(tmp_path)) == set(POST_FIELDS)
    (tmp_path / "best.json").write_text(json.dumps({"threshold": 0.9, "post": {"calibrate_frames": 0}}))
    with pytest.raises(HOFAMInputError, match="lacks median_gate, gate_mode"):
        stored_post(tmp_path)


def test_predict_with_hysteresis_extends_the_plain_masks_from_their_seeds(tmp_path, tiny_model):
    """The same video at the same threshold, with and without hysteresis: every mask with it holds
    the plain mask, and each of its 8-connected regions holds a pixel of the plain mask."""
    images, _ = make_scene(4, frames=10, size=256)
    _write_video(tmp_path / "cam.avi", [cv2.resize(i, (320, 240)) for i in images])
    base = PredictOptions(overlay_video=False, batch_size=4, threshold=0.5, calibrate_frames=0, median_gate=0.0)
    run_predict(tmp_path / "cam.avi", tiny_model, tmp_path / "plain", base)
    summary = run_predict(tmp_path / "cam.avi", tiny_model, tmp_path / "hyst",
                          dataclasses.replace(base, hysteresis=1e6))["sequences"][0]
    assert summary["hysteresis"] == 1e6 and summary["low_threshold"] == pytest.approx(0.5 / (0.5 + 1e6 * 0.5))
    grown = 0
    for path in sorted((tmp_path / "plain" / "cam" / "masks").glob("*.png")):
        plain = np.array(Image.open(path)) > 0
        hyst = np.array(Image.open(tmp_path / "hyst" / "cam" / "masks" / path.name)) > 0
        assert (hyst >= plain).all()
        n, labels = cv2.connectedComponents(hyst.astype(np.uint8), connectivity=8)
        assert set(range(1, n)) <= set(np.unique(labels[plain]))
        grown += int(hyst.sum() - plain.sum())
    assert grown > 0  # an untrained model's probabilities hover near 0.5: the low threshold adds pixels


def test_median_gate_near_a_mask_is_the_whole_frames_gate_on_it():
    """``MedianGate.near`` computes the rule only near the mask; every gate mode must give the same
    masks as with the whole frame's gate, for sparse, dense, border-touching and empty masks."""
    from hofam_tf.tasks.predict import GATE_MODES, MedianGate, apply_gate, median_gate_kernel

    rng = np.random.default_rng(11)
    for h, w, radius in ((240, 320, 1.5), (300, 517, 3.0), (130, 70, 0.75), (1080, 1920, 1.5)):
        base = rng.integers(0, 256, (h, w), dtype=np.uint8)
        earlier = [np.clip(base.astype(int) + rng.integers(-8, 9, (h, w)), 0, 255).astype(np.uint8) for _ in range(9)]
        gray = base.copy()
        for _ in range(6):  # moved objects: patches that differ from the background
            y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
            gray[y:y + rng.integers(5, 60), x:x + rng.integers(5, 60)] = rng.integers(0, 256)
        kernel = median_gate_kernel(radius, (h, w))
        whole = MedianGate(gray, earlier, kernel).full().mask
        for density in (0.0, 0.0005, 0.01, 0.3):
            fg = cv2.dilate((rng.random((h, w)) < density).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            fg[0, :3] = density > 0.001  # touches the border
            near = MedianGate(gray, earlier, kernel).near(fg)
            np.testing.assert_array_equal(near & fg, whole & fg)
            for mode in GATE_MODES:
                np.testing.assert_array_equal(apply_gate(fg, near, mode), apply_gate(fg, whole, mode))
