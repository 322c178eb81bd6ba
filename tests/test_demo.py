import json

import pytest

from hofam_tf.tasks.demo import run_demo


@pytest.mark.slow
def test_demo_pipeline_small(tmp_path):
    result = run_demo(tmp_path, steps=3, ngf=2, batch_size=2, train_scenes=2, test_scenes=1, frames=12,
                      progress=False)
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["images"] == 12 and set(metrics["cdnet"]["per_sequence"]) == {"scene02"}
    assert len(list((tmp_path / "test" / "panels" / "scene02").glob("*.png"))) == 12
    assert (tmp_path / "run" / "model.keras").exists()
    # only what a user looks at stays: no synthetic frames, composites, records or checkpoints
    assert not any((tmp_path / d).exists() for d in ("raw", "composites", "tfrecords", "run/ckpt"))
    assert (tmp_path / "run" / "logs").is_dir() and (tmp_path / "run" / "config.json").exists()
    assert result["metrics"]["paper"]["counts"] == metrics["paper"]["counts"]


@pytest.mark.slow
def test_demo_learns_unseen_scenes(tmp_path):
    """The README's first command as a newcomer runs it (400 steps at width 8): it learns the
    unseen scenes, and prints no alarming line (no E0000 remapper failure, no traceback)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "main.py"), "--phase=demo", f"--output_dir={tmp_path}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "E0000" not in proc.stderr and "remapper failed" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["paper"]["f_measure"] > 0.8
    assert str(tmp_path / "test") in proc.stdout
