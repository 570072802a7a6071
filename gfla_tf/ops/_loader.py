"""Lazy loading of the compiled op library ``_gfla_ops*.so``.

The library is looked for at ``$GFLA_OPS_LIBRARY`` when that is set, else next to this
file (setuptools names it ``_gfla_ops.cpython-311-x86_64-linux-gnu.so``; the standalone
build and Bazel may write plain ``_gfla_ops.so``). Nothing is loaded at import time: the
first op call with ``impl="auto"`` or ``"custom"`` (or ``status()``) tries once and
remembers the outcome. When the load fails, ``"auto"`` falls back to the pure-TF reference
with one warning that names the reason, and ``"custom"`` raises.

This module only loads and describes the library; the op wrappers and the gradient
registrations live in ``_custom``, which imports this module (never the reverse).
"""

import glob
import json
import logging
import os
import threading
import warnings
from typing import Any

_log = logging.getLogger(__name__)

ENV_VAR = "GFLA_OPS_LIBRARY"
_HERE = os.path.dirname(os.path.abspath(__file__))
_OPS = ("GflaLocalAttention", "GflaLocalAttentionGrad", "GflaBlockExtract", "GflaBlockExtractGrad")

_lock = threading.Lock()
_result = None  # (module or None, path or None, reason or None) once a load was tried.
_warned = False


def library_path() -> str | None:
    """Returns the path the loader will try, or None when no library file is found.

    Returns:
      ``$GFLA_OPS_LIBRARY`` if set (even if that file does not exist, so that the failure
      names it), else the newest ``_gfla_ops*.so`` next to this module, else None.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        return override
    candidates = glob.glob(os.path.join(_HERE, "_gfla_ops*.so"))
    if not candidates:
        return None
    return max(candidates, key=os.path.getmtime)


def _try_load():
    path = library_path()
    if path is None:
        return (
            None,
            None,
            (
                "no _gfla_ops*.so next to gfla_tf/ops and GFLA_OPS_LIBRARY is not set; build it "
                "with 'pip install --no-build-isolation -e .' or 'python custom_ops/build.py'"
            ),
        )
    if not os.path.isfile(path):
        return None, path, f"library file {path!r} does not exist"
    import tensorflow as tf

    try:
        module = tf.load_op_library(path)
    except Exception as err:  # noqa: BLE001 - any loader failure means "fall back"
        return None, path, f"loading {path!r} failed: {type(err).__name__}: {err}"
    missing = [name for name in _OPS if not hasattr(module, _snake(name))]
    if missing:
        return None, path, f"library {path!r} does not define the ops {missing}"
    return module, path, None


def _snake(op_name):
    out = []
    for i, ch in enumerate(op_name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _load():
    global _result
    if _result is None:
        with _lock:
            if _result is None:
                _result = _try_load()
                if _result[0] is not None:
                    _log.debug("loaded gfla-tf custom op library from %s", _result[1])
    return _result


def load_library() -> Any:
    """Returns the loaded op module.

    Returns:
      The module returned by ``tf.load_op_library``.

    Raises:
      RuntimeError: if the library cannot be loaded; the message gives the reason.
    """
    module, _, reason = _load()
    if module is None:
        raise RuntimeError(f"gfla-tf custom op library unavailable: {reason}")
    return module


def library_available(required: bool = False) -> bool:
    """Whether the compiled library is usable; loads it on the first call.

    Args:
      required: raise instead of returning False.

    Returns:
      True when the library is loaded. When it is not and ``required`` is False, warns
      once per process (the "auto" fallback) and returns False.

    Raises:
      RuntimeError: if ``required`` and the library cannot be loaded.
    """
    global _warned
    module, _, reason = _load()
    if module is not None:
        return True
    if required:
        raise RuntimeError(f"gfla-tf custom op library unavailable: {reason}")
    if not _warned:
        _warned = True
        message = (
            f"gfla-tf custom op library unavailable ({reason}); using the pure-TensorFlow "
            "reference implementation of local_attention/block_extract"
        )
        _log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return False


def _build_info(module):
    import tensorflow as tf

    with tf.init_scope():
        raw = module.gfla_build_info().numpy()
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _registered_devices(op_name):
    from tensorflow.python.framework import kernels

    try:
        return sorted(
            {k.device_type for k in kernels.get_registered_kernels_for_op(op_name).kernel}
        )
    except Exception:  # noqa: BLE001 - introspection only
        return []


def status() -> dict[str, Any]:
    """Describes the op library; loads it if that was not tried yet (never warns).

    Returns:
      A dict with ``library_path``, ``loaded``, ``reason`` (why not loaded, else None),
      ``cpu_kernels`` and ``gpu_kernels`` (registered kernel devices), ``built_for_tf``
      (TF version the library was compiled against), ``running_tf``, ``cuda_build`` (CUDA
      kernels compiled in), ``build_tool`` and ``compiler``.
    """
    import tensorflow as tf

    module, path, reason = _load()
    info = {
        "library_path": path,
        "loaded": module is not None,
        "reason": reason,
        "cpu_kernels": False,
        "gpu_kernels": False,
        "built_for_tf": None,
        "running_tf": tf.__version__,
        "cuda_build": False,
        "build_tool": None,
        "compiler": None,
    }
    if module is None:
        return info
    devices = _registered_devices("GflaLocalAttention")
    info["cpu_kernels"] = "CPU" in devices
    info["gpu_kernels"] = "GPU" in devices
    try:
        build = _build_info(module)
    except Exception as err:  # noqa: BLE001 - keep status() usable on odd builds
        info["reason"] = f"could not read the build info: {err}"
        return info
    info["built_for_tf"] = build.get("tf_version")
    info["cuda_build"] = bool(build.get("cuda"))
    info["build_tool"] = build.get("build_tool")
    info["compiler"] = build.get("compiler")
    return info
