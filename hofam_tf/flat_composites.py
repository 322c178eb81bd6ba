"""The original's data layout: a flat folder of 256x768 composites with no metadata (the authors'
``demo_data``). Read by ``data_prep/tfrecord.py --input_dir`` and ``--phase=score --gt_dir``."""
from __future__ import annotations

from pathlib import Path

from hofam_tf.errors import HOFAMInputError

FLAT_TAUS = (1, 5, 10)  # the authors' demo HOP files fit this set (README, "Hierarchical optical flow")


def flat_sequences(root: Path) -> list[dict]:
    """The original's data layout: a flat folder of 256x768 composites ``<prefix><number>.png``
    with no metadata. Sequences are the runs of consecutive frame numbers with the same prefix
    (``test_000155`` ... ``test_000164`` is one clip, named after its first frame), so a
    train/test split never cuts a clip. The GT tile is binarised at > 200 (the original's rule;
    the authors' demo GT is anti-aliased), so only labels 0 and 255 occur. The frame interval
    set is unknown and recorded as (1, 5, 10)."""
    import re

    from PIL import Image, UnidentifiedImageError

    from hofam_tf.composite import COMPOSITE_SHAPE

    entries = []
    for path in sorted(p for p in root.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")):
        try:
            with Image.open(path) as img:
                size = img.size
        except (UnidentifiedImageError, OSError) as err:
            raise HOFAMInputError(f"{path}: not a readable PNG ({err})") from None
        if size != (COMPOSITE_SHAPE[1], COMPOSITE_SHAPE[0]):
            raise HOFAMInputError(f"{path}: not a composite: {size[0]}x{size[1]} instead of "
                                  f"{COMPOSITE_SHAPE[1]}x{COMPOSITE_SHAPE[0]} ([frame | HOP | GT])")
        m = re.fullmatch(r"(.*?)(\d+)", path.stem)
        entries.append((m.group(1), int(m.group(2)), path.stem) if m else (path.stem, -1, path.stem))
    entries.sort()
    metas: list[dict] = []
    for prefix, number, stem in entries:
        last = metas[-1] if metas else None
        if last and number >= 0 and last["_key"] == (prefix, number - 1):
            last["frames"].append(stem)
            last["_key"] = (prefix, number)
            continue
        metas.append({"name": stem, "kind": "flat_composites", "labelled": True, "binarize_gt": True,
                      "frames": [stem], "dir": str(root), "flow": {"taus": list(FLAT_TAUS)},
                      "_key": (prefix, number)})
    for meta in metas:
        del meta["_key"]
    return metas
