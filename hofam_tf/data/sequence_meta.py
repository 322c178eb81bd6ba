"""``sequence.json``: what a composites folder knows about the sequence it holds.

Written last by ``hofam_tf.data.merging`` (a folder without it is an unfinished merge), read by
``hofam_tf.data.records`` (TFRecords) and ``--phase=score`` (ground truth). The original's flat
folders of composites have no such file; ``flat_composites`` describes them with the same type.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hofam_tf.errors import HOFAMInputError

SEQUENCE_META = "sequence.json"


@dataclasses.dataclass
class SequenceMeta:
    """name: sequence name; kind: where it came from ("cdnet", "sbi", "video", "frames",
    "lasiesta", "flat_composites", ...); source: its input path; labelled: it has ground truth;
    native_size: [H, W] of its frames; frames: frame ids in order (composite ``<id>.png``);
    flow: the ``FlowConfig`` fields its HOP images were made with (``{"taus": ...}`` only for
    the original's flat folders); binarize_gt: binarise the GT tile at > 200 when reading (the
    authors' anti-aliased demo GT). ``folder`` is where the composites are (not saved)."""

    name: str
    frames: list
    labelled: bool = True
    kind: str = ""
    source: str = ""
    native_size: list | None = None
    flow: dict | None = None
    binarize_gt: bool = False
    folder: Path | None = dataclasses.field(default=None, compare=False)

    def save(self, folder: str | Path) -> None:
        from hofam_tf.files import write_json

        data = dataclasses.asdict(self)
        del data["folder"]
        write_json(Path(folder) / SEQUENCE_META, data)

    @classmethod
    def load(cls, folder: str | Path) -> "SequenceMeta":
        """Reads ``folder/sequence.json``; a missing or malformed file is a HOFAMInputError."""
        from hofam_tf.files import safe_name

        path = Path(folder) / SEQUENCE_META
        if not path.exists():
            raise HOFAMInputError(f"{folder}: no {SEQUENCE_META}; the merge of this sequence did not finish")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise HOFAMInputError(f"{path}: not valid JSON ({err})") from None
        known = {f.name for f in dataclasses.fields(cls)} - {"folder"}
        if not isinstance(data, dict) or "name" not in data or "frames" not in data:
            raise HOFAMInputError(f"{path}: not a sequence description (needs 'name' and 'frames')")
        meta = cls(**{k: v for k, v in data.items() if k in known}, folder=Path(folder))
        for fid in meta.frames:
            safe_name(str(fid), f"frame id in {path}")
        return meta
