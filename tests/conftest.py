"""Shared fixtures. Real data is read from ../shared/data (never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
# The real samples (CDnet 2014, SBI 2015, the authors' demo composites) live beside the project in
# ../shared/data; HOFAM_SHARED_DATA points the tests at another copy. Without them the tests that
# need them are skipped, unless HOFAM_REQUIRE_DATA=1 (CI), which turns a skip into a failure.
SHARED_DATA = Path(os.environ.get("HOFAM_SHARED_DATA") or ROOT.parent / "shared" / "data")


def pytest_collection_modifyitems(config, items):
    """The slow tests first, each keeping its place among them: in two processes (``-n 2 --dist
    worksteal``) the workers begin with the long tests and share out the short ones at the end,
    instead of one of them running a long test alone while the other has nothing left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        where = (f"real sample data not found at {SHARED_DATA} (the folder ../shared/data beside the "
                 "project; set HOFAM_SHARED_DATA to a copy elsewhere)")
        if os.environ.get("HOFAM_REQUIRE_DATA") == "1":
            pytest.fail(where + "; HOFAM_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(where)
    return SHARED_DATA


@pytest.fixture(scope="session")
def cdnet_records(tmp_path_factory, shared_data):
    """CDnet baseline (3 sequences) -> composites -> TFRecords, office held out for test."""
    from hofam_tf.data.merging import merge_dataset
    from hofam_tf.data.records import write_tfrecords
    from hofam_tf.config import FlowConfig

    work = tmp_path_factory.mktemp("cdnet")
    comp, rec = work / "composites", work / "records"
    merge_dataset(shared_data / "cdnet2014", comp, FlowConfig(), progress=False)
    info = write_tfrecords(comp, rec, test_sequences=["baseline_office"], examples_per_shard=40,
                           progress=False)
    return {"composites": comp, "records": rec, "info": info}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A run folder with an untrained width-2 HOFAM: model.keras + config.json."""
    from hofam_tf.config import ModelConfig, RunConfig
    from hofam_tf.model.hofam import build_hofam

    folder = tmp_path_factory.mktemp("tiny_model")
    build_hofam(ModelConfig(ngf=2)).save(folder / "model.keras")
    RunConfig(model=ModelConfig(ngf=2)).save(folder / "config.json")
    return folder
