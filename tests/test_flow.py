import dataclasses

import cv2
import numpy as np
import pytest

from hofam_tf.config import FlowConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.flow import (change_weight, confirm_by_reverse, encode_hop, encode_magnitude, estimate_flow,
                           flow_to_color, hop_from_grays, iter_hop, read_flo, resize_flow, resize_frame, to_gray,
                           write_flo)
from hofam_tf.data.sources import Frame
from hofam_tf.data.synthetic import shift_image, texture


def _moving_object(dx, dy, seed=3):
    rng = np.random.default_rng(seed)
    bg = texture(rng, 256, 256, 8, 1)[..., 0] * 150 + 50
    obj = texture(rng, 256, 256, 3, 1)[..., 0] * 200 + 30
    mask = np.zeros((256, 256), np.float32)
    mask[80:170, 70:160] = 1

    def frame(sx, sy):
        o, m = shift_image(obj, sx, sy), shift_image(mask, sx, sy)
        return np.clip(bg * (1 - m) + o * m, 0, 255).astype(np.uint8), m

    f0, _ = frame(0, 0)
    f1, m1 = frame(dx, dy)
    return f0, f1, m1


@pytest.mark.parametrize("dx,dy", [(2.3, -1.7), (-0.6, 0.4), (3.5, 2.25), (5.5, -3.0), (0.3, 0.2)])
def test_default_estimator_subpixel_accuracy(dx, dy):
    f0, f1, m1 = _moving_object(dx, dy)
    # flow from frame T (f1) to frame T - tau (f0): the object moved back by (-dx, -dy)
    flow = estimate_flow(f1, f0, FlowConfig())
    inside = m1 > 0.999
    inside[:, :] &= np.pad(np.ones((246, 246), bool), 5)  # away from the image border
    epe = np.sqrt((flow[..., 0] + dx) ** 2 + (flow[..., 1] + dy) ** 2)[inside]
    assert epe.mean() < 0.5, epe.mean()


def test_confirm_by_reverse_keeps_the_magnitude_both_flows_agree_on():
    forward = np.zeros((8, 8, 2), np.float32)
    forward[2:4, 2:6] = (2.0, 0.0)  # columns 2-3: the object; columns 4-5: a trail (no true match)
    reverse = np.zeros_like(forward)
    reverse[2:4, 4:6] = (-2.0, 0.0)  # in frame T-tau the object sits at columns 4-5 ...
    reverse[3, 5] = (-0.5, 0.0)  # ... one of its pixels only partly confirmed
    out = confirm_by_reverse(forward, reverse)
    expected = np.zeros((8, 8), np.float32)
    expected[2:4, 2:4] = 2.0
    expected[3, 3] = 0.5  # forward points from (3, 3) to (3, 5)
    np.testing.assert_allclose(out[..., 0], expected)  # the trail (columns 4-5) points at 0 motion
    assert not out[..., 1].any()


def test_reverse_check_removes_trails_and_keeps_the_object():
    f0, f1, m1 = _moving_object(8.0, 0.0)  # the object moved 8 px right: it uncovered columns 70-78
    cfg = FlowConfig(taus=(1, 2, 3), encoding="linear")
    checked = hop_from_grays({0: f0, 1: f1}, 1, dataclasses.replace(cfg, reverse_check=True))
    assert (checked <= hop_from_grays({0: f0, 1: f1}, 1, cfg)).all()  # a minimum never adds motion
    forward = estimate_flow(f1, f0, cfg)
    plain = np.sqrt((forward ** 2).sum(-1))
    kept = np.sqrt((confirm_by_reverse(forward, estimate_flow(f0, f1, cfg)) ** 2).sum(-1))
    inside = m1 > 0.999
    uncovered = np.zeros_like(inside)
    uncovered[85:165, 72:76] = True
    assert abs(kept[inside].mean() - plain[inside].mean()) < 0.05 * plain[inside].mean()
    assert kept[uncovered].mean() < 0.75 * plain[uncovered].mean()
    assert FlowConfig(estimator="flo").reverse_check is False  # .flo files hold one direction only


