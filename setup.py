"""Installs the hofam_tf library and the data_prep command-line tools."""
import re
from pathlib import Path

from setuptools import find_packages, setup

# the version lives in hofam_tf/__init__.py only (read as text: installing must not import TensorFlow)
VERSION = re.search(r'^__version__ = "([^"]+)"', (Path(__file__).parent / "hofam_tf" / "__init__.py").read_text(),
                    re.M).group(1)

BASE = [
    "numpy>=1.26",
    "opencv-python-headless>=4.9",
    "pillow>=10",
    "absl-py>=2.1",
    "tqdm>=4.66",
    "scipy>=1.11",
]
TF_PIN = "2.21.0"
# optional: --phase=export --format=onnx and --phase=predict --runtime=onnxruntime (the tests use them)
ONNX = ["tf2onnx>=1.17", "onnxruntime>=1.20", "onnx>=1.16"]

setup(
    name="hofam-tf",
    version=VERSION,
    description="TensorFlow 2 / Keras 3 port of HOFAM (Hierarchical Optical Flow Attention Model)",
    python_requires=">=3.10",
    packages=find_packages(include=["hofam_tf", "hofam_tf.*", "data_prep", "data_prep.*"]),
    install_requires=BASE,
    extras_require={
        # Exactly one of cpu / gpu: tensorflow and tensorflow-cpu must never share an environment.
        "cpu": [f"tensorflow-cpu=={TF_PIN}", "keras>=3.10,<4", "tensorboard>=2.20"],
        "gpu": [f"tensorflow[and-cuda]=={TF_PIN}", "keras>=3.10,<4", "tensorboard>=2.20"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", *ONNX],
        "onnx": ONNX,
    },
    entry_points={
        "console_scripts": [
            "hofam-flows=data_prep.flows:run",
            "hofam-merge=data_prep.merge:run",
            "hofam-tfrecord=data_prep.tfrecord:run",
        ]
    },
)
