"""The shipped model: small enough to ship, loads by default, segments with its stored threshold."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hofam_tf.model.checkpoints import RELEASE_DIR, load_for_inference, release_model, stored_threshold

ROOT = Path(__file__).resolve().parents[1]


def test_release_model_is_shipped_small_and_complete():
    assert release_model() == RELEASE_DIR
    assert (RELEASE_DIR / "model.keras").stat().st_size <= 12 * 2**20
    info = json.loads((RELEASE_DIR / "best.json").read_text())
    assert 0 < info["threshold"] < 1 and stored_threshold(RELEASE_DIR) == info["threshold"]
    model, cfg = load_for_inference(RELEASE_DIR)
    assert cfg.model.ngf == 8 and model.count_params() == 2712889
    # every number was chosen on scenes it never trained on, and best.json says so
    val, train = info["validation_scenes"], info["training_scenes"]
    assert val and not set(val) & set(train) and info["steps"] <= info["max_steps"]
    assert str(info["steps"]) in {str(k) for k in info["validation_curve"]}
    post = info["post"]
    assert post["chosen_on"] == val and set(post["validation_f"][post["chosen"]]) == set(val)
    mean = {k: sum(fs.values()) / len(fs) for k, fs in post["validation_f"].items()}
    assert mean[post["chosen"]] == max(mean.values())
    from hofam_tf.model.checkpoints import stored_post
    from hofam_tf.tasks.predict import PredictOptions

    from hofam_tf.model.checkpoints import POST_FIELDS, POST_FIELDS_LATER

    # a field the release run did not record (added later) takes the value that run used
    assert stored_post(RELEASE_DIR) == {k: post.get(k, POST_FIELDS_LATER.get(k)) for k in POST_FIELDS}
    PredictOptions(**stored_post(RELEASE_DIR))  # valid predict settings


def test_predict_without_ckpt_uses_the_release_model(tmp_path, shared_data):
    scene = shared_data / "cdnet2014" / "baseline" / "pedestrians"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=predict", f"--input={scene}",
                           f"--output_dir={tmp_path}", "--max_frames=12", "--inference_precision=float32",
                           "--nooverlay_video", "--median_gate=0", "--calibrate_frames=200"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "release model" in proc.stdout
    summary = json.loads((tmp_path / "pedestrians" / "summary.json").read_text())
    # the threshold is the scene's own, chosen on the 12 frames read (--max_frames caps the calibration)
    agreement = summary["agreement_by_threshold"]
    assert summary["frames"] == 12 and summary["calibrate_frames"] == 200
    from hofam_tf.tasks.predict import MIN_AGREEMENT

    assert max(agreement.values()) >= MIN_AGREEMENT and agreement[str(summary["threshold"])] == max(agreement.values())
    # the 12th mask is the release model's output at its threshold, recomputed here independently
    import cv2

    from hofam_tf.data.flow import hop_from_grays, resize_frame, to_gray
    from hofam_tf.tasks.predict import FLOW_PRESET

    frames = sorted((scene / "input").glob("*.jpg"))
    assert frames[0].name == "in000600.jpg"  # the samples start at the temporal ROI: no earlier frames
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in frames[:12]]
    grays = {i: to_gray(resize_frame(f)) for i, f in enumerate(rgb)}
    model, cfg = load_for_inference(RELEASE_DIR)
    t = 11
    hop = hop_from_grays(grays, t, dataclasses.replace(cfg.flow, dis_preset=FLOW_PRESET))  # predict's default preset
    logits = np.asarray(model({"frame": resize_frame(rgb[t])[None], "hop": hop[None]}))[0, ..., 0]
    prob = cv2.resize(1 / (1 + np.exp(-logits)), (rgb[t].shape[1], rgb[t].shape[0]), interpolation=cv2.INTER_LINEAR)
    got = np.asarray(Image.open(tmp_path / "pedestrians" / "masks" / "000611.png")) == 255
    assert (got == (prob >= summary["threshold"])).mean() > 0.999
    assert summary["flow"]["dis_preset"] == FLOW_PRESET and summary["flow"]["reverse_check"] == cfg.flow.reverse_check
