"""A model.keras stored in float16 (``checkpoints.save_half``, ``train_release --storage float16``):
half the size, loaded in float32, refused when its masks would change."""
import os

import keras
import numpy as np
import pytest

from hofam_tf.config import ModelConfig, RunConfig
from hofam_tf.model.checkpoints import load_for_inference, save_half
from hofam_tf.model.hofam import build_hofam


def _inputs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"frame": rng.integers(0, 256, (n, 256, 256, 3)).astype(np.float32),
            "hop": rng.integers(0, 256, (n, 256, 256, 3)).astype(np.float32)}


@pytest.mark.slow
def test_half_storage_round_trip(tmp_path):
    cfg = RunConfig(model=ModelConfig(ngf=4))
    full = build_hofam(cfg.model)
    full.save(tmp_path / "full.keras")
    cfg.save(tmp_path / "config.json")
    save_half(full, cfg, tmp_path / "half.keras")
    assert os.path.getsize(tmp_path / "half.keras") < 0.6 * os.path.getsize(tmp_path / "full.keras")
    stored = keras.saving.load_model(tmp_path / "half.keras", compile=False)  # as it lies on disk
    assert {w.dtype for w in stored.weights} == {"float16"}
    half, half_cfg = load_for_inference(tmp_path / "half.keras")
    assert half_cfg.model.dtype == "float32" and half_cfg.model.ngf == 4
    for a, b in zip(full.get_weights(), half.get_weights()):  # float32, the nearest float16 of each weight
        assert b.dtype == np.float32 and np.array_equal(a.astype(np.float16).astype(np.float32), b)
    x = _inputs()
    assert ((np.asarray(full(x)) >= 0) == (np.asarray(half(x)) >= 0)).mean() >= 0.999
    bf16, bf16_cfg = load_for_inference(tmp_path / "half.keras", precision="bfloat16")
    assert bf16_cfg.model.dtype == "mixed_bfloat16" and np.asarray(bf16(x)).shape == (2, 256, 256, 1)
    assert not list(tmp_path.glob(".tmp-*"))  # written, then renamed


@pytest.mark.slow
def test_release_storage_is_checked_against_float32(tmp_path, cdnet_records, monkeypatch):
    import bench.train_release as release

    out = tmp_path / "release"
    out.mkdir()
    cfg = RunConfig(model=ModelConfig(ngf=2))
    build_hofam(cfg.model).save(out / "model.keras")
    cfg.save(out / "config.json")
    before = (out / "model.keras").read_bytes()
    val = str(cdnet_records["records"] / "test-*.tfrecord")
    monkeypatch.setattr(release, "MIN_STORAGE_AGREEMENT", 1.0 + 1e-9)  # no model can agree that well
    with pytest.raises(SystemExit, match="kept in float32"):
        release.store_half(out, val, 0.5)
    assert (out / "model.keras").read_bytes() == before and sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.keras"]
    monkeypatch.undo()
    info = release.store_half(out, val, 0.5)
    assert info["dtype"] == "float16" and 0.999 <= info["mask_agreement_with_float32"] <= 1.0
    assert {w.dtype for w in keras.saving.load_model(out / "model.keras", compile=False).weights} == {"float16"}
    model, loaded = load_for_inference(out)
    assert loaded.model.dtype == "float32" and loaded.model.ngf == 2
