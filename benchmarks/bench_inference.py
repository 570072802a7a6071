"""Generator inference time on the CPU: custom local-attention op against the reference.

Builds the full DeepFashion GFLA generator (256x256, 14.05 M parameters, random weights),
wraps its forward pass in a ``tf.function`` and times batch 1 and batch 8 for each op
implementation ("custom" only when the compiled library loads). Prints a markdown table.

    python benchmarks/bench_inference.py [--batches 1 8] [--repeats 5] [--size 256]

For scale: the authors' PyTorch model takes about 0.57 s per 256x256 image on a 2-core
CPU; the target is at most half of that.
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gfla_tf import models, ops  # noqa: E402
from gfla_tf.configs import deepfashion  # noqa: E402


def time_generator(generator, batch, size, repeats):
    """Median seconds per forward pass of ``batch`` images, after one warm-up call."""
    rng = np.random.default_rng(0)
    inputs = {
        "source_image": tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)), tf.float32),
        "source_pose": tf.constant(rng.random((batch, size, size, 18)), tf.float32),
        "target_pose": tf.constant(rng.random((batch, size, size, 18)), tf.float32),
    }
    forward = tf.function(lambda x: generator(x, training=False)["image"])
    forward(inputs).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(inputs).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["float32", "mixed_bfloat16"],
        help="Keras dtype policies (bfloat16 uses AMX/AVX512-BF16 through oneDNN if present)",
    )
    args = parser.parse_args()

    config = deepfashion.get_config().model
    config.image_height = config.image_width = args.size
    impls = ["reference"] + (["custom"] if ops.library_available() else [])
    base = models.build_generator(config, impl="reference")
    rows = []
    for policy in args.policies:
        for impl in impls:
            generator = models.build_generator(config, impl=impl, dtype=policy)
            generator.set_weights(base.get_weights())
            for batch in args.batches:
                seconds = time_generator(generator, batch, args.size, args.repeats)
                rows.append((policy, impl, batch, seconds, seconds / batch))
    ref = {b: s for policy, impl, b, s, _ in rows if (policy, impl) == ("float32", "reference")}

    print(
        f"Generator inference, DeepFashion {args.size}x{args.size}, "
        f"{models.count_params(base):,} parameters; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs visible, TF {tf.__version__}, median of {args.repeats}."
    )
    print()
    print(
        "| dtype policy | op impl | batch | s / batch | s / image | speed-up vs float32 reference |"
    )
    print("|---|---|---|---|---|---|")
    for policy, impl, batch, seconds, per_image in rows:
        speedup = f"{ref[batch] / seconds:.2f}x" if batch in ref else "-"
        print(f"| {policy} | {impl} | {batch} | {seconds:.3f} | {per_image:.3f} | {speedup} |")
    if "custom" not in impls:
        print()
        print(f"custom op library not available: {ops.status()}")


if __name__ == "__main__":
    main()
