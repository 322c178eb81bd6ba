import json

import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.model.checkpoints import load_for_inference, restore_weights, stored_threshold
from hofam_tf.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.metrics import Scorer
from hofam_tf.model.hofam import build_hofam
from hofam_tf.tasks.train import run_train
from hofam_tf.tasks.validation import THRESHOLDS, f_by_threshold, histograms


def test_f_by_threshold_matches_the_cdnet_scorer():
    rng = np.random.default_rng(0)
    counts, scorers = {}, {t: Scorer(t) for t in THRESHOLDS}
    for seq in ("a", "b"):
        acc = [np.zeros(1000, np.int64), np.zeros(1000, np.int64)]
        for _ in range(3):
            labels = rng.choice([0, 50, 85, 170, 255], size=(64, 64), p=[0.5, 0.1, 0.1, 0.05, 0.25]).astype(np.uint8)
            # probabilities on a 1/2000 grid offset from the bin edges, so both sides agree exactly
            prob = (rng.integers(0, 1000, (64, 64)) + 0.5) / 1000
            prob = np.where(labels == 255, np.sqrt(prob), prob ** 2)
            prob = (np.floor(prob * 1000) + 0.5) / 1000
            fg, bg = histograms(prob, labels)
            acc[0] += fg
            acc[1] += bg
            for t, sc in scorers.items():
                sc.add_probability(prob, labels, seq)
        counts[seq] = tuple(acc)
    ours = f_by_threshold(counts)
    for t, sc in scorers.items():
        assert ours[t] == pytest.approx(sc.result()["cdnet"]["average"]["f_measure"], abs=1e-12)


def _cfg(records, steps, **train):
    return RunConfig(model=ModelConfig(ngf=2), loss=LossConfig(),
                     train=TrainConfig(train_pattern=str(records / "train-*.tfrecord"), steps=steps,
                                       batch_size=2, ckpt_every=100, log_every=1, image_every=0,
                                       shuffle_buffer=20, val_pattern=str(records / "test-*.tfrecord"), **train))


@pytest.mark.slow
def test_validation_keeps_the_best_checkpoint_and_its_threshold(tmp_path, cdnet_records):
    run = tmp_path / "run"
    result = run_train(_cfg(cdnet_records["records"], 6, val_every=2, learning_rate=1e-2), run, progress=False)
    best = json.loads((run / "best.json").read_text())
    assert [h["step"] for h in best["history"]] == [2, 4, 6]
    top = max(best["history"], key=lambda h: h["f_measure"])
    assert best["f_measure"] == top["f_measure"] and best["step"] == top["step"]
    assert best["threshold"] in THRESHOLDS and stored_threshold(run) == best["threshold"]
    assert result["best"]["f_measure"] == best["f_measure"]
    assert list((run / "best").glob("*.index")) == [run / "best" / f"ckpt-{best['step']}.index"]
    # the run directory loads the best checkpoint, and model.keras holds the same weights
    model, _ = load_for_inference(run)
    ref = build_hofam(ModelConfig(ngf=2))
    restore_weights(ref, str(run / best["checkpoint"]))
    x = {"frame": np.full((1, 256, 256, 3), 90, np.uint8), "hop": np.full((1, 256, 256, 3), 30, np.uint8)}
    np.testing.assert_allclose(model(x).numpy(), ref(x).numpy(), atol=1e-6)
    saved, _ = load_for_inference(run / "model.keras")
    np.testing.assert_allclose(saved(x).numpy(), ref(x).numpy(), atol=1e-6)
    events = b"".join(p.read_bytes() for p in (run / "logs").glob("events.out.tfevents.*"))
    assert b"val/f_measure" in events


@pytest.mark.slow
def test_early_stop_after_validations_without_improvement(tmp_path, cdnet_records):
    run = tmp_path / "run"
    # a learning rate too small to change a prediction: F never improves after the first check
    result = run_train(_cfg(cdnet_records["records"], 50, val_every=2, early_stop=2, learning_rate=1e-12),
                       run, progress=False)
    assert result["steps"] == 6 and result["best"]["stopped_early"]
    assert tf.train.latest_checkpoint(str(run / "ckpt")).endswith("ckpt-6")
    assert (run / "model.keras").exists()


def test_threshold_without_validation_is_half(tmp_path):
    RunConfig().save(tmp_path / "config.json")
    assert stored_threshold(tmp_path) == 0.5
    (tmp_path / "best.json").write_text("{not json")
    with pytest.raises(HOFAMInputError, match="best.json"):
        stored_threshold(tmp_path)
