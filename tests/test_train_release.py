"""bench/train_release.py: the release model's updates and threshold are chosen on held-out scenes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_release_training_validates_on_scenes_it_never_trains_on(tmp_path, shared_data):
    cmd = [sys.executable, "-m", "bench.train_release", f"--data={shared_data}", f"--work={tmp_path / 'work'}",
           f"--out={tmp_path / 'out'}", "--scenes=highway,office,rain", "--steps=4", "--val_every=2",
           "--ngf=2", "--batch=2", "--post_grid=plain,gate1.5_components"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    val, train = best["validation_scenes"], best["training_scenes"]
    # one validation scene per scene group: rain is UCSD's only one here, one of highway/office the other
    assert "rain" in val and len(val) == 2 and not set(val) & set(train)
    assert sorted(val + [t for t in train if t != "hofam_demo"]) == ["highway", "office", "rain"]
    run_best = json.loads((tmp_path / "work" / "run" / "best.json").read_text())
    assert best["threshold"] == run_best["threshold"] and best["steps"] == run_best["step"]
    assert sorted(best["validation_curve"], key=int) == ["2", "4"] and best["max_steps"] == 4
    assert set(val) <= set(run_best["val_pattern"].split("/")[-1:]) or "test-" in run_best["val_pattern"]
    records = json.loads((Path(run_best["val_pattern"]).parent / "dataset.json").read_text())
    assert sorted(records["splits"]["test"]["sequences"]) == sorted(
        {"highway": "baseline_highway", "office": "baseline_office", "rain": "rain"}[v] for v in val)
    # the validation scenes chose predict's post-processing, each F the scorer's on its masks
    post = best["post"]
    assert post["chosen_on"] == val and set(post["validation_f"]) == {"plain", "gate1.5_components"}
    mean = {k: sum(fs.values()) / len(fs) for k, fs in post["validation_f"].items()}
    assert mean[post["chosen"]] == max(mean.values())
    for key, fs in post["validation_f"].items():
        assert set(fs) == set(val)
        for v, f in fs.items():
            m = json.loads((tmp_path / "work" / "val_post_scores" / key / v / "metrics.json").read_text())
            assert f == pytest.approx(next(iter(m["cdnet"]["per_sequence"].values()))["f_measure"])
    want = {"plain": (0, 0.0, "pixel"), "gate1.5_components": (0, 1.5, "components")}[post["chosen"]]
    assert (post["calibrate_frames"], post["median_gate"], post["gate_mode"]) == want
    for name in ("model.keras", "config.json"):
        assert (tmp_path / "out" / name).is_file()
    # the same command again resumes: nothing is retrained, the record is the same; a run validated
    # over an older threshold grid (here: one threshold short) has its kept model scored again
    stale = dict(run_best, per_threshold={t: f for t, f in run_best["per_threshold"].items() if t != "0.995"})
    (tmp_path / "work" / "run" / "best.json").write_text(json.dumps(stale))
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    again_best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert again_best["steps"] == best["steps"]
    assert (again_best["train_seconds"], again_best["final_loss"]) == (best["train_seconds"], best["final_loss"])
    assert best["train_seconds"] > 0 and best["final_loss"]["loss"] > 0
    from hofam_tf.tasks.validation import THRESHOLDS

    assert {float(t) for t in again_best["validation_per_threshold"]} == set(THRESHOLDS)
    assert again_best["threshold"] == best["threshold"]
    assert again_best["validation_f"] == pytest.approx(best["validation_f"])
    # the budget curve: every kept checkpoint on the validation scenes, at its own validated threshold
    curve = subprocess.run([sys.executable, "-m", "bench.budget_curve", f"--data={shared_data}",
                            f"--run={tmp_path / 'work' / 'run'}", f"--out={tmp_path / 'out'}",
                            f"--work={tmp_path / 'curve'}"], capture_output=True, text=True, cwd=ROOT)
    assert curve.returncode == 0, curve.stderr[-3000:]
    report = json.loads(curve.stdout)
    assert report["scenes"] == val and sorted(report["curve"], key=int) == ["2", "4"]
    history = {str(h["step"]): h for h in run_best["history"]}
    for step, row in report["curve"].items():
        assert row["threshold"] == history[step]["threshold"]
        for mode in ("plain", "defaults"):
            for v, f in row[mode]["per_scene_f"].items():
                m = json.loads((tmp_path / "curve" / f"step{step}" / f"scores_{mode}" / v / "metrics.json").read_text())
                assert f == pytest.approx(next(iter(m["cdnet"]["per_sequence"].values()))["f_measure"])
            summary = json.loads(next((tmp_path / "curve" / f"step{step}" / mode).glob("*/summary.json")).read_text())
            assert (summary["calibrate_frames"] > 0) == (mode == "defaults")
    # float16 storage: the same run again, the file rewritten once its masks agree with float32's
    half = subprocess.run(cmd + ["--storage=float16"], capture_output=True, text=True, cwd=ROOT)
    assert half.returncode == 0, half.stderr[-3000:]
    storage = json.loads((tmp_path / "out" / "best.json").read_text())["storage"]
    assert storage["dtype"] == "float16" and storage["mask_agreement_with_float32"] >= 0.999
    from hofam_tf.model.checkpoints import load_for_inference

    model, loaded = load_for_inference(tmp_path / "out")
    assert loaded.model.dtype == "float32" and loaded.model.ngf == 2
    # --post_only: the same validation scenes choose again over another grid; nothing else changes
    before = json.loads((tmp_path / "out" / "best.json").read_text())
    weights = (tmp_path / "out" / "model.keras").read_bytes()
    only = subprocess.run([sys.executable, "-m", "bench.train_release", f"--data={shared_data}",
                           f"--work={tmp_path / 'work2'}", f"--out={tmp_path / 'out'}", "--post_only",
                           "--post_grid=plain,adapt60"], capture_output=True, text=True, cwd=ROOT)
    assert only.returncode == 0, only.stderr[-3000:]
    after = json.loads((tmp_path / "out" / "best.json").read_text())
    assert {k: v for k, v in after.items() if k != "post"} == {k: v for k, v in before.items() if k != "post"}
    assert (tmp_path / "out" / "model.keras").read_bytes() == weights
    post = after["post"]
    assert post["chosen_on"] == val and set(post["validation_f"]) == {"plain", "adapt60"}
    mean = {k: sum(fs.values()) / len(fs) for k, fs in post["validation_f"].items()}
    assert mean[post["chosen"]] == max(mean.values())
    assert post["adapt_steps"] == (60 if post["chosen"] == "adapt60" else 0)
    summary = json.loads(next((tmp_path / "work2" / "val_post" / "adapt60").glob("*/summary.json")).read_text())
    assert summary["adaptation"]["steps"] == 60
    # a threshold from elsewhere must say where it came from
    bad = subprocess.run(cmd + ["--threshold=0.9"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--threshold_from" in bad.stderr


def test_post_only_refuses_a_model_without_a_release_record(tmp_path, capsys):
    """--post_only chooses only for a model whose best.json names its validation scenes; --steps is
    required otherwise."""
    from bench.train_release import main

    def refused(*args) -> str:
        with pytest.raises(SystemExit) as exit_:
            main([f"--work={tmp_path / 'work'}", f"--data={tmp_path / 'data'}", *args])
        code = exit_.value.code
        return f"{code} {capsys.readouterr().err}" if code == 2 else str(code)

    empty = refused(f"--out={tmp_path / 'none'}", "--post_only")
    assert f"{tmp_path / 'none' / 'best.json'}: no release record" in empty
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "best.json").write_text(json.dumps({"threshold": 0.9, "validation_scenes": []}))
    assert "names no validation scenes" in refused(f"--out={tmp_path / 'out'}", "--post_only")
    (tmp_path / "out" / "best.json").write_text(json.dumps({"threshold": 0.9, "validation_scenes": ["office"]}))
    (tmp_path / "data").mkdir()
    absent = refused(f"--out={tmp_path / 'out'}", "--post_only")
    assert "['office']" in absent and "not labelled scenes here" in absent
    no_grid = refused(f"--out={tmp_path / 'out'}", "--post_only", "--post_grid=none")
    assert no_grid.startswith("2 ") and "--post_only needs a --post_grid" in no_grid
    no_steps = refused(f"--out={tmp_path / 'out'}")
    assert no_steps.startswith("2 ") and "--steps is required" in no_steps
    # nothing was written where a model would be
    assert json.loads((tmp_path / "out" / "best.json").read_text())["validation_scenes"] == ["office"]
    assert not (tmp_path / "none").exists()
