"""``gfla doctor``: reports the custom op library status and the environment."""

from __future__ import annotations

import importlib.util
import json
import platform

from gfla_tf.cli.main import ArgumentParser

# Optional packages: import name -> (pip name, what needs it). Looked up, not imported.
OPTIONAL_PACKAGES = {
    "torch": ("torch", "gfla convert of .pth files"),
    "ai_edge_litert": ("ai-edge-litert", "running .tflite models"),
    "tensorflow_serving": ("tensorflow-serving-api", "the gRPC serving client"),
    "lpips": ("lpips", "converting the LPIPS weights"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def collect() -> dict:
    """Gathers the environment report.

    Returns:
      A dict with Python/TensorFlow/Keras versions, visible GPUs, ``gfla_tf.ops.status()``
      and which optional packages are installed.
    """
    import keras
    import tensorflow as tf

    from gfla_tf import ops

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_cuda_build": tf.test.is_built_with_cuda(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "ops": ops.status(),
        "optional": {name: _installed(name) for name in OPTIONAL_PACKAGES},
    }


def main(argv: list[str]) -> int:
    """Prints the report; returns 0 (1 with --strict when the library is not loaded)."""
    parser = ArgumentParser(prog=argv[0], description=__doc__)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if the library is not loaded"
    )
    args = parser.parse_args(argv[1:])
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lib = report["ops"]
        print(f"Python      {report['python']} ({report['platform']})")
        print(f"TensorFlow  {report['tensorflow']} (CUDA build: {report['tf_cuda_build']})")
        print(f"Keras       {report['keras']}")
        gpus = ", ".join(report["gpus"]) or "none visible"
        if not report["gpus"] and report["tf_cuda_build"]:
            gpus += " ('gfla --verbose doctor' shows TensorFlow's own GPU messages)"
        print(f"GPUs        {gpus}")
        print("gfla-tf custom op library:")
        print(f"  path          {lib['library_path'] or 'not found'}")
        print(f"  loaded        {lib['loaded']}")
        if lib["reason"]:
            print(f"  reason        {lib['reason']}")
        if lib["loaded"]:
            print(f"  CPU kernels   {lib['cpu_kernels']}")
            print(f"  GPU kernels   {lib['gpu_kernels']} (CUDA compiled in: {lib['cuda_build']})")
            print(f"  built for TF  {lib['built_for_tf']} (running {lib['running_tf']})")
            print(f"  built with    {lib['build_tool']}, compiler {lib['compiler']}")
            if lib["built_for_tf"] != lib["running_tf"]:
                print("  WARNING: TensorFlow version differs from the build; rebuild the library")
        else:
            print("  ops fall back to the pure-TensorFlow reference (impl='auto')")
        print("optional packages:")
        for name, (pip_name, purpose) in OPTIONAL_PACKAGES.items():
            state = "installed" if report["optional"][name] else f"missing: pip install {pip_name}"
            print(f"  {pip_name:<24}{state} ({purpose})")
    if args.strict and not report["ops"]["loaded"]:
        return 1
    return 0