def test_change_weight_is_the_documented_formula():
    rng = np.random.default_rng(11)
    grays = {i: rng.integers(0, 256, (12, 16)).astype(np.uint8) for i in (0, 5, 9, 10)}
    grays[9] = np.clip(grays[10].astype(int) + rng.integers(-6, 7, (12, 16)), 0, 255).astype(np.uint8)
    expected = np.zeros((12, 16))
    for ref in (9, 5, 0):  # taus 1, 5, 10 from frame 10
        diff = np.pad(np.abs(grays[10].astype(float) - grays[ref]), 2, mode="reflect")  # edge not repeated
        box = sum(diff[dy:dy + 12, dx:dx + 16] for dy in range(5) for dx in range(5)) / 25
        expected = np.maximum(expected, box)
    for gate in (3.0, 40.0, 80.0):
        np.testing.assert_allclose(change_weight(grays, 10, (1, 5, 10), gate), np.clip(expected / gate - 1, 0, 1),
                                   atol=1e-5)
    assert 0 < change_weight(grays, 10, (1, 5, 10), 80.0).mean() < 1  # the ramp, not only 0 and 1


def test_change_gate_removes_the_halo_on_plain_background_and_keeps_the_object():
    rng = np.random.default_rng(3)
    obj = texture(rng, 256, 256, 3, 1)[..., 0] * 200 + 30
    mask = np.zeros((256, 256), np.float32)
    mask[80:170, 70:160] = 1
    bg = 120.0 + rng.normal(0, 1.0, (256, 256))  # plain, with sensor noise

    def frame(sx):
        o, m = shift_image(obj, sx, 0), shift_image(mask, sx, 0)
        return np.clip(bg * (1 - m) + o * m, 0, 255).astype(np.uint8), m

    (f0, m0), (f1, m1) = frame(0), frame(6)
    cfg = FlowConfig(taus=(1, 2, 3))
    plain = hop_from_grays({0: f0, 1: f1}, 1, cfg)
    gated = hop_from_grays({0: f0, 1: f1}, 1, dataclasses.replace(cfg, change_gate=4))
    covered = (m0 + m1) > 0  # in either frame
    dist = cv2.distanceTransform((~covered).astype(np.uint8), cv2.DIST_C, 3)  # chessboard distance to it
    halo = (dist > 5) & (dist <= 15)
    assert plain[halo].mean() > 20  # the estimator smears the object's motion onto the plain background
    assert not gated[dist > 5].any()  # nothing changed there: no motion left
    assert (gated <= plain).all()
    inside = m1 > 0.999
    np.testing.assert_array_equal(gated[inside], plain[inside])  # the textured object changed: kept whole
    assert FlowConfig(estimator="flo", change_gate=4).change_gate == 0.0  # no frames behind .flo files
    with pytest.raises(HOFAMInputError, match="change_gate"):
        FlowConfig(change_gate=-1)


def test_farneback_also_measures_motion():
    f0, f1, m1 = _moving_object(2.0, 1.0)
    flow = estimate_flow(f1, f0, FlowConfig(estimator="farneback"))
    epe = np.sqrt((flow[..., 0] + 2.0) ** 2 + (flow[..., 1] + 1.0) ** 2)[m1 > 0.999]
    assert epe.mean() < 1.0


