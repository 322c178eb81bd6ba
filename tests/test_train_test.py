import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hofam_tf.model.checkpoints import load_for_inference
from hofam_tf.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.evaluate import run_score, run_test
from hofam_tf.tasks.train import NaNLossError, run_train

ROOT = Path(__file__).resolve().parents[1]
PAPER_KEYS = {"recall", "precision", "f_measure", "dice", "iou", "specificity", "fpr", "fnr", "pwc",
              "accuracy", "counts", "images_counted", "images_dropped"}
CDNET_KEYS = {"recall", "specificity", "fpr", "fnr", "pwc", "precision", "f_measure"}


def _cfg(records, steps=2, **train):
    return RunConfig(model=ModelConfig(ngf=2), loss=LossConfig(),
                     train=TrainConfig(train_pattern=str(records / "train-*.tfrecord"), steps=steps,
                                       batch_size=2, ckpt_every=1, log_every=1, image_every=1,
                                       shuffle_buffer=20, **train))


def test_train_then_test_end_to_end(tmp_path, cdnet_records):
    rec = cdnet_records["records"]
    run = tmp_path / "run"
    result = run_train(_cfg(rec), run, progress=False)
    assert result["steps"] == 2 and np.isfinite(result["last_loss"]["loss"])
    assert (run / "config.json").exists() and (run / "model.keras").exists()
    assert tf.train.latest_checkpoint(str(run / "ckpt")).endswith("ckpt-2")
    assert list((run / "logs").glob("events.out.tfevents.*"))
    out = tmp_path / "test"
    metrics = run_test(run, str(rec / "test-*.tfrecord"), out, threshold=0.5, batch_size=4, progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved) >= {"threshold", "images", "paper", "cdnet", "checkpoint"}
    assert set(saved["paper"]) == PAPER_KEYS
    assert set(saved["cdnet"]["average"]) == CDNET_KEYS
    assert set(saved["cdnet"]["per_sequence"]) == {"baseline_office"}
    assert saved["images"] == 51 and saved["threshold"] == 0.5
    for kind in ("masks", "panels", "errors"):
        files = sorted((out / kind / "baseline_office").glob("*.png"))
        assert len(files) == 51, kind
    from PIL import Image

    panel = np.asarray(Image.open(out / "panels" / "baseline_office" / "000620.png"))
    assert panel.shape == (256, 1024, 3)
    mask = np.asarray(Image.open(out / "masks" / "baseline_office" / "000620.png"))
    assert set(np.unique(mask)) <= {0, 255}
    # the same masks scored on their own give the same numbers
    scored = run_score(out / "masks", cdnet_records["composites"], tmp_path / "score", progress=False)
    assert scored["paper"]["counts"] == metrics["paper"]["counts"]
    assert scored["cdnet"]["per_sequence"]["baseline_office"]["counts"] == \
        metrics["cdnet"]["per_sequence"]["baseline_office"]["counts"]


@pytest.mark.slow
def test_resume_continues_step_count_and_optimizer_state(tmp_path, cdnet_records):
    rec = cdnet_records["records"]
    run = tmp_path / "run"
    first = run_train(_cfg(rec, steps=3), run, progress=False, stop_after=1)  # "killed" after 1 step
    assert first["steps"] == 1 and not (run / "model.keras").exists()
    # optimizer state is in the checkpoint: iterations and Adam moments restore
    model, _ = load_for_inference(run)
    reader = tf.train.load_checkpoint(str(run / "ckpt"))
    names = [n for n, _ in tf.train.list_variables(str(run / "ckpt"))]
    assert any("optimizer" in n for n in names)
    second = run_train(_cfg(rec, steps=3), run, progress=False)
    assert second["resumed_from"] == 1 and second["steps"] == 3
    assert tf.train.latest_checkpoint(str(run / "ckpt")).endswith("ckpt-3")
    iters = [n for n in names if n.startswith("optimizer/_iterations")]
    assert iters and int(reader.get_tensor(iters[0])) == 1
    again = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "ckpt")))
    assert int(again.get_tensor(iters[0])) == 3
    # another model configuration in the same run directory is refused
    other = dataclasses.replace(_cfg(rec, steps=4), model=ModelConfig(ngf=4))
    with pytest.raises(HOFAMInputError, match="another model configuration"):
        run_train(other, run, progress=False)


