"""Fault injection through the command-line tools, as a user meets the faults: exit code 2, one
``error:`` line naming the file, and nothing left that a reader would take as complete."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, env=None, cwd=ROOT):
    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full)


def _error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.slow
def test_data_bound_tests_skip_without_the_samples_and_fail_when_required(tmp_path):
    missing = tmp_path / "nowhere"
    proc = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_flat_composites.py",
                env={"HOFAM_SHARED_DATA": str(missing), "HOFAM_REQUIRE_DATA": "0"})
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "7 skipped" in proc.stdout
    proc = _run("-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_flat_composites.py",
                "-k", "round_trip", env={"HOFAM_SHARED_DATA": str(missing), "HOFAM_REQUIRE_DATA": "0"})
    assert "HOFAM_SHARED_DATA" in proc.stdout and str(missing) in proc.stdout
    proc = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_flat_composites.py",
                "-k", "round_trip", env={"HOFAM_SHARED_DATA": str(missing), "HOFAM_REQUIRE_DATA": "1"})
    assert proc.returncode == 1 and "forbids skipping" in proc.stdout


def _record(path, drop=(), sequence="seq", frame_id="000001"):
    import numpy as np
    import tensorflow as tf

    from hofam_tf.data.schema import encode_example

    rng = np.random.default_rng(0)
    labels = np.zeros((256, 256), np.uint8)
    labels[100:140, 90:120] = 255
    raw = encode_example(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
                         rng.integers(0, 30, (256, 256, 3), dtype=np.uint8), labels, sequence, frame_id, (1, 5, 10))
    ex = tf.train.Example.FromString(raw)
    for key in drop:
        del ex.features.feature[key]
    with tf.io.TFRecordWriter(str(path)) as w:
        for _ in range(2):
            w.write(ex.SerializeToString())
    return path


@pytest.mark.parametrize("phase", ["train", "test"])
def test_record_without_a_required_key_is_named(tmp_path, tiny_model, phase):
    bad = _record(tmp_path / "bad.tfrecord", drop=("img_flow",))
    if phase == "train":
        args = ["--phase=train", f"--train_pattern={bad}", f"--ckpt_dir={tmp_path / 'run'}", "--ngf=2", "--steps=1"]
    else:
        args = ["--phase=test", f"--test_pattern={bad}", f"--ckpt={tiny_model}", f"--output_dir={tmp_path / 'out'}"]
    line = _error_line(_run(ROOT / "main.py", *args))
    assert str(bad) in line and "img_flow" in line
    assert not (tmp_path / "run" / "ckpt").exists() and not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("flag", ["--batch_size=0", "--ckpt_every=0", "--log_every=0", "--steps=-1",
                                  "--val_every=0", "--learning_rate=0"])
def test_bad_training_numbers_are_refused_before_any_work(tmp_path, flag):
    rec = _record(tmp_path / "ok.tfrecord")
    line = _error_line(_run(ROOT / "main.py", "--phase=train", f"--train_pattern={rec}",
                            f"--ckpt_dir={tmp_path / 'run'}", "--ngf=2", "--steps=2", flag))
    assert flag.split("=")[0].lstrip("-") in line
    assert not (tmp_path / "run").exists()


def test_bad_eval_batch_size_is_refused(tmp_path, tiny_model):
    rec = _record(tmp_path / "ok.tfrecord")
    line = _error_line(_run(ROOT / "main.py", "--phase=test", f"--test_pattern={rec}", f"--ckpt={tiny_model}",
                            f"--output_dir={tmp_path / 'out'}", "--eval_batch_size=0"))
    assert "batch size" in line


def test_flags_errors_exit_2_and_help_exits_0():
    assert "unknown_flag" in _error_line(_run(ROOT / "main.py", "--unknown_flag=1"))
    assert "bogus" in _error_line(_run(ROOT / "main.py", "--phase=bogus"))
    proc = _run(ROOT / "main.py", "--help")
    assert proc.returncode == 0 and "--phase" in proc.stdout + proc.stderr
    proc = _run(ROOT / "data_prep" / "tfrecord.py", "--help")
    assert proc.returncode == 0


@pytest.mark.slow
def test_unwritable_output_is_one_error_line_in_every_tool(tmp_path, tiny_model, shared_data):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # a path below a regular file cannot be created (root or not)
    rec = _record(tmp_path / "ok.tfrecord")
    scene = shared_data / "cdnet2014" / "baseline" / "office"
    cases = [
        (ROOT / "data_prep" / "merge.py", f"--dataset_dir={scene}", f"--output_dir={out}"),
        (ROOT / "data_prep" / "tfrecord.py", f"--input_dir={shared_data / 'hofam_demo'}", f"--output_dir={out}"),
        (ROOT / "main.py", "--phase=train", f"--train_pattern={rec}", f"--ckpt_dir={out}", "--ngf=2", "--steps=1"),
        (ROOT / "main.py", "--phase=test", f"--test_pattern={rec}", f"--ckpt={tiny_model}", f"--output_dir={out}"),
        (ROOT / "main.py", "--phase=predict", f"--input={scene}", f"--ckpt={tiny_model}", f"--output_dir={out}"),
        (ROOT / "main.py", "--phase=export", f"--ckpt={tiny_model}", f"--output_dir={out}"),
    ]
    for args in cases:
        line = _error_line(_run(*args))
        assert str(blocker) in line, (args, line)


@pytest.mark.parametrize("sequence,frame_id", [("../../x", "ok"), ("seq", "../../../y"), ("/abs", "f"),
                                               ("", ""), ("seq", "a\x00b")])
@pytest.mark.slow
def test_names_from_records_never_escape_the_output_folder(tmp_path, tiny_model, sequence, frame_id):
    rec = _record(tmp_path / "evil.tfrecord", sequence=sequence, frame_id=frame_id)
    out = tmp_path / "deep" / "er" / "out"
    proc = _run(ROOT / "main.py", "--phase=test", f"--test_pattern={rec}", f"--ckpt={tiny_model}", f"--output_dir={out}")
    written = [p for p in tmp_path.rglob("*.png")]
    assert all(out in p.parents for p in written), written
    if sequence == "" and frame_id == "":
        assert proc.returncode == 0  # empty names fall back to "unnamed" / the record number
    else:
        assert "unsafe" in _error_line(proc)


@pytest.mark.slow
def test_tfrecord_killed_mid_write_leaves_a_set_readers_refuse(tmp_path, cdnet_records):
    import signal
    import time

    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, str(ROOT / "data_prep" / "tfrecord.py"),
                             f"--input_dir={cdnet_records['composites']}", f"--output_dir={out}",
                             "--examples_per_shard=4"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("train-*.tfrecord"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = list(out.glob("train-*.tfrecord"))
    assert written and not (out / "dataset.json").exists()
    line = _error_line(_run(ROOT / "main.py", "--phase=train", f"--train_pattern={out}/train-*.tfrecord",
                            f"--ckpt_dir={tmp_path / 'run'}", "--ngf=2", "--steps=1"))
    assert str(out) in line and ("missing" in line or "dataset.json" in line)
    # a re-run clears the stale shards and temporary files, also with another shard size
    proc = _run(ROOT / "data_prep" / "tfrecord.py", f"--input_dir={cdnet_records['composites']}",
                f"--output_dir={out}", "--examples_per_shard=100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".tmp-")]
    assert all("-of-00002" in n for n in names if n.startswith("train-")), names
    assert (out / "dataset.json").exists()


def test_mixed_or_incomplete_shard_sets_are_refused(tmp_path, cdnet_records):
    import shutil

    from hofam_tf.data.dataset import list_tfrecords
    from hofam_tf.errors import HOFAMInputError

    rec = tmp_path / "rec"
    shutil.copytree(cdnet_records["records"], rec)
    first = sorted(rec.glob("train-*.tfrecord"))[0]
    shutil.copy(first, rec / "train-00000-of-00009.tfrecord")
    with pytest.raises(HOFAMInputError, match="two different writes"):
        list_tfrecords(str(rec / "train-*.tfrecord"))
    (rec / "train-00000-of-00009.tfrecord").unlink()
    first.unlink()
    with pytest.raises(HOFAMInputError, match="1 of .* shards missing"):
        list_tfrecords(str(rec / "train-*.tfrecord"))


def test_tfrecord_refuses_a_folder_it_did_not_write(tmp_path, cdnet_records):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    line = _error_line(_run(ROOT / "data_prep" / "tfrecord.py", f"--input_dir={cdnet_records['composites']}",
                            f"--output_dir={out}"))
    assert str(out) in line and "notes.txt" in line
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_same_seed_same_bytes_in_two_processes(tmp_path, cdnet_records):
    digests = []
    for i in range(2):
        out = tmp_path / f"rec{i}"
        proc = _run(ROOT / "data_prep" / "tfrecord.py", f"--input_dir={cdnet_records['composites']}",
                    f"--output_dir={out}", "--seed=7", "--test_sequences=baseline_office")
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.append({p.name: p.read_bytes() for p in sorted(out.glob("*.tfrecord"))})
    assert digests[0].keys() == digests[1].keys() and digests[0] == digests[1]


@pytest.mark.slow
def test_same_seed_same_first_step_loss_in_two_processes(tmp_path, cdnet_records):
    import json

    losses = []
    for i in range(2):
        run = tmp_path / f"run{i}"
        proc = _run(ROOT / "main.py", "--phase=train", f"--train_pattern={cdnet_records['records']}/train-*.tfrecord",
                    f"--ckpt_dir={run}", "--ngf=2", "--steps=1", "--seed=5", "--log_every=1", "--batch_size=2")
        assert proc.returncode == 0, proc.stderr[-2000:]
        start = proc.stdout.index("{")
        losses.append(json.loads(proc.stdout[start:proc.stdout.rindex("}") + 1])["last_loss"]["loss"])
    assert losses[0] == losses[1]


def _cdnet_folder(root, shared_data, with_gt=True, bad_mask=False):
    import shutil

    src = shared_data / "cdnet2014" / "baseline" / "office"
    dst = root / "office"
    shutil.copytree(src, dst)
    if not with_gt:
        shutil.rmtree(dst / "groundtruth")
    if bad_mask:
        from PIL import Image

        masks = sorted((dst / "groundtruth").glob("*.png"))
        Image.new("L", (10, 10)).save(masks[20])
    return dst


def test_merge_says_when_a_folder_has_no_ground_truth(tmp_path, shared_data):
    scene = _cdnet_folder(tmp_path, shared_data, with_gt=False)
    proc = _run(ROOT / "data_prep" / "merge.py", f"--dataset_dir={scene}", f"--output_dir={tmp_path / 'comp'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no ground truth" in proc.stderr and str(scene) in proc.stderr


def test_failed_merge_leaves_no_composites_and_no_empty_folder(tmp_path, shared_data):
    scene = _cdnet_folder(tmp_path, shared_data, bad_mask=True)
    out = tmp_path / "comp"
    line = _error_line(_run(ROOT / "data_prep" / "merge.py", f"--dataset_dir={scene}", f"--output_dir={out}"))
    assert "gt000620.png" in line and "does not match" in line
    assert not out.exists()


def test_truncated_video_is_reported_with_both_counts(tmp_path):
    import cv2

    from hofam_tf.data.synthetic import make_scene

    path = tmp_path / "cam.avi"
    images, _ = make_scene(seed=1, frames=30)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for img in images:
        w.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    w.release()
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    proc = _run(ROOT / "main.py", "--phase=predict", "--method=hop", f"--input={cut}", f"--output_dir={tmp_path / 'o'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    import re

    m = re.search(r"decoded (\d+) of the (\d+) frames", proc.stderr)
    assert m and int(m.group(1)) < int(m.group(2)) == 30, proc.stderr[-2000:]


def test_failed_predict_leaves_no_folder(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, size in enumerate([(64, 48)] * 3 + [(80, 48)]):
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "out"
    line = _error_line(_run(ROOT / "main.py", "--phase=predict", "--method=hop", f"--input={folder}",
                            f"--output_dir={out}"))
    assert "003.png" in line
    assert not out.exists()


def test_output_dir_named_after_the_video_is_not_doubled(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "lobby.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()
    proc = _run(ROOT / "main.py", "--phase=predict", "--method=hop", f"--input={path}",
                f"--output_dir={tmp_path / 'out' / 'lobby'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "lobby" / "masks" / "000004.png").exists()
    assert not (tmp_path / "out" / "lobby" / "lobby").exists()
