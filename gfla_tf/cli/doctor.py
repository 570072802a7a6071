"""``gfla doctor``: reports the custom op library status and the environment."""

import json
import platform

from gfla_tf.cli.main import ArgumentParser


def collect():
    """Gathers the environment report.

    Returns:
      A dict with Python/TensorFlow/Keras versions, visible GPUs and ``gfla_tf.ops.status()``.
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
    }


def main(argv):
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
        print(f"GPUs        {', '.join(report['gpus']) or 'none visible'}")
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
    if args.strict and not report["ops"]["loaded"]:
        return 1
    return 0