def test_encoding_is_the_documented_formula():
    flow = np.zeros((4, 4, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, 4.0  # magnitude 5
    flow[0, 0] = (100.0, 0.0)  # saturates
    enc = encode_magnitude(flow, scale=6.0, gain=1)
    assert enc[1, 1] == 30 and enc[0, 0] == 255
    assert encode_magnitude(flow, scale=6.0, gain=3)[1, 1] == 90
    cfg = FlowConfig(encoding="linear")
    hop = encode_hop({1: flow * 0.1, 5: flow * 0.5, 10: flow}, cfg)
    # R = tau3 (longest), G = tau2, B = tau1 x3
    assert tuple(hop[1, 1]) == (30, 15, 3 * 3)


def test_log_encoding_is_the_documented_formula():
    flow = np.zeros((2, 2, 2), np.float32)
    flow[0, 0], flow[0, 1], flow[1, 0], flow[1, 1] = (0.5, 0.0), (3.0, 4.0), (64.0, 0.0), (500.0, 0.0)
    enc = encode_magnitude(flow, scale=6.0, gain=3, encoding="log")
    span = np.log1p(6.0 * 64.0)
    assert enc[0, 0] == round(255 * np.log1p(3.0) / span) == 59  # gains are not applied
    assert enc[0, 1] == round(255 * np.log1p(30.0) / span)
    assert enc[1, 0] == 255 and enc[1, 1] == 255
    assert FlowConfig().encoding == "log"
    hop = encode_hop({1: flow * 0.1, 5: flow * 0.5, 10: flow}, FlowConfig())
    assert hop[0, 1, 0] == enc[0, 1]  # R is tau3, encoded with the default (log) rule


def test_first_frames_clamp_to_frame_zero():
    rng = np.random.default_rng(0)
    grays = {i: (texture(rng, 64, 64, 4, 1)[..., 0] * 255).astype(np.uint8) for i in range(3)}
    cfg = FlowConfig(taus=(1, 2, 4))
    assert not hop_from_grays(grays, 0, cfg).any()  # frame 0: nothing to compare with
    hop2 = hop_from_grays(grays, 2, cfg)
    # tau=2 and tau=4 both pair frame 2 with frame 0: R and G carry the same map
    np.testing.assert_array_equal(hop2[..., 0], hop2[..., 1])


def _grays(n, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return {i: rng.integers(0, 256, (size, size)).astype(np.uint8) for i in range(n)}


def test_background_channel_is_the_difference_from_the_median_of_earlier_frames(monkeypatch):
    import hofam_tf.data.flow as flow_module

    grays = _grays(41)
    cfg = FlowConfig(taus=(1, 2, 4), background_stride=3, background_frames=5)
    assert cfg.history == 15 and cfg.flow_taus == (2, 4)
    pairs = []
    real = flow_module.estimate_flow
    monkeypatch.setattr(flow_module, "estimate_flow", lambda a, b, c: pairs.append((a, b)) or real(a, b, c))
    hop = hop_from_grays(grays, 40, cfg)
    earlier = np.stack([grays[i] for i in (37, 34, 31, 28, 25)]).astype(int)
    median = np.sort(earlier, axis=0)[2]  # the third of five, written out
    np.testing.assert_array_equal(hop[..., 2], np.abs(grays[40].astype(int) - median))
    # tau1's flow is not computed (forward and reverse of tau 2 and 4 only) ...
    assert not any(b is grays[39] or a is grays[39] for a, b in pairs) and len(pairs) == 4
    # ... and R, G are the HOP's own
    np.testing.assert_array_equal(hop[..., :2], hop_from_grays(grays, 40, FlowConfig(taus=(1, 2, 4)))[..., :2])
    # the first frames clamp to frame 0: no difference at frame 0, frame 0 as background at frame 3
    assert not hop_from_grays(grays, 0, cfg)[..., 2].any()
    np.testing.assert_array_equal(hop_from_grays(grays, 3, cfg)[..., 2],
                                  np.abs(grays[3].astype(int) - grays[0].astype(int)))
    with pytest.raises(ValueError, match="background"):
        encode_hop({t: np.zeros((4, 4, 2), np.float32) for t in (1, 2, 4)}, cfg)


def test_background_settings_are_checked_and_absent_means_off():
    for bad in ({"background_frames": 4}, {"background_frames": 0}, {"background_stride": -1}):
        with pytest.raises(HOFAMInputError, match="background"):
            FlowConfig(**bad)
    assert FlowConfig().background_stride == 0 and FlowConfig().history == 10
    recorded = {k: v for k, v in dataclasses.asdict(FlowConfig(taus=(2, 6, 12))).items() if not k.startswith("background")}
    assert FlowConfig.from_dict(recorded) == FlowConfig(taus=(2, 6, 12))  # files made before the setting


def test_iter_hop_keeps_the_frames_the_background_needs():
    rng = np.random.default_rng(2)
    rgb = [(texture(rng, 64, 80, 6) * 255).astype(np.uint8) for _ in range(40)]
    cfg = FlowConfig(dis_preset="balanced", background_stride=4, background_frames=3)
    for start in (0, 30):  # a sequence read whole, and one read from a later start (its lookback)
        frames = [Frame(i, f"{i:03d}", rgb[i], None, i >= 35) for i in range(start, 40)]
        out = {f.index: hop for f, _, hop, _ in iter_hop(iter(frames), cfg, workers=2, max_pending=2)}
        assert sorted(out) == list(range(35, 40))
        grays = {i: to_gray(resize_frame(rgb[i])) for i in range(start, 40)}
        grays.update({i: grays[start] for i in range(start)})  # before the start: the first frame read
        for t in (35, 39):
            np.testing.assert_array_equal(out[t], hop_from_grays(grays, t, cfg))
    assert not np.array_equal(hop_from_grays({i: to_gray(resize_frame(rgb[i])) for i in range(40)}, 35, cfg)[..., 2],
                              out[35][..., 2])  # the later start did change the background


def test_iter_hop_streams_every_scored_frame_in_order():
    rng = np.random.default_rng(1)
    frames = [Frame(i, f"{i:03d}", (texture(rng, 120, 160, 6) * 255).astype(np.uint8), None, i >= 3)
              for i in range(15)]
    out = list(iter_hop(iter(frames), FlowConfig(), workers=2, max_pending=3))
    assert [f.frame_id for f, _, _, _ in out] == [f"{i:03d}" for i in range(3, 15)]
    assert all(t.shape == (256, 256, 3) and h.shape == (256, 256, 3) and r is None for _, t, h, r in out)


def test_flo_round_trip_and_resize(tmp_path):
    flow = np.random.default_rng(0).normal(size=(30, 40, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow)
    big = resize_flow(np.full((128, 512, 2), 2.0, np.float32), 256)
    np.testing.assert_allclose(big[..., 0], 1.0)  # x shrinks by 2
    np.testing.assert_allclose(big[..., 1], 4.0)  # y grows by 2


def test_bad_flo_files_name_the_file(tmp_path):
    flow = np.zeros((8, 8, 2), np.float32)
    flow[2, 3, 0] = np.nan
    write_flo(tmp_path / "nan.flo", flow)
    with pytest.raises(HOFAMInputError, match="nan.flo.*NaN"):
        read_flo(tmp_path / "nan.flo")
    write_flo(tmp_path / "ok.flo", np.zeros((8, 8, 2), np.float32))
    data = (tmp_path / "ok.flo").read_bytes()
    (tmp_path / "cut.flo").write_bytes(data[:-10])
    with pytest.raises(HOFAMInputError, match="cut.flo"):
        read_flo(tmp_path / "cut.flo")
    (tmp_path / "junk.flo").write_bytes(b"PNG not a flow file")
    with pytest.raises(HOFAMInputError, match="junk.flo.*not a Middlebury"):
        read_flo(tmp_path / "junk.flo")


def test_middlebury_colours():
    flow = np.zeros((3, 3, 2), np.float32)
    flow[0, 0] = (1, 0)  # rightwards: red in the Middlebury wheel
    flow[0, 1] = (-1, 0)  # leftwards: cyan
    col = flow_to_color(flow)
    assert tuple(col[2, 2]) == (255, 255, 255)  # no motion: white
    assert col[0, 0, 0] == 255 and col[0, 0, 1] < 40 and col[0, 0, 2] < 40
    assert col[0, 1, 0] < 40 and col[0, 1, 1] > 200 and col[0, 1, 2] > 200


@pytest.mark.parametrize("background", [0, 2])
def test_flows_cli_output_feeds_merge_with_flo_files(tmp_path, background):
    """flows.py --save_flo writes .flo files that merge.py --estimator=flo turns into the same HOP
    (with the background channel too: it comes from the frames, not from the flow files)."""
    from hofam_tf.data.flow_images import write_flows
    from hofam_tf.data.merging import merge_dataset
    from hofam_tf.data.composite import read_composite
    from hofam_tf.files import read_image
    from hofam_tf.data.synthetic import write_scene

    write_scene(tmp_path / "scene", seed=5, frames=8, size=128)
    cfg = FlowConfig(background_stride=background, background_frames=3)
    assert write_flows(tmp_path / "scene" / "frames", tmp_path / "flows", cfg, save_flo=True, progress=False) == 8
    hop_png = read_image(tmp_path / "flows" / "hop" / "000006.png")
    assert (tmp_path / "flows" / "color_tau10" / "000006.png").exists()
    if background:  # B = |frame 6 - median of frames 4, 2, 0|, grey 256 tiles, written out here
        grays = [cv2.cvtColor(cv2.resize(read_image(tmp_path / "scene" / "frames" / f"{i:06d}.png"), (256, 256),
                                         interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2GRAY).astype(int)
                 for i in (6, 4, 2, 0)]
        median = np.sort(np.stack(grays[1:]), axis=0)[1]
        np.testing.assert_array_equal(hop_png[..., 2], np.abs(grays[0] - median))
        assert hop_png[..., 2].any()
    merge_dataset(tmp_path / "scene" / "frames", tmp_path / "comp", dataclasses.replace(cfg, estimator="flo"),
                  flo_dir=tmp_path / "flows" / "flo", progress=False)
    _, hop, _ = read_composite(tmp_path / "comp" / "frames" / "000006.png")
    np.testing.assert_array_equal(hop, hop_png)
    # and the DIS path of merge gives the same HOP as the flows tool
    merge_dataset(tmp_path / "scene" / "frames", tmp_path / "comp2", cfg, progress=False)
    np.testing.assert_array_equal(read_composite(tmp_path / "comp2" / "frames" / "000006.png")[1], hop_png)


def test_flows_cli_writes_the_background_reference(tmp_path):
    """With --reference_stride, flows.py also writes reference/<frame>.png: the per-pixel median
    RGB of the frame's earlier 256x256 tiles (frame 6, stride 2, 3 frames: frames 4, 2, 0)."""
    from hofam_tf.data.flow_images import write_flows
    from hofam_tf.data.synthetic import write_scene
    from hofam_tf.files import read_image

    write_scene(tmp_path / "scene", seed=6, frames=8, size=128)
    cfg = FlowConfig(reference_stride=2, background_frames=3, dis_preset="ultrafast", reverse_check=False)
    assert write_flows(tmp_path / "scene" / "frames", tmp_path / "flows", cfg, progress=False) == 8
    tiles = [cv2.resize(read_image(tmp_path / "scene" / "frames" / f"{i:06d}.png"), (256, 256),
                        interpolation=cv2.INTER_LINEAR).astype(int) for i in (4, 2, 0)]
    want = np.sort(np.stack(tiles), axis=0)[1]
    got = read_image(tmp_path / "flows" / "reference" / "000006.png")
    np.testing.assert_array_equal(got, want)
    assert sorted(p.name for p in (tmp_path / "flows" / "reference").iterdir())[0] == "000000.png"
    # frame 0's reference clamps to frame 0 itself
    np.testing.assert_array_equal(read_image(tmp_path / "flows" / "reference" / "000000.png"),
                                  cv2.resize(read_image(tmp_path / "scene" / "frames" / "000000.png"), (256, 256),
                                             interpolation=cv2.INTER_LINEAR))
