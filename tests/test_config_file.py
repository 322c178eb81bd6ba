"""--config=run.json with flags on top, and every RunConfig field a flag (hofam_tf.config_flags)."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hofam_tf.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_config_file_with_flag_overrides(tmp_path, cdnet_records):
    base = RunConfig()
    base = dataclasses.replace(base, model=dataclasses.replace(base.model, ngf=2),
                               train=dataclasses.replace(base.train, steps=3, batch_size=2, log_every=1,
                                                         ckpt_every=3, image_every=0, learning_rate=2e-3))
    base.save(tmp_path / "run.json")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=train", f"--config={tmp_path / 'run.json'}",
                           f"--train_pattern={cdnet_records['records']}/train-*.tfrecord", "--steps=2",
                           f"--ckpt_dir={tmp_path / 'run'}"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = RunConfig.load(tmp_path / "run" / "config.json")
    assert saved.model.ngf == 2 and saved.train.learning_rate == 2e-3  # from the file
    assert saved.train.steps == 2  # the flag wins


def test_every_config_field_is_a_flag_of_main_and_its_defaults_are_the_fields():
    sys.argv = ["main.py"]
    import main

    from hofam_tf.config_flags import fields

    seen = set()
    for section, field, name, _ in fields():
        assert name in main.FLAGS, (section, field.name)
        assert name not in seen, name  # one flag per field
        seen.add(name)
        default = main.FLAGS[name].default
        expected = getattr(getattr(RunConfig(), section), field.name)
        assert default == (",".join(map(str, expected)) if isinstance(expected, tuple) else expected), name
    # the flag names users' scripts depend on are still there
    for name in ("phase", "train_pattern", "test_pattern", "ngf", "steps", "batch_size", "ckpt_dir", "ckpt",
                 "output_dir", "threshold", "image_size", "precision", "loss_mode", "hop_encoding", "taus",
                 "augment", "min_crop", "hop_gain", "val_pattern", "early_stop"):
        assert name in main.FLAGS, name


def test_config_flags_override_only_what_was_given():
    from absl import flags

    from hofam_tf.config_flags import config_from_flags, define_config_flags, given

    fv = flags.FlagValues()
    define_config_flags(flag_values=fv)
    fv(["prog", "--dropout=0.25", "--flow_gains=2,2,2", "--alpha=0.5", "--image_size=512", "--noaugment",
        "--precision=mixed_bfloat16", "--flow_scale=3", "--taus=2,6,12"])
    base = RunConfig()
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=7))
    cfg = config_from_flags(base, flag_values=fv)
    assert cfg.model.dropout == 0.25 and cfg.model.height == cfg.model.width == 512
    assert cfg.model.dtype == "mixed_bfloat16" and cfg.loss.alpha == 0.5 and not cfg.augment.enabled
    assert cfg.flow.gains == (2, 2, 2) and cfg.flow.scale == 3.0 and cfg.flow.taus == (2, 6, 12)
    assert cfg.train.steps == 7  # not given: the base's value stays
    assert given("flow", fv) == {"gains", "scale", "taus"}
    fv2 = flags.FlagValues()
    define_config_flags(("flow",), flag_values=fv2)
    fv2(["prog", "--taus=1,x,3"])
    import pytest

    from hofam_tf.errors import HOFAMInputError

    with pytest.raises(HOFAMInputError, match="--taus"):
        config_from_flags(names=("flow",), flag_values=fv2)


def test_a_whole_number_for_a_float_field_is_a_float(tmp_path):
    """A hand-written run.json (or bench --set loss.beta_cap=12) gives 12, not 12.0; the loss's TF
    ops would refuse an int where the field's float belongs."""
    import json

    import numpy as np
    import tensorflow as tf

    from hofam_tf.model.losses import hofam_loss

    data = RunConfig().to_dict()
    data["loss"]["beta_cap"] = 12
    data["augment"]["hop_noise"] = 2
    (tmp_path / "run.json").write_text(json.dumps(data))
    cfg = RunConfig.load(tmp_path / "run.json")
    assert type(cfg.loss.beta_cap) is float and type(cfg.augment.hop_noise) is float
    assert type(cfg.augment.hop_spread) is int and cfg.flow.taus == (1, 5, 10)  # ints and tuples stay
    mask = np.zeros((1, 8, 8, 1), np.float32)
    mask[0, :2, :2] = 1  # 64 / 4 = 16 > the cap of 12
    out = hofam_loss(tf.zeros((1, 8, 8, 1)), mask, target_num=tf.constant([1]), cfg=cfg.loss)
    assert np.isfinite(out["loss"].numpy())
