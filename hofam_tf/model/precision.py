"""Inference precision: bfloat16 where the CPU computes it natively, float32 elsewhere.

On CPUs with AVX512-BF16 or AMX-BF16, oneDNN runs bfloat16 convolutions several times faster
than float32 (HOFAM inference measured 3.6x on such a Xeon; ``bench/bench_bf16.py`` measures the
speed and the agreement of the masks with float32 on the machine at hand). ``auto`` picks
``mixed_bfloat16`` there when no GPU is visible, else ``float32``: GPUs keep float32 until their
agreement is measured, and CPUs without the instructions would emulate bfloat16 slowly.
"""
from __future__ import annotations

from hofam_tf.errors import HOFAMInputError

INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")
RUN_PRECISION = "auto"  # test / predict: they run where they are launched (export: hofam_tf.tasks.export)
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU flags (``/proc/cpuinfo``) include native bfloat16 arithmetic."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return any(f in flags for f in _BF16_FLAGS)


def inference_dtype(choice: str = "auto") -> str:
    """"auto" | "float32" | "bfloat16" -> a Keras dtype policy name for ``ModelConfig.dtype``."""
    if choice not in INFERENCE_PRECISIONS:
        raise HOFAMInputError(f"unknown inference precision {choice!r} {INFERENCE_PRECISIONS}")
    if choice == "float32":
        return "float32"
    if choice == "bfloat16":
        return "mixed_bfloat16"
    import tensorflow as tf

    return "mixed_bfloat16" if cpu_has_bf16() and not tf.config.list_physical_devices("GPU") else "float32"


def with_dtype(model, cfg, dtype: str):
    """The same weights in a model built with another dtype policy -> (model, cfg)."""
    from hofam_tf.model.hofam import rebuild_with

    return rebuild_with(model, cfg, dtype=dtype)
