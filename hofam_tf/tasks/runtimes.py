"""The runtimes ``--phase=predict`` runs HOFAM in (``--runtime``).

- ``tf`` (default): TensorFlow, on any checkpoint ``hofam_tf.model.checkpoints`` loads, in the
  precision asked for (bf16 where the CPU has it, ``hofam_tf.model.precision``).
- ``onnxruntime``: ONNX Runtime on the ``model.onnx`` of an export folder
  (``--phase=export --format=onnx``), whose ``config.json`` gives the flow settings and
  ``best.json`` the threshold. An optional extra (``pip install -e ".[onnx]"``), never needed
  for the default runtime; float32, as exported.

Both take a batch of 256x256 frame and HOP tiles (uint8 or float32 in [0, 255]), and the
background references for the background-reference variant, and return the foreground
probability [B, H, W] as float32 numpy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hofam_tf.errors import HOFAMInputError

RUNTIMES = ("tf", "onnxruntime")
ONNX_EXTRA = 'pip install -e ".[onnx]"'


class TFRunner:
    """A Keras HOFAM (logits out) run as one traced function; ``size`` is its input (H, W)."""

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self.size = tuple(model.inputs[0].shape[1:3])
        self._fn = tf.function(lambda x: tf.sigmoid(model(x, training=False)), autograph=False)
        self._adapter = None

    def adapter(self, loss_cfg, balanced: bool = False):
        """The scene adaptation of this runner's model (``adapt.SceneAdapter``), built on first use
        and reused for every later sequence with the same loss."""
        from hofam_tf.tasks.adapt import SceneAdapter

        if self._adapter is None or self._adapter[0] != (loss_cfg, balanced):
            self._adapter = ((loss_cfg, balanced), SceneAdapter(self.model, loss_cfg, balanced=balanced))
        return self._adapter[1]

    def __call__(self, frames: np.ndarray, hops: np.ndarray, backgrounds: np.ndarray | None = None) -> np.ndarray:
        from hofam_tf.config import model_inputs

        return self._fn(model_inputs(frames, hops, backgrounds)).numpy()[..., 0]


class OnnxRunner:
    """An exported ``model.onnx`` (probability out) in an ONNX Runtime CPU session."""

    def __init__(self, path: str | Path, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise HOFAMInputError(f"--runtime=onnxruntime needs onnxruntime, in the onnx extra: {ONNX_EXTRA}") from None
        path = Path(path)
        if not path.is_file():
            raise HOFAMInputError(f"{path}: no ONNX model; make one with --phase=export --format=onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            raise HOFAMInputError(f"{path}: cannot load the ONNX model ({str(err).splitlines()[0]})") from None
        from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY

        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) not in (sorted([FRAME_KEY, HOP_KEY]), sorted([FRAME_KEY, HOP_KEY, BACKGROUND_KEY])):
            raise HOFAMInputError(f"{path}: inputs {names}, expected {FRAME_KEY!r} and {HOP_KEY!r} "
                                  f"(and {BACKGROUND_KEY!r}; a HOFAM export)")
        self.names = set(names)
        shape = self.session.get_inputs()[0].shape
        self.size = (int(shape[1]), int(shape[2]))

    def __call__(self, frames: np.ndarray, hops: np.ndarray, backgrounds: np.ndarray | None = None) -> np.ndarray:
        from hofam_tf.config import model_inputs

        feed = {k: np.asarray(v, np.float32) for k, v in model_inputs(frames, hops, backgrounds).items()}
        if set(feed) != self.names:
            raise HOFAMInputError(f"the ONNX model takes {sorted(self.names)}, given {sorted(feed)}")
        return self.session.run(None, feed)[0][..., 0]


def load_runner(ckpt, runtime: str = "tf", model_overrides: dict | None = None, precision: str | None = None):
    """(runner, RunConfig) for ``ckpt`` in ``runtime``."""
    from hofam_tf.config import RunConfig
    from hofam_tf.model.checkpoints import CONFIG_NAME, load_for_inference, run_dir_of

    if runtime not in RUNTIMES:
        raise HOFAMInputError(f"unknown runtime {runtime!r}; the runtimes are {', '.join(RUNTIMES)}")
    if runtime == "tf":
        model, cfg = load_for_inference(ckpt, model_overrides, precision)
        return TFRunner(model), cfg
    if model_overrides:
        raise HOFAMInputError("--hop_channels / --faithful_tf1 change the graph: export with them instead")
    from hofam_tf.tasks.export import ONNX_NAME

    path = Path(ckpt)
    folder = path.parent if path.suffix == ".onnx" else path
    onnx_path = path if path.suffix == ".onnx" else path / ONNX_NAME
    runner = OnnxRunner(onnx_path)
    cfg_path = run_dir_of(folder) / CONFIG_NAME if folder.is_dir() else folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise HOFAMInputError(f"{cfg_path}: missing; an export folder holds the run's config.json (flow settings)")
    return runner, RunConfig.load(cfg_path)
