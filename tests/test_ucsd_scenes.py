"""The nine UCSD dynamic-background scenes (greyscale JPG, 14-111 frames, every frame labelled)
through every reader: discovery, scoring, merge -> composites -> TFRecords, and predict."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
UCSD = ("birds", "bottle", "cyclists", "freeway", "jump", "ocean", "rain", "skiing", "surfers")


def _cli(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_every_ucsd_scene_is_discovered_as_a_labelled_greyscale_sequence(shared_data):
    from hofam_tf.data.sources import discover

    found = {s.name: s for s in discover(shared_data / "ucsd")}
    assert set(found) == set(UCSD)
    for name, seq in found.items():
        folder = shared_data / "ucsd" / name
        inputs = sorted((folder / "input").glob("*.jpg"))
        first, last = (int(v) for v in (folder / "temporalROI.txt").read_text().split())
        assert seq.kind == "cdnet" and seq.labelled and len(seq.frame_paths) == len(inputs)
        assert sum(seq.scored) == sum(first <= int(p.stem[2:]) <= last for p in inputs)
        assert Image.open(inputs[0]).mode == "L"
        frames = list(seq.iter_frames())
        assert len(frames) == sum(seq.scored) and all(f.labels is not None for f in frames)
        for fr in frames[:3]:
            assert fr.rgb.ndim == 3 and fr.rgb.shape[2] == 3
            assert (fr.rgb[..., 0] == fr.rgb[..., 1]).all() and (fr.rgb[..., 1] == fr.rgb[..., 2]).all()
            gt = np.asarray(Image.open(folder / "groundtruth" / f"gt{fr.frame_id}.png").convert("L"))
            np.testing.assert_array_equal(fr.labels, gt)  # all-white ROI: nothing becomes 85
            assert set(np.unique(fr.labels)) <= {0, 255}


def test_ucsd_ground_truth_scores_perfectly_against_itself(tmp_path, shared_data):
    """score reads the UCSD folders: their own masks, given as predictions, score F = 1."""
    from hofam_tf.tasks.evaluate import run_score

    pred = tmp_path / "pred"
    for name in ("rain", "skiing"):
        (pred / name).mkdir(parents=True)
        for gt in (shared_data / "ucsd" / name / "groundtruth").glob("gt*.png"):
            (pred / name / gt.name).write_bytes(gt.read_bytes())
    metrics = run_score(pred, shared_data / "ucsd", tmp_path / "score", progress=False)
    assert set(metrics["cdnet"]["per_sequence"]) == {"rain", "skiing"}
    assert sorted(metrics["skipped_sequences"]) == sorted(set(UCSD) - {"rain", "skiing"})
    for name in ("rain", "skiing"):
        assert metrics["cdnet"]["per_sequence"][name]["f_measure"] == pytest.approx(1.0)
    assert metrics["images"] == 14 + 101  # skiing's temporal ROI holds 101 of its 111 frames


@pytest.mark.slow
def test_the_shortest_ucsd_scene_goes_through_merge_records_and_predict(tmp_path, shared_data):
    rain = shared_data / "ucsd" / "rain"
    comp, rec, out = tmp_path / "comp", tmp_path / "rec", tmp_path / "out"
    proc = _cli(ROOT / "data_prep" / "merge.py", f"--dataset_dir={rain}", f"--output_dir={comp}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (seq_dir,) = [p for p in comp.iterdir() if p.is_dir()]
    meta = json.loads((seq_dir / "sequence.json").read_text())
    assert meta["labelled"] and len(meta["frames"]) == 14 and meta["native_size"] == [228, 308]
    tile = np.asarray(Image.open(seq_dir / f"{meta['frames'][7]}.png").convert("RGB"))
    assert (tile[:, :256, 0] == tile[:, :256, 2]).all()  # the frame tile stays grey
    assert tile[:, 256:512].max() > 0  # rain moves: the HOP is not empty
    proc = _cli(ROOT / "data_prep" / "tfrecord.py", f"--input_dir={comp}", f"--output_dir={rec}",
                "--test_sequences=" + seq_dir.name)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((rec / "dataset.json").read_text())
    assert info["splits"]["test"]["examples"] == 14
    proc = _cli(ROOT / "main.py", "--phase=predict", f"--input={rain}", f"--output_dir={out}",
                "--inference_precision=float32", "--nooverlay_video")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "rain" / "summary.json").read_text())
    assert summary["frames"] == 14 and summary["skipped_frames"] == 0
    masks = sorted((out / "rain" / "masks").iterdir())
    assert len(masks) == 14 and np.asarray(Image.open(masks[0])).shape == (228, 308)


def test_the_benchmark_tools_take_every_labelled_scene_with_its_group(shared_data):
    from bench.bench_quality import SCENE_GROUPS, group_arg, scene_group, scene_sources

    sources = scene_sources(shared_data)
    assert len(sources) == 21 and set(UCSD) <= set(sources)
    groups = {n: scene_group(s, shared_data) for n, s in sources.items()}
    assert sum(g == "dynamic_background" for g in groups.values()) == 9
    assert sum(g == "surveillance" for g in groups.values()) == 12
    assert set(scene_sources(shared_data, group_arg("surveillance"))) == {n for n, g in groups.items()
                                                                         if g == "surveillance"}
    assert set(SCENE_GROUPS.values()) == {"surveillance", "dynamic_background"}
    with pytest.raises(SystemExit):
        group_arg("water")
