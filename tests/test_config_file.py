"""--config=run.json with flags on top, and every RunConfig field reachable through FIELD_FLAGS."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from hofam_tf.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


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


def test_every_flag_of_the_table_names_a_real_field():
    sys.argv = ["main.py"]
    import main

    fields = {s: {f.name for f in dataclasses.fields(type(getattr(RunConfig(), s)))} for s in RunConfig().to_dict()}
    for flag, (section, field, _) in main.FIELD_FLAGS.items():
        assert field in fields[section], (flag, section, field)
        assert flag in main.FLAGS, flag
