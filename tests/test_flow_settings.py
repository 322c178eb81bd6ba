"""The flow settings travel with the data: merge -> sequence.json -> dataset.json -> run config."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hofam_tf.data.merging import merge_dataset
from hofam_tf.data.records import write_tfrecords
from hofam_tf.config import FlowConfig, ModelConfig, RunConfig, TrainConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.tasks.train import run_train

ROOT = Path(__file__).resolve().parents[1]
ODD = FlowConfig(taus=(2, 6, 12), encoding="log")


@pytest.fixture(scope="module")
def odd_records(tmp_path_factory, shared_data):
    work = tmp_path_factory.mktemp("odd")
    merge_dataset(shared_data / "cdnet2014" / "baseline" / "office", work / "comp", ODD, progress=False)
    info = write_tfrecords(work / "comp", work / "rec", progress=False)
    return work / "rec", info


def _cfg(pattern):
    return RunConfig(model=ModelConfig(ngf=2), train=TrainConfig(train_pattern=pattern, steps=1, batch_size=1,
                                                                 ckpt_every=1, log_every=1, image_every=0))


@pytest.mark.slow
def test_dataset_json_records_the_flow_and_training_adopts_it(tmp_path, odd_records):
    rec, info = odd_records
    assert FlowConfig.from_dict(info["flow"]) == ODD
    run_train(_cfg(str(rec / "train-*.tfrecord")), tmp_path / "run", progress=False)  # default flow in the config
    saved = RunConfig.load(tmp_path / "run" / "config.json")
    assert saved.flow == ODD  # predict will compute the HOP the model learnt from


def test_flags_that_contradict_the_records_are_refused(tmp_path, odd_records):
    rec, _ = odd_records
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--phase=train", f"--train_pattern={rec}/train-*.tfrecord",
                           f"--ckpt_dir={tmp_path / 'run'}", "--ngf=2", "--steps=1", "--taus=1,5,10"],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 2
    assert "taus=(1, 5, 10)" in proc.stderr and "taus=(2, 6, 12)" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_records_of_different_flows_cannot_be_mixed(tmp_path, odd_records, cdnet_records):
    rec, _ = odd_records
    with pytest.raises(HOFAMInputError, match="different flow settings"):
        run_train(_cfg(f"{rec}/train-*.tfrecord,{cdnet_records['records']}/train-*.tfrecord"), tmp_path / "r",
                  progress=False)


def test_composites_of_different_flows_cannot_share_a_dataset(tmp_path, shared_data):
    comp = tmp_path / "comp"
    merge_dataset(shared_data / "cdnet2014" / "baseline" / "office", comp, ODD, progress=False)
    merge_dataset(shared_data / "cdnet2014" / "baseline" / "highway", comp, FlowConfig(), progress=False)
    with pytest.raises(HOFAMInputError, match="different flow settings"):
        write_tfrecords(comp, tmp_path / "rec", progress=False)
    meta = json.loads((comp / "office" / "sequence.json").read_text())
    assert meta["flow"]["taus"] == [2, 6, 12]


def test_a_recorded_flow_without_a_later_field_means_how_it_was_made():
    recorded = RunConfig().to_dict()
    recorded["flow"] = {k: v for k, v in recorded["flow"].items()
                        if k not in ("reverse_check", "change_gate")}  # an older config.json
    recorded["flow"]["taus"] = [2, 6, 12]
    flow = RunConfig.from_dict(recorded).flow
    assert flow.reverse_check is False and flow.change_gate == 0 and flow.taus == (2, 6, 12)
    assert FlowConfig.from_dict({}) == FlowConfig()  # no section at all: the defaults
    assert FlowConfig.from_dict(FlowConfig(reverse_check=True).__dict__) == FlowConfig(reverse_check=True)


def test_records_without_flow_settings_cannot_join_a_background_run(tmp_path):
    from hofam_tf.data.schema import DATASET_INFO
    from hofam_tf.tasks.train import dataset_flow

    for name, info in (("bg", {"flow": FlowConfig(background_stride=10).__dict__}), ("demo", {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / DATASET_INFO).write_text(json.dumps(info))
    files = [str(tmp_path / "bg" / "train-0.tfrecord"), str(tmp_path / "demo" / "train-0.tfrecord")]
    with pytest.raises(HOFAMInputError, match=r"demo.*channel B"):
        dataset_flow(files)
    assert dataset_flow(files[:1]) == FlowConfig(background_stride=10)
    (tmp_path / "plain").mkdir()  # the HOP's own channel B: demo composites may join
    (tmp_path / "plain" / DATASET_INFO).write_text(json.dumps({"flow": FlowConfig().__dict__}))
    assert dataset_flow([str(tmp_path / "plain" / "train-0.tfrecord"), files[1]]) == FlowConfig()
