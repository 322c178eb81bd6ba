"""The original's data layout: a flat folder of 256x768 composites with no metadata (the authors'
``demo_data``). Read by the TFRecord writer (``hofam_tf.data.records``) and ``--phase=score --gt_dir``."""
from __future__ import annotations

from pathlib import Path

from hofam_tf.errors import HOFAMInputError
from hofam_tf.data.sequence_meta import SequenceMeta

FLAT_TAUS = (1, 5, 10)  # the authors' demo HOP files fit this set (README, "Hierarchical optical flow")
FLAT_KIND = "flat_composites"


def flat_sequences(root: Path) -> list[SequenceMeta]:
    """The original's data layout: a flat folder of 256x768 composites ``<prefix><number>.png``
    with no metadata. Sequences are the runs of consecutive frame numbers with the same prefix
    (``test_000155`` ... ``test_000164`` is one clip, named after its first frame), so a
    train/test split never cuts a clip. ``binarize_gt`` is set: training records binarise the GT
    tile at > 200 (the original's rule for its records; the authors' demo GT is anti-aliased).
    Scoring does not: it reads the tile as it is and applies the metric's own rule
    (``hofam_tf.tasks.metrics``), as for composite sequence folders. The frame interval set is
    unknown and recorded as (1, 5, 10)."""
    import re

    from PIL import Image, UnidentifiedImageError

    from hofam_tf.data.composite import COMPOSITE_SHAPE

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
    metas: list[SequenceMeta] = []
    last_key = None
    for prefix, number, stem in entries:
        if metas and number >= 0 and last_key == (prefix, number - 1):
            metas[-1].frames.append(stem)
        else:
            metas.append(SequenceMeta(name=stem, frames=[stem], labelled=True, kind=FLAT_KIND, source=str(root),
                                      flow={"taus": list(FLAT_TAUS)}, binarize_gt=True, folder=Path(root)))
        last_key = (prefix, number)
    return metas
