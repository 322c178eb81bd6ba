"""MultiWorkerMirroredStrategy for real: two worker processes on loopback, through main.py."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_data):
    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.config import AugmentConfig, ModelConfig, RunConfig, TrainConfig

    work = tmp_path_factory.mktemp("mw")
    # the authors' demo composites: no ignored pixels, so per-replica and pooled loss normalisation agree
    write_tfrecords(shared_data / "hofam_demo", work / "rec", progress=False)
    cfg = RunConfig(model=ModelConfig(ngf=2, dropout=0.0), augment=AugmentConfig(enabled=False),
                    train=TrainConfig(steps=4, batch_size=2, ckpt_every=2, log_every=1, image_every=0,
                                      shuffle_buffer=50, learning_rate=1e-3, steps_per_loop=2))
    cfg.save(work / "cfg.json")
    return work


def _cmd(work, run, steps):
    return [sys.executable, str(ROOT / "main.py"), "--phase=train", f"--config={work / 'cfg.json'}",
            f"--train_pattern={work / 'rec'}/train-*.tfrecord", f"--ckpt_dir={run}", f"--steps={steps}"]


def _start_workers(work, run, steps, tmpdirs):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmpdirs[i]),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(_cmd(work, run, steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=ROOT, env=env))
    return procs


def _finish(procs, timeout):
    """Waits for every worker; each must exit 0. Returns their result dicts."""
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [_result(out) for out, _ in outs]


def _result(stdout):
    return json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_writes(tmp_path, setup):
    tmpdirs = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for d in tmpdirs:
        d.mkdir()
    run = tmp_path / "run"
    results = _finish(_start_workers(setup, run, 4, tmpdirs), 240)
    assert [r["steps"] for r in results] == [4, 4] and [r["chief"] for r in results] == [True, False]
    assert results[0]["weights_checksum"] == results[1]["weights_checksum"]  # identical variables
    # only the chief wrote the run directory; the other worker's temporary folder is gone
    assert sorted(p.name for p in run.iterdir()) == ["ckpt", "config.json", "logs", "model.keras"]
    assert len(list((run / "logs").glob("events.out.tfevents.*"))) == 1
    assert not list(tmpdirs[1].iterdir())
    # equivalence: one process with the same global batch of 2 reaches the same weights
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    single = subprocess.run(_cmd(setup, tmp_path / "single", 4), capture_output=True, text=True, cwd=ROOT, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    from hofam_tf.model.checkpoints import load_for_inference

    a = load_for_inference(run / "model.keras")[0].get_weights()
    b = load_for_inference(tmp_path / "single" / "model.keras")[0].get_weights()
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) < 1e-4
    assert _result(single.stdout)["weights_checksum"] == pytest.approx(results[0]["weights_checksum"], rel=1e-5)


@pytest.mark.slow
def test_killed_worker_then_restart_resumes_to_the_same_step(tmp_path, setup):
    tmpdirs = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for d in tmpdirs:
        d.mkdir()
    run = tmp_path / "run"
    procs = _start_workers(setup, run, 40, tmpdirs)
    deadline = time.time() + 180
    while time.time() < deadline and not list(run.glob("ckpt/ckpt-*.index")):
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)
    time.sleep(3)
    procs[0].send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=60)
    saved = sorted(int(p.name.split("-")[1].split(".")[0]) for p in (run / "ckpt").glob("ckpt-*.index"))
    assert saved and saved[-1] < 40
    results = _finish(_start_workers(setup, run, 40, tmpdirs), 300)
    assert [r["steps"] for r in results] == [40, 40]
    assert results[0]["resumed_from"] == results[1]["resumed_from"] >= saved[-1] > 0
    assert results[0]["weights_checksum"] == results[1]["weights_checksum"]
