import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hofam_tf.data.merging import merge_dataset, merge_sequence
from hofam_tf.data.composite import read_composite
from hofam_tf.config import FlowConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.sources import discover, lasiesta_to_labels

ROOT = Path(__file__).resolve().parents[1]


def _area(img):
    """The documented frame filter: area when both sides shrink, else bilinear."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if h >= 256 and w >= 256 else cv2.INTER_LINEAR
    return cv2.resize(img, (256, 256), interpolation=interp)


def test_cdnet_folder_matches_independently_resized_inputs(tmp_path, shared_data):
    src = shared_data / "cdnet2014" / "baseline" / "highway"
    done = merge_dataset(src, tmp_path, FlowConfig(), progress=False)
    assert done == {"highway": 51}
    meta = json.loads((tmp_path / "highway" / "sequence.json").read_text())
    assert meta["labelled"] and meta["frames"][0] == "000600" and meta["native_size"] == [240, 320]
    for fid in ("000600", "000633", "000650"):
        frame, hop, labels = read_composite(tmp_path / "highway" / f"{fid}.png")
        expected = _area(np.asarray(Image.open(src / "input" / f"in{fid}.jpg").convert("RGB")))
        np.testing.assert_array_equal(frame, expected)
        gt = np.asarray(Image.open(src / "groundtruth" / f"gt{fid}.png").convert("L"))
        np.testing.assert_array_equal(labels, cv2.resize(gt, (256, 256), interpolation=cv2.INTER_NEAREST))
        assert set(np.unique(labels)) <= {0, 50, 85, 170, 255}
    # highway: cars move, so the HOP is bright where the GT says moving
    frame, hop, labels = read_composite(tmp_path / "highway" / "000640.png")
    assert hop[labels == 255].mean() > 3 * hop[labels == 0].mean()


def test_background_channel_marks_the_cars_whole_on_real_footage(tmp_path, shared_data):
    """highway with --background_stride: channel B is the difference from the median of earlier
    frames; it is bright on the cars, inside them too, and dark on the road."""
    src = shared_data / "cdnet2014" / "baseline" / "highway"
    merge_dataset(src, tmp_path, FlowConfig(background_stride=5, background_frames=5), progress=False)
    meta = json.loads((tmp_path / "highway" / "sequence.json").read_text())
    assert meta["flow"]["background_stride"] == 5
    frame, hop, labels = read_composite(tmp_path / "highway" / "000640.png")
    diff, fg, bg = hop[..., 2].astype(float), labels == 255, labels == 0
    assert diff[fg].mean() > 5 * diff[bg].mean()
    assert (diff[fg] >= 20).mean() > 0.5 and (diff[bg] >= 20).mean() < 0.05
    # the frames before it: the median of frames 635, 630, 625, 620 and 615, written out
    grays = [cv2.cvtColor(_area(np.asarray(Image.open(src / "input" / f"in{i:06d}.jpg").convert("RGB"))),
                          cv2.COLOR_RGB2GRAY).astype(int) for i in (640, 635, 630, 625, 620, 615)]
    np.testing.assert_array_equal(hop[..., 2], np.abs(grays[0] - np.sort(np.stack(grays[1:]), axis=0)[2]))


def test_roi_palette_bmp_marks_outside_as_85(tmp_path, shared_data):
    src = tmp_path / "cat" / "vid"
    shutil.copytree(shared_data / "cdnet2014" / "baseline" / "office", src)
    (src / "temporalROI.txt").write_text("640 645\n")
    roi = np.full((240, 360), 255, np.uint8)
    roi[:, :180] = 0
    pal = Image.fromarray((roi > 0).astype(np.uint8), mode="L").convert("P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)  # index 1 -> white
    pal.save(src / "ROI.bmp")
    assert set(np.unique(np.asarray(Image.open(src / "ROI.bmp")))) == {0, 1}  # raw indices != mask
    out = tmp_path / "out"
    done = merge_dataset(tmp_path / "cat", out, FlowConfig(), progress=False)
    assert done == {"vid": 6}  # only the temporal ROI 640..645
    _, _, labels = read_composite(out / "vid" / "000642.png")
    assert (labels[:, :120] == 85).all()
    gt = np.asarray(Image.open(src / "groundtruth" / "gt000642.png"))
    right = cv2.resize(gt, (256, 256), interpolation=cv2.INTER_NEAREST)[:, 136:]
    np.testing.assert_array_equal(labels[:, 136:], right)


def test_sbi_gotchas(tmp_path, shared_data):
    seqs = {s.name: s for s in discover(shared_data / "sbi2015")}
    # IBMtest2 says "0 90" but has frames 0..89: the range is clipped to what exists
    assert sum(seqs["IBMtest2"].scored) == 90
    # Board: 200x164 PNG frames, temporal ROI 1..227
    n = merge_sequence(seqs["Board"], tmp_path, FlowConfig(dis_preset="ultrafast"), progress=False)
    assert n == 227
    frame, _, labels = read_composite(tmp_path / "Board" / "000001.png")
    src = np.asarray(Image.open(shared_data / "sbi2015" / "Board" / "input" / "in000001.png").convert("RGB"))
    assert src.shape == (164, 200, 3)
    np.testing.assert_array_equal(frame, cv2.resize(src, (256, 256), interpolation=cv2.INTER_LINEAR))


def test_lasiesta_colour_mapping_and_layout(tmp_path):
    colours = {(0, 0, 0): 0, (255, 0, 0): 255, (0, 255, 0): 255, (255, 255, 0): 255,
               (255, 255, 255): 255, (128, 128, 128): 170}
    gt = np.zeros((2, 6, 3), np.uint8)
    for i, c in enumerate(colours):
        gt[:, i] = c
    np.testing.assert_array_equal(lasiesta_to_labels(gt)[0], list(colours.values()))
    # NAME + NAME-GT folders
    seq, gtd = tmp_path / "I_SI_01", tmp_path / "I_SI_01-GT"
    seq.mkdir(), gtd.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 4):
        Image.fromarray(rng.integers(0, 255, (288, 352, 3), np.uint8)).save(seq / f"I_SI_01-{i}.bmp")
        mask = np.zeros((288, 352, 3), np.uint8)
        mask[100:150, 100:200] = (255, 0, 0)
        mask[0:10] = (128, 128, 128)
        Image.fromarray(mask).save(gtd / f"I_SI_01-GT_{i}.png")
    out = tmp_path / "out"
    assert merge_dataset(tmp_path, out, FlowConfig(), progress=False) == {"I_SI_01": 3}
    _, _, labels = read_composite(out / "I_SI_01" / "2.png")
    assert (labels[:8] == 170).all() and (labels[100:120, 90:130] == 255).all()
    assert set(np.unique(labels)) == {0, 170, 255}


def test_video_file_is_unlabelled(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert merge_dataset(path, out, FlowConfig(), progress=False) == {"clip": 12}
    meta = json.loads((out / "clip" / "sequence.json").read_text())
    assert meta["labelled"] is False
    _, _, labels = read_composite(out / "clip" / "000005.png")
    assert (labels == 170).all()


def test_plain_frames_with_and_without_masks(tmp_path):
    from hofam_tf.data.synthetic import write_scene

    write_scene(tmp_path / "data" / "s1", seed=1, frames=6, size=128)
    out = tmp_path / "out"
    assert merge_dataset(tmp_path / "data", out, FlowConfig(), progress=False) == {"s1": 6}
    _, _, labels = read_composite(out / "s1" / "000003.png")
    mask = np.asarray(Image.open(tmp_path / "data" / "s1" / "masks" / "000003.png"))
    np.testing.assert_array_equal(labels, cv2.resize(mask, (256, 256), interpolation=cv2.INTER_NEAREST))
    # --masks_dir form
    out2 = tmp_path / "out2"
    merge_dataset(tmp_path / "data" / "s1" / "frames", out2, FlowConfig(),
                  masks_dir=tmp_path / "data" / "s1" / "masks", progress=False)
    np.testing.assert_array_equal(read_composite(out2 / "frames" / "000003.png")[2], labels)


# ---------------------------------------------------------------- bad input
def _frames_dir(tmp_path, n=4, size=(64, 48)):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(n):
        Image.fromarray(np.full((size[1], size[0], 3), i * 10, np.uint8)).save(d / f"{i:04d}.png")
    return d


def test_corrupt_and_truncated_frames(tmp_path):
    d = _frames_dir(tmp_path)
    (d / "0002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(HOFAMInputError, match="0002.png"):
        merge_dataset(d, tmp_path / "out", FlowConfig(), progress=False)
    assert not (tmp_path / "out" / "frames" / "sequence.json").exists()  # incomplete, marked so
    jpg = tmp_path / "j"
    jpg.mkdir()
    buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[1].tobytes()
    (jpg / "0000.jpg").write_bytes(buf)
    (jpg / "0001.jpg").write_bytes(buf[: len(buf) // 2])
    with pytest.raises(HOFAMInputError, match="0001.jpg.*truncated"):
        merge_dataset(jpg, tmp_path / "out2", FlowConfig(), progress=False)


def test_mask_problems(tmp_path):
    d = _frames_dir(tmp_path)
    m = tmp_path / "masks"
    m.mkdir()
    for i in range(3):  # mask of frame 3 missing
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(m / f"{i:04d}.png")
    with pytest.raises(HOFAMInputError, match="no mask for 1 frame.*0003.png"):
        merge_dataset(d, tmp_path / "out", FlowConfig(), masks_dir=m, progress=False)
    Image.fromarray(np.zeros((40, 64), np.uint8)).save(m / "0003.png")  # wrong size
    with pytest.raises(HOFAMInputError, match="0003.png: mask size 64x40 does not match"):
        merge_dataset(d, tmp_path / "out", FlowConfig(), masks_dir=m, progress=False)


def test_mixed_frame_sizes_empty_folder_and_bad_video(tmp_path):
    d = _frames_dir(tmp_path)
    Image.fromarray(np.zeros((50, 64, 3), np.uint8)).save(d / "0009.png")
    with pytest.raises(HOFAMInputError, match="0009.png: frame size"):
        merge_dataset(d, tmp_path / "out", FlowConfig(), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HOFAMInputError, match="no sequences found"):
        merge_dataset(empty, tmp_path / "out", FlowConfig(), progress=False)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(HOFAMInputError, match="broken.mp4"):
        merge_dataset(bad, tmp_path / "out", FlowConfig(), progress=False)


def test_cli_reports_errors_and_exits_nonzero(tmp_path):
    d = _frames_dir(tmp_path)
    (d / "0001.png").write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, str(ROOT / "data_prep" / "merge.py"), f"--dataset_dir={d}",
                           f"--output_dir={tmp_path / 'o'}"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "0001.png" in proc.stderr
    assert not list((tmp_path / "o").rglob("sequence.json"))
    assert not list((tmp_path / "o").rglob(".tmp-*"))
