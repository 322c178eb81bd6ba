"""Model: the HOFAM network and what a trained one is made of.

The Keras 3 functional HOFAM and its layers (``hofam``, ``layers``), the losses, checkpoints
(loading any supported run, ``.keras`` file or TF1 checkpoint), the TF1 import, inference
precision and weight averaging. Imports only the core; never ``hofam_tf.data`` or
``hofam_tf.tasks``: the model takes tensors, not files.
"""
from hofam_tf._lazy import lazy_exports

_HOFAM = "hofam_tf.model.hofam"
__getattr__ = lazy_exports(__name__, {name: _HOFAM for name in (
    "build_hofam", "HOFAM", "tile_probabilities", "count_params", "rebuild_with")})
