"""ONNX export and the ONNX Runtime predict path (the optional ``onnx`` extra), through the CLI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "checkpoints" / "release"

pytestmark = pytest.mark.slow  # an export and two predict runs: about 2 minutes

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
pytest.importorskip("tf2onnx", reason="the onnx extra is not installed (pip install -e '.[onnx]')")


def _main(*args, check=True):
    proc = subprocess.run([sys.executable, "main.py", *args], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "serving"
    _main("--phase=export", f"--ckpt={RELEASE}", f"--output_dir={out}", "--format=onnx")
    return out


def test_onnx_export_is_self_describing(onnx_export):
    meta = json.loads((onnx_export / "export.json").read_text())
    assert meta["formats"] == ["onnx"] and meta["dtype_policy"] == "float32" and meta["input_size"] == [256, 256]
    assert meta["onnx"]["file"] == "model.onnx" and (onnx_export / "model.onnx").stat().st_size > 1 << 20
    assert not (onnx_export / "saved_model").exists()  # only the format asked for
    release_best = json.loads((RELEASE / "best.json").read_text())
    assert json.loads((onnx_export / "best.json").read_text())["threshold"] == release_best["threshold"]
    from hofam_tf.config import RunConfig

    assert RunConfig.load(onnx_export / "config.json").flow == RunConfig.load(RELEASE / "config.json").flow
    assert not list(onnx_export.glob(".tmp-*"))


def test_onnxruntime_masks_agree_with_tensorflow_on_real_frames(onnx_export, tmp_path, shared_data):
    scene = shared_data / "cdnet2014" / "baseline" / "pedestrians" / "input"
    common = [f"--input={scene}", "--max_frames=24", "--calibrate_frames=0", "--median_gate=0",
              "--overlay_video=false", "--naming=cdnet"]
    _main("--phase=predict", *common, f"--ckpt={onnx_export}", "--runtime=onnxruntime", f"--output_dir={tmp_path / 'ort'}")
    _main("--phase=predict", *common, f"--ckpt={RELEASE}", "--inference_precision=float32",
          f"--output_dir={tmp_path / 'tf'}")
    ort_sum = json.loads((tmp_path / "ort" / "input" / "summary.json").read_text())
    tf_sum = json.loads((tmp_path / "tf" / "input" / "summary.json").read_text())
    assert ort_sum["runtime"] == "onnxruntime" and tf_sum["runtime"] == "tf"
    assert ort_sum["threshold"] == tf_sum["threshold"] == json.loads((RELEASE / "best.json").read_text())["threshold"]
    names = sorted(p.name for p in (tmp_path / "tf" / "input" / "masks").glob("*.png"))
    assert len(names) == 24 and names == sorted(p.name for p in (tmp_path / "ort" / "input" / "masks").glob("*.png"))
    a = np.stack([np.asarray(Image.open(tmp_path / "ort" / "input" / "masks" / n)) for n in names])
    b = np.stack([np.asarray(Image.open(tmp_path / "tf" / "input" / "masks" / n)) for n in names])
    assert (b == 255).mean() > 0.002  # the release model finds the pedestrians: agreement is not all-background
    assert (a == b).mean() >= 0.999


def test_onnx_probabilities_match_the_keras_model(onnx_export):
    from hofam_tf.model.checkpoints import load_for_inference
    from hofam_tf.tasks.runtimes import OnnxRunner, TFRunner

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    hops = rng.integers(0, 40, (2, 256, 256, 3), dtype=np.uint8)
    model, _ = load_for_inference(RELEASE, precision="float32")
    p_tf = TFRunner(model)(frames, hops)
    p_ort = OnnxRunner(onnx_export / "model.onnx")(frames, hops)
    assert p_ort.shape == p_tf.shape == (2, 256, 256)
    assert np.abs(p_ort - p_tf).max() < 1e-4


def test_onnx_paths_fail_with_one_clear_line(onnx_export, tmp_path, shared_data):
    scene = shared_data / "cdnet2014" / "baseline" / "pedestrians" / "input"
    proc = _main("--phase=predict", f"--input={scene}", f"--ckpt={RELEASE}", "--runtime=onnxruntime",
                 f"--output_dir={tmp_path / 'o'}", check=False)
    assert proc.returncode == 2 and "model.onnx: no ONNX model" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
    proc = _main("--phase=export", f"--ckpt={RELEASE}", f"--output_dir={tmp_path / 'e'}", "--format=tflite", check=False)
    assert proc.returncode == 2 and "--format: unknown ['tflite']" in proc.stderr
    proc = _main("--phase=export", f"--ckpt={RELEASE}", f"--output_dir={tmp_path / 'b'}", "--format=onnx",
                 "--inference_precision=bfloat16", check=False)
    assert proc.returncode == 2 and "ONNX export is float32 only" in proc.stderr
    assert not (tmp_path / "b" / "model.onnx").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"not an onnx file")
    (bad / "config.json").write_text((onnx_export / "config.json").read_text())
    proc = _main("--phase=predict", f"--input={scene}", f"--ckpt={bad}", "--runtime=onnxruntime",
                 f"--output_dir={tmp_path / 'o2'}", check=False)
    assert proc.returncode == 2 and "cannot load the ONNX model" in proc.stderr and str(bad / "model.onnx") in proc.stderr


def test_bench_model_reports_each_runtime_beside_tensorflow(shared_data):
    proc = subprocess.run([sys.executable, "-m", "bench.bench_model", "--runtimes", "tf,onnxruntime", "--batches", "4",
                           "--frames", "8"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    rows = {(r["runtime"], r["precision"]): r for r in report["runtimes"]}
    assert {("tf", "float32"), ("onnxruntime", "float32")} <= set(rows) and report["frames"] == 8
    assert all(r["frames_per_s"] > 0 for r in rows.values())
    assert rows[("onnxruntime", "float32")]["mask_agreement"] >= 0.999
    assert rows[("onnxruntime", "float32")]["max_probability_difference"] < 1e-4
    assert report["foreground_fraction"] > 0.002  # real frames with people in them, not a blank agreement
