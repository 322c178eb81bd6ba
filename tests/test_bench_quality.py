"""The leave-scenes-out benchmark runs end to end (tiny settings) and its numbers are the scorer's."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_leave_scenes_out_benchmark_tiny(tmp_path, shared_data):
    proc = subprocess.run([sys.executable, "-m", "bench.bench_quality", f"--data={shared_data}",
                           f"--work={tmp_path}", "--scenes=highway,office,rain", "--folds=3", "--steps=2",
                           "--ngf=2", "--batch=2", "--set", "train.val_every=1", "--tag=t", "--val_scenes=1",
                           "--calibrate_frames=20", "--median_gate=1.5",
                           "--post_grid=plain,calibrated_gate1.5_fill,hyst10", "--flow_preset=fast"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert set(report["per_scene_f"]) == {"highway", "office", "rain"}  # rain: UCSD, greyscale, 14 frames
    for scene, fs in report["per_scene_f"].items():
        assert set(fs) == {"hofam", "hofam_nested", "hofam_pooled_threshold", "hofam_scene_threshold", "hofam_gated",
                           "hofam_scene_threshold_gated", "mog2", "knn", "hop", "median"}
        assert all(0 <= v <= 1 for v in fs.values())
        fold = next(f for f in report["fold_details"] if scene in f["test"])
        assert scene not in fold["train"] and scene not in fold["val"]  # whole scenes never seen
        # the HOFAM figure is exactly what --phase=score computes from the predicted masks
        metrics = json.loads((tmp_path / "runs" / "t" / f"fold{fold['fold']}" / "scores" / scene / "metrics.json").read_text())
        assert fs["hofam"] == pytest.approx(metrics["cdnet"]["per_sequence"][scene]["f_measure"])
        pooled = json.loads((tmp_path / "runs" / "t" / f"fold{fold['fold']}" / "scores_pooled" / scene /
                             "metrics.json").read_text())
        assert fs["hofam_pooled_threshold"] == pytest.approx(pooled["cdnet"]["per_sequence"][scene]["f_measure"])
        summary = json.loads((tmp_path / "runs" / "t" / f"fold{fold['fold']}" / "pred_pooled" / scene /
                              "summary.json").read_text())
        assert summary["threshold"] == report["pooled_threshold"]
        # the scene-adaptive threshold: chosen on the scene's first 20 frames, scored like the others
        fdir = tmp_path / "runs" / "t" / f"fold{fold['fold']}"
        summary = json.loads((fdir / "pred_scene" / scene / "summary.json").read_text())
        assert summary["calibrate_frames"] == 20 and summary["threshold"] == report["scene_thresholds"][scene]
        scene_metrics = json.loads((fdir / "scores_scene" / scene / "metrics.json").read_text())
        assert fs["hofam_scene_threshold"] == pytest.approx(scene_metrics["cdnet"]["per_sequence"][scene]["f_measure"])
        # the median gate, at the run's threshold and at the scene's own
        for kind, threshold in (("gated", fold["threshold"]), ("scene_gated", report["scene_thresholds"][scene])):
            summary = json.loads((fdir / f"pred_{kind}" / scene / "summary.json").read_text())
            assert summary["median_gate"] == 1.5 and summary["threshold"] == threshold
            gated = json.loads((fdir / f"scores_{kind}" / scene / "metrics.json").read_text())
            column = "hofam_gated" if kind == "gated" else "hofam_scene_threshold_gated"
            assert fs[column] == pytest.approx(gated["cdnet"]["per_sequence"][scene]["f_measure"])
        # nested protocol: the post-processing was chosen on the fold's own validation scene only
        post = fold["post"]
        assert post["chosen_on"] == fold["val"] and not set(post["chosen_on"]) & set(fold["test"])
        assert all(set(fv) == set(fold["val"]) for fv in post["validation_f"].values())
        assert {p.name for p in (fdir / "val_post").glob("*/*") if p.is_dir()} == set(fold["val"])
        mean_val = {k: sum(fv.values()) / len(fv) for k, fv in post["validation_f"].items()}
        assert mean_val[post["chosen"]] == max(mean_val.values())
        for key, fv in post["validation_f"].items():  # each validation F is the scorer's on its masks
            for v, f in fv.items():
                m = json.loads((fdir / "val_post_scores" / key / v / "metrics.json").read_text())
                assert f == pytest.approx(m["cdnet"]["per_sequence"][v]["f_measure"])
        summary = json.loads((fdir / "pred_nested" / scene / "summary.json").read_text())
        want = {"plain": (0, 0.0, None, 0.0), "calibrated_gate1.5_fill": (200, 1.5, "fill", 0.0),
                "hyst10": (0, 0.0, None, 10.0)}[post["chosen"]]
        assert (summary["calibrate_frames"], summary["median_gate"], summary["gate_mode"], summary["hysteresis"]) == want
        if post["chosen"] == "hyst10":  # odds ten times lower than the threshold's
            t = summary["threshold"]
            assert summary["low_threshold"] == pytest.approx(t / (t + 10 * (1 - t)))
        nested = json.loads((fdir / "scores_nested" / scene / "metrics.json").read_text())
        assert fs["hofam_nested"] == pytest.approx(nested["cdnet"]["per_sequence"][scene]["f_measure"])
    # every HOFAM segmentation of the run, validation scenes too, used the --flow_preset given
    assert report["flow_preset"] == "fast"
    runs = tmp_path / "runs" / "t"
    summaries = list(runs.glob("fold*/pred*/*/summary.json")) + list(runs.glob("fold*/val_post/*/*/summary.json"))
    assert len(summaries) == 3 * (6 + 3)  # 6 columns of one unseen scene, 3 post entries of one validation scene
    assert all(json.loads(f.read_text())["flow"]["dis_preset"] == "fast" for f in summaries)
    assert report["protocol"]["validation_only"] == ["hofam", "hofam_nested"]
    assert report["protocol"]["nested_choices"] == {str(f["fold"]): f["post"]["chosen"] for f in report["fold_details"]}
    # each fold's training records are gone once its model is trained (--keep_records keeps them)
    assert not list((tmp_path / "runs" / "t").glob("fold*/records"))
    assert len(list((tmp_path / "runs" / "t").glob("fold*/run/model.keras"))) == 3
    # hindsight diagnosis: a threshold of the grid, F within [0, 1], for every unseen scene
    assert set(report["best_threshold_in_hindsight"]) == {"highway", "office", "rain"}
    assert all(0 <= h["f"] <= 1 for h in report["best_threshold_in_hindsight"].values())
    # ... scored on records of this run's own composites (a cache shared by flow settings would
    # hand a run the HOP images of another one)
    (comp,) = tmp_path.glob("composites-*")
    for scene in ("highway", "office", "rain"):
        name = scene if scene == "rain" else f"baseline_{scene}"
        link = tmp_path / f"scene_records-{comp.name.removeprefix('composites-')}" / name / "links" / name
        assert link.resolve() == (comp / name).resolve()
    # the pooled threshold is the best of the validation F summed over the folds
    curves = [f["val_per_threshold"] for f in report["fold_details"]]
    best = max(sum(c[t] for c in curves) for t in curves[0])
    assert sum(c[str(report["pooled_threshold"])] for c in curves) == pytest.approx(best)
    means = report["mean_f"]
    assert means["mog2"] == pytest.approx(sum(v["mog2"] for v in report["per_scene_f"].values()) / 3)
    assert report["hofam_over_best_baseline"] == pytest.approx(means["hofam"] / max(means[m] for m in ("mog2", "knn", "hop")))
    assert report["hofam_gated_over_best_baseline"] == pytest.approx(
        means["hofam_gated"] / max(means[m] for m in ("mog2", "knn", "hop")))
    assert report["scenes_below_mog2_gated"] == sorted(
        n for n, v in report["per_scene_f"].items() if v["hofam_gated"] < v["mog2"])
    assert report["hofam_over_median"] == pytest.approx(means["hofam"] / means["median"])  # beside, not in, the target
    # per scene group: UCSD's rain is a dynamic background, the CDnet scenes surveillance
    assert report["scene_groups"] == {"highway": "surveillance", "office": "surveillance", "rain": "dynamic_background"}
    per = report["per_scene_f"]
    for method in ("hofam", "mog2", "hofam_scene_threshold_gated"):
        by = report["mean_f_by_group"][method]
        assert by["surveillance"] == pytest.approx((per["highway"][method] + per["office"][method]) / 2)
        assert by["dynamic_background"] == pytest.approx(per["rain"][method])
    assert report["scenes_below_mog2_by_group"]["hofam"]["dynamic_background"] == (
        ["rain"] if per["rain"]["hofam"] < per["rain"]["mog2"] else [])


def test_the_nested_choice_refuses_reported_scenes_and_prefers_the_simpler_entry_on_a_tie():
    from bench.bench_quality import choose_post

    val_f = {"plain": {"a": 0.5, "b": 0.7}, "gate": {"a": 0.7, "b": 0.5}, "fill": {"a": 0.6, "b": 0.4}}
    assert choose_post(val_f, test=["c"]) == "plain"  # tie at 0.6: the earlier entry
    val_f["fill"]["b"] = 0.9
    assert choose_post(val_f, test=["c"]) == "fill"
    with pytest.raises(ValueError, match="reported scenes"):
        choose_post(val_f, test=["b", "c"])


def test_validation_scenes_are_drawn_in_turns_over_the_scene_groups():
    import random

    from bench.bench_quality import by_group_draw

    groups = {"a1": "a", "a2": "a", "a3": "a", "a4": "a", "b1": "b", "b2": "b"}
    for seed in range(20):
        two = by_group_draw(list(groups), groups, 2, random.Random(seed))
        assert sorted(groups[n] for n in two) == ["a", "b"]  # one of each group before a second of any
        four = by_group_draw(list(groups), groups, 4, random.Random(seed))
        assert sorted(groups[n] for n in four) == ["a", "a", "b", "b"] and len(set(four)) == 4
    assert by_group_draw(list(groups), groups, 9, random.Random(0)) == sorted(groups)  # no more than there are
    assert by_group_draw(list(groups), groups, 2, random.Random(5)) == by_group_draw(list(groups), groups, 2,
                                                                                   random.Random(5))
