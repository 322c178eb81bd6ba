"""sequence.json: one typed description, written by merging and read by records and scoring."""
import json

import pytest

from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.sequence_meta import SEQUENCE_META, SequenceMeta


def test_round_trip_and_folder_is_not_saved(tmp_path):
    meta = SequenceMeta(name="s", frames=["000001", "000002"], labelled=False, kind="frames",
                        source="/x", native_size=[240, 320], flow={"taus": [1, 5, 10], "encoding": "log"})
    meta.save(tmp_path)
    saved = json.loads((tmp_path / SEQUENCE_META).read_text())
    assert "folder" not in saved and saved["frames"] == ["000001", "000002"]
    again = SequenceMeta.load(tmp_path)
    assert again == meta and again.folder == tmp_path


def test_unfinished_or_malformed_files_are_named(tmp_path):
    with pytest.raises(HOFAMInputError, match="did not finish"):
        SequenceMeta.load(tmp_path)
    (tmp_path / SEQUENCE_META).write_text("{not json")
    with pytest.raises(HOFAMInputError, match="not valid JSON"):
        SequenceMeta.load(tmp_path)
    (tmp_path / SEQUENCE_META).write_text(json.dumps({"frames": []}))
    with pytest.raises(HOFAMInputError, match="needs 'name' and 'frames'"):
        SequenceMeta.load(tmp_path)
    (tmp_path / SEQUENCE_META).write_text(json.dumps({"name": "s", "frames": ["../evil"]}))
    with pytest.raises(HOFAMInputError, match="frame id"):
        SequenceMeta.load(tmp_path)
