"""gfla-tf: Global-Flow Local-Attention (Ren et al., CVPR 2020) in TensorFlow/Keras.

Pose-guided person image generation: given a photo of a person, its pose and a target
pose, render that person in the target pose.

After ``import gfla_tf`` a plain ``keras.saving.load_model("generator.keras")`` works:
the package registers every Keras-serialisable class it defines (layers, models, the
trainer and its schedule, LPIPS). It does so as soon as Keras is loaded: at once if it
already is, otherwise right after the process first imports it. So ``import gfla_tf``
itself stays cheap and does not import TensorFlow, which keeps ``gfla --help`` instant
and lets the command line quiet TensorFlow's start-up logging before TensorFlow loads
(measured: ``gfla --help`` 0.08 s, against 5-8 s if this module imported Keras itself).
Subpackages are imported on first use; the compiled op library loads on the first op call.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys

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
# Registration waits until none of these is mid-import: TensorFlow and Keras import each
# other, and a gfla_tf module importing Keras must finish before the registering modules
# (which import it back) run.
_WATCHED = ("keras", "tensorflow")


def register_serializables() -> None:
    """Imports every module that registers a Keras-serialisable class (idempotent)."""
    for module in _REGISTERING:
        importlib.import_module(module)


def _watched(name: str) -> bool:
    return name in _WATCHED or name.startswith(__name__ + ".")


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Runs :func:`register_serializables` once Keras is loaded and no import is half done.

    It wraps the loaders of Keras, TensorFlow and this package's modules (as found by
    the standard ``PathFinder``) to count the imports in progress; other imports pass
    through untouched. The finder removes itself when registration runs.
    """

    def __init__(self) -> None:
        self._executing = 0

    def find_spec(self, name, path=None, target=None):
        if not _watched(name):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            self._executing += 1
            try:
                original(module)
            finally:
                self._executing -= 1
            if self._executing == 0 and "keras" in sys.modules and self in sys.meta_path:
                sys.meta_path.remove(self)
                register_serializables()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    register_serializables()
else:
    sys.meta_path.insert(0, _RegisterAfterKeras())


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
