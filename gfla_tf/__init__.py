"""gfla-tf: Global-Flow Local-Attention (Ren et al., CVPR 2020) in TensorFlow/Keras.

Pose-guided person image generation: given a photo of a person, its pose and a target
pose, render that person in the target pose.

Subpackages are imported lazily so that ``import gfla_tf`` is cheap and never fails
because the optional compiled op library is missing.
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


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
