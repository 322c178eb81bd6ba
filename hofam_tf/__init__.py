"""hofam-tf: TensorFlow 2 / Keras 3 port of HOFAM (Hierarchical Optical Flow Attention Model).

Public entry points (imported lazily, so the data tools do not pay TensorFlow's start-up):
    build_hofam(ModelConfig | **kwargs) -> keras.Model     hofam_tf.model
    hofam_loss(logits, mask, weight, target_num, LossConfig) hofam_tf.losses
    build_dataset(pattern, ...) -> tf.data.Dataset          hofam_tf.data
    run_train / run_test / run_score / run_predict / run_demo
Configuration objects live in ``hofam_tf.config``.
"""
from hofam_tf.config import FlowConfig, LossConfig, ModelConfig, RunConfig, TrainConfig
from hofam_tf.errors import HOFAMInputError

__version__ = "0.1.0"

_LAZY = {
    "build_hofam": "hofam_tf.model",
    "hofam_loss": "hofam_tf.losses",
    "build_dataset": "hofam_tf.data",
    "run_train": "hofam_tf.train",
    "run_test": "hofam_tf.evaluate",
    "run_score": "hofam_tf.evaluate",
    "run_predict": "hofam_tf.predict",
    "run_demo": "hofam_tf.demo",
    "load_for_inference": "hofam_tf.checkpoints",
    "load_tf1_checkpoint": "hofam_tf.tf1_import",
}

__all__ = ["FlowConfig", "LossConfig", "ModelConfig", "RunConfig", "TrainConfig", "HOFAMInputError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hofam_tf' has no attribute {name!r}")
