"""gfla-tf: Global-Flow Local-Attention (Ren et al., CVPR 2020) in TensorFlow/Keras.

Pose-guided person image generation: given a photo of a person, its pose and a target
pose, render that person in the target pose.

Importing the package registers every Keras-serialisable class it defines (layers,
models, the trainer and its schedule, LPIPS), so that after ``import gfla_tf`` a plain
``keras.saving.load_model("generator.keras")`` works. This imports TensorFlow and Keras;
the compiled op library still loads lazily, on the first op call, so ``import gfla_tf``
never fails because it is missing. The other subpackages are imported on first use.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "cli",
    "data",
    "evaluation",
    "export",
    "layers",
    "losses",
    "models",
    "ops",
    "serving",
    "training",
)

# The modules whose import registers serialisable classes (@register_keras_serializable).
_REGISTERING = (
    "gfla_tf.layers",
    "gfla_tf.models",
    "gfla_tf.training",
    "gfla_tf.evaluation.lpips",
)
for _module in _REGISTERING:
    importlib.import_module(_module)
del _module


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
