"""The customer's commands exactly as written, with the default folders connecting them."""
import pytest
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cwd, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_merge_tfrecord_train_test_with_default_folders(tmp_path, shared_data):
    out = _run(tmp_path, ROOT / "data_prep" / "merge.py", f"--dataset_dir={shared_data / 'cdnet2014'}")
    assert "data/composites" in out and (tmp_path / "data" / "composites" / "baseline_office" / "sequence.json").exists()
    out = _run(tmp_path, ROOT / "data_prep" / "tfrecord.py")
    assert "data/composites" in out and "data/tfrecords" in out
    info = json.loads((tmp_path / "data" / "tfrecords" / "dataset.json").read_text())
    assert len(info["splits"]["test"]["sequences"]) == 1 and len(info["splits"]["train"]["sequences"]) == 2
    out = _run(tmp_path, ROOT / "main.py", "--phase=train", "--steps=2", "--ngf=2")
    assert "data/tfrecords/train-" in out
    assert (tmp_path / "checkpoints" / "hofam" / "model.keras").exists()
    out = _run(tmp_path, ROOT / "main.py", "--phase=test", "--ckpt=checkpoints/hofam")
    metrics = json.loads((tmp_path / "checkpoints" / "hofam" / "test" / "metrics.json").read_text())
    test_seq = info["splits"]["test"]["sequences"][0]
    assert list(metrics["cdnet"]["per_sequence"]) == [test_seq]
    assert metrics["images"] == info["splits"]["test"]["examples"]


def test_missing_default_inputs_name_the_command_that_makes_them(tmp_path):
    for args, hint in (([ROOT / "data_prep" / "tfrecord.py"], "data_prep/merge.py"),
                       ([ROOT / "main.py", "--phase=train"], "data_prep/tfrecord.py")):
        proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2 and hint in proc.stderr, proc.stderr[-2000:]
