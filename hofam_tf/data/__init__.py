"""Data: everything upstream of the model, and nothing that knows about it.

Sources (CDnet/SBI/UCSD, LASIESTA, videos, frame folders, cameras), optical flow and the
hierarchical optical flow (HOP) image, composite PNGs ``[frame | HOP | GT]`` with the label rules,
``sequence.json``, TFRecords (the schema: keys, encode and decode, in one place), the tf.data
pipeline and augmentation. Imports only the core (``hofam_tf.config``, ``files``, ``errors``);
never ``hofam_tf.model`` or ``hofam_tf.tasks``.
"""
from hofam_tf._lazy import lazy_exports

_DATASET = "hofam_tf.data.dataset"
__getattr__ = lazy_exports(__name__, {name: _DATASET for name in (
    "build_dataset", "read_examples", "parse_examples", "list_tfrecords", "check_tfrecords")})