@pytest.mark.slow
def test_nan_loss_stops_without_checkpoint(tmp_path, cdnet_records, monkeypatch):
    import hofam_tf.tasks.train as train_mod

    def nan_loss(*args, **kwargs):
        out = train_mod.__dict__["_real_loss"](*args, **kwargs)
        return {k: v * np.nan for k, v in out.items()}

    monkeypatch.setitem(train_mod.__dict__, "_real_loss", train_mod.hofam_loss)
    monkeypatch.setattr(train_mod, "hofam_loss", nan_loss)
    with pytest.raises(NaNLossError, match="step 1"):
        run_train(_cfg(cdnet_records["records"]), tmp_path / "run", progress=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "ckpt")) is None


@pytest.mark.slow
def test_bad_checkpoints(tmp_path, cdnet_records):
    with pytest.raises(HOFAMInputError, match="no checkpoint here"):
        load_for_inference(tmp_path / "nothing")
    run = tmp_path / "run"
    run_train(_cfg(cdnet_records["records"], steps=1), run, progress=False)
    # a checkpoint of another width
    cfg = RunConfig.load(run / "config.json")
    wide = dataclasses.replace(cfg, model=ModelConfig(ngf=4))
    wide.save(run / "config.json")
    with pytest.raises(HOFAMInputError, match="does not fit this model"):
        load_for_inference(run / "ckpt" / "ckpt-1")
    # a truncated checkpoint
    cfg.save(run / "config.json")
    data = run / "ckpt" / "ckpt-1.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(HOFAMInputError, match="ckpt-1"):
        load_for_inference(run / "ckpt" / "ckpt-1")


