"""hofam-tf: TensorFlow 2 / Keras 3 port of HOFAM (Hierarchical Optical Flow Attention Model).

Public entry points (imported lazily, so the data tools do not pay TensorFlow's start-up):
    build_hofam(ModelConfig | **kwargs) -> keras.Model     hofam_tf.model.hofam
    hofam_loss(logits, mask, weight, target_num, LossConfig) hofam_tf.model.losses
    build_dataset(pattern, ...) -> tf.data.Dataset          hofam_tf.data.dataset
    run_train / run_test / run_score / run_predict / run_demo
Configuration objects live in ``hofam_tf.config``.
"""
from hofam_tf.config import FlowConfig, LossConfig, ModelConfig, RunConfig, TrainConfig
from hofam_tf._lazy import lazy_exports
from hofam_tf.errors import HOFAMInputError

__version__ = "0.15.0"  # the README's changelog

# old flat module -> its home since 0.2 (docs/changelog.md, 0.2)
MOVED = {
    "augment": "data.augment", "composite": "data.composite", "flat_composites": "data.flat_composites",
    "flow": "data.flow", "flow_images": "data.flow_images", "merging": "data.merging", "records": "data.records",
    "schema": "data.schema", "sequence_meta": "data.sequence_meta", "sources": "data.sources",
    "synthetic": "data.synthetic",
    "layers": "model.layers", "losses": "model.losses", "tf1_import": "model.tf1_import",
    "precision": "model.precision", "checkpoints": "model.checkpoints", "weight_average": "model.weight_average",
    "train": "tasks.train", "evaluate": "tasks.evaluate", "validation": "tasks.validation",
    "predict": "tasks.predict", "baselines": "tasks.baselines", "export": "tasks.export", "demo": "tasks.demo",
    "metrics": "tasks.metrics", "viz": "tasks.viz",
}


class _MovedModules:
    """Import hook: ``import hofam_tf.train`` yields ``hofam_tf.tasks.train`` itself (one module
    object under two names, so state and monkeypatching are shared)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        prefix, _, rest = fullname.partition(".")
        if prefix != __name__ or rest not in MOVED:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(fullname, _MovedModules())

    @staticmethod
    def create_module(spec):
        import importlib
        import sys

        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.partition('.')[2]]}")
        sys.modules[spec.name] = module
        return module

    @staticmethod
    def exec_module(module):
        return None


def _install_moved_modules():
    import sys

    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())


_install_moved_modules()

_LAZY = {
    "build_hofam": "hofam_tf.model.hofam",
    "hofam_loss": "hofam_tf.model.losses",
    "build_dataset": "hofam_tf.data.dataset",
    "run_train": "hofam_tf.tasks.train",
    "run_test": "hofam_tf.tasks.evaluate",
    "run_score": "hofam_tf.tasks.evaluate",
    "run_predict": "hofam_tf.tasks.predict",
    "run_demo": "hofam_tf.tasks.demo",
    "load_for_inference": "hofam_tf.model.checkpoints",
    "load_tf1_checkpoint": "hofam_tf.model.tf1_import",
}

__all__ = ["FlowConfig", "LossConfig", "ModelConfig", "RunConfig", "TrainConfig", "HOFAMInputError", *_LAZY]


__getattr__ = lazy_exports(__name__, _LAZY)
