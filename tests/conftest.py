"""Shared fixtures. Real data is read from ../shared/data (never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real sample data expected at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def cdnet_records(tmp_path_factory, shared_data):
    """CDnet baseline (3 sequences) -> composites -> TFRecords, office held out for test."""
    from data_prep.merge import merge_dataset
    from data_prep.tfrecord import write_tfrecords
    from hofam_tf.config import FlowConfig

    work = tmp_path_factory.mktemp("cdnet")
    comp, rec = work / "composites", work / "records"
    merge_dataset(shared_data / "cdnet2014", comp, FlowConfig(), progress=False)
    info = write_tfrecords(comp, rec, test_sequences=["baseline_office"], examples_per_shard=40,
                           progress=False)
    return {"composites": comp, "records": rec, "info": info}