def _main(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_main_bad_input_exits_nonzero(tmp_path):
    proc = _main("--phase=train", f"--train_pattern={tmp_path}/none-*.tfrecord", f"--ckpt_dir={tmp_path}/r")
    assert proc.returncode == 2 and "matches no file" in proc.stderr
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    proc = _main("--phase=test", f"--ckpt={tmp_path}/missing", f"--test_pattern={tmp_path}/empty.tfrecord",
                 f"--output_dir={tmp_path}/o")
    assert proc.returncode == 2 and "missing" in proc.stderr
    proc = _main("--phase=score", f"--output_dir={tmp_path}/o")
    assert proc.returncode == 2 and "--pred_dir" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("dtype,xla", [("mixed_bfloat16", False), ("float32", True)])
def test_mixed_precision_and_xla_train(tmp_path, cdnet_records, dtype, xla):
    import keras

    cfg = _cfg(cdnet_records["records"], steps=1, xla=xla)
    cfg = dataclasses.replace(cfg, model=ModelConfig(ngf=2, dtype=dtype))
    result = run_train(cfg, tmp_path / "run", progress=False)
    assert result["steps"] == 1 and np.isfinite(result["last_loss"]["loss"])
    assert keras.config.dtype_policy().name == "float32"  # no global policy was changed
    model, _ = load_for_inference(tmp_path / "run")
    assert model.get_layer("g_e2_conv").compute_dtype == ("bfloat16" if dtype == "mixed_bfloat16" else "float32")


@pytest.mark.slow
def test_truncated_training_shard_is_named(tmp_path, cdnet_records):
    import shutil

    rec = tmp_path / "rec"
    shutil.copytree(cdnet_records["records"], rec)
    shard = sorted(rec.glob("train-*.tfrecord"))[1]
    shard.write_bytes(shard.read_bytes()[:-7000])
    cfg = dataclasses.replace(_cfg(rec, steps=200), train=dataclasses.replace(
        _cfg(rec).train, steps=200, ckpt_every=1000, log_every=1000, image_every=0, shuffle_buffer=2))
    with pytest.raises(HOFAMInputError, match=f"{shard.name}: corrupt or truncated"):
        run_train(cfg, tmp_path / "run", progress=False)


@pytest.mark.slow
def test_training_under_mirrored_strategy_with_two_replicas(tmp_path, cdnet_records):
    """The distributed step (strategy.run + reduce + Keras optimizer) on two logical CPUs."""
    code = f"""
import sys, json, tensorflow as tf
sys.path.insert(0, {str(ROOT)!r})
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from hofam_tf.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from hofam_tf.tasks.train import run_train
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
cfg = RunConfig(model=ModelConfig(ngf=2), train=TrainConfig(train_pattern={str(cdnet_records['records'] / 'train-*.tfrecord')!r},
                steps=2, batch_size=4, ckpt_every=1, log_every=1, image_every=1, shuffle_buffer=8))
r = run_train(cfg, {str(tmp_path / 'run')!r}, progress=False, strategy=strategy)
print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "steps": r["steps"], "loss": r["last_loss"]["loss"]}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and out["steps"] == 2 and np.isfinite(out["loss"])
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "ckpt")).endswith("ckpt-2")


@pytest.mark.slow
def test_model_larger_than_the_tiles_trains_and_tests(tmp_path, cdnet_records):
    rec = cdnet_records["records"]
    cfg = dataclasses.replace(_cfg(rec, steps=1), model=ModelConfig(ngf=2, height=512, width=256))
    run_train(cfg, tmp_path / "run", progress=False)
    metrics = run_test(tmp_path / "run", str(rec / "test-*.tfrecord"), tmp_path / "out", progress=False)
    assert metrics["images"] == 51
    from PIL import Image

    assert np.asarray(Image.open(tmp_path / "out" / "masks" / "baseline_office" / "000600.png")).shape == (256, 256)


@pytest.mark.slow
def test_device_loop_events_fall_on_their_exact_steps_and_resume(tmp_path, cdnet_records):
    """steps_per_loop=3 with checkpoints every 2 and logs every 5: loops end at every event, so
    checkpoints land on 2, 4, ... and an interrupted run resumes at its exact step."""
    rec = cdnet_records["records"]
    run = tmp_path / "run"
    cfg = _cfg(rec, steps=7, steps_per_loop=3)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ckpt_every=2, log_every=5, keep_ckpts=10))
    first = run_train(cfg, run, progress=False, stop_after=5)
    assert first["steps"] == 5
    saved = sorted(int(p.stem.split("-")[1]) for p in (run / "ckpt").glob("ckpt-*.index"))
    assert saved == [2, 4, 5]
    reader = tf.train.load_checkpoint(str(run / "ckpt" / "ckpt-4"))
    iters = [n for n, _ in tf.train.list_variables(str(run / "ckpt")) if n.startswith("optimizer/_iterations")]
    assert int(reader.get_tensor(iters[0])) == 4  # the optimizer made exactly 4 updates by then
    second = run_train(cfg, run, progress=False)
    assert second["resumed_from"] == 5 and second["steps"] == 7
    final = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "ckpt")))
    assert int(final.get_tensor(iters[0])) == 7


@pytest.mark.slow
def test_cosine_schedule_follows_the_update_count_across_a_resume(tmp_path, cdnet_records):
    import math

    from hofam_tf.tasks.train import TrainState

    rec = cdnet_records["records"]
    run = tmp_path / "run"
    cosine = _cfg(rec, steps=4, lr_schedule="cosine", learning_rate=1e-3)
    run_train(cosine, run, progress=False, stop_after=1)
    resumed = TrainState.create(cosine, tf.distribute.get_strategy(), run, run)
    assert int(resumed.optimizer.iterations) == 1
    assert float(resumed.optimizer.learning_rate) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi / 4)), rel=1e-5)
    run_train(cosine, run, progress=False)
    done = TrainState.create(cosine, tf.distribute.get_strategy(), run, run)
    assert int(done.optimizer.iterations) == 4 and float(done.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    constant = TrainState.create(_cfg(rec, steps=4), tf.distribute.get_strategy(), tmp_path / "c", tmp_path / "c")
    assert float(constant.optimizer.learning_rate) == pytest.approx(TrainConfig().learning_rate)
    with pytest.raises(HOFAMInputError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


@pytest.mark.slow
def test_weight_decay_shrinks_only_the_kernels_by_lr_times_decay(tmp_path, cdnet_records):
    import keras

    from hofam_tf.model.hofam import build_hofam

    rec = cdnet_records["records"]
    lr, wd = 1e-3, 50.0
    runs = {}
    for decay in (0.0, wd):
        cfg = _cfg(rec, steps=1, learning_rate=lr, weight_decay=decay, ema_decay=0.0)
        run_train(cfg, tmp_path / f"wd{decay}", progress=False)
        model, _ = load_for_inference(tmp_path / f"wd{decay}", precision="float32")
        runs[decay] = {v.path: v.numpy() for v in model.trainable_variables}
    keras.utils.set_random_seed(cfg.train.seed)  # the weights the one update started from
    start = {v.path: v.numpy() for v in build_hofam(cfg.model).trainable_variables}
    assert set(start) == set(runs[0.0])
    kernels = 0
    for path, w0 in start.items():
        # decoupled decay: the same Adam step (gradients at the same start) plus -lr * wd * w0
        expected = -lr * wd * w0 if path.endswith("/kernel") else np.zeros_like(w0)
        np.testing.assert_allclose(runs[wd][path] - runs[0.0][path], expected, atol=2e-6, err_msg=path)
        kernels += path.endswith("/kernel")
    assert kernels == 39  # every convolution kernel of the ngf-2 model decayed
    with pytest.raises(HOFAMInputError, match="weight_decay"):
        TrainConfig(weight_decay=-1.0)
