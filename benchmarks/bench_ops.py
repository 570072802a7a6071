"""Benchmarks the local-attention op: compiled CPU kernel vs the pure-TF reference.

Cases are the DeepFashion attention layers at 256x256 (k=3 on 32x32 with C=256, k=5 on
64x64 with C=128), batch 2, float32, forward + backward (gradients w.r.t. source, flow and
attention) inside one ``tf.function``.

Method: every (case, impl) runs in a fresh subprocess, so allocator caches and peak RSS
of one measurement cannot leak into another. The worker builds the inputs and traces the
function, reads the peak RSS (``ru_maxrss``) as its baseline, then runs one warm-up and
``--repeats`` timed steps; "peak memory" is the growth of the peak RSS over the baseline,
i.e. the extra host memory the step needs (TF's CPU allocator keeps no statistics, so
``tf.config.experimental.get_memory_info`` cannot be used on CPU). Time is the median
step. Run::

    python benchmarks/bench_ops.py [--repeats 5] [--batch 2]

and paste the printed markdown into benchmarks/RESULTS.md.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs

CASES = {
    "k=3, 32x32, C=256": (3, 32, 256),
    "k=5, 64x64, C=128": (5, 64, 128),
}


def _worker(case, impl, batch, repeats):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from gfla_tf import ops

    k, size, channels = CASES[case]
    rng = np.random.default_rng(0)
    source = tf.constant(rng.normal(size=(batch, size, size, channels)), tf.float32)
    flow = tf.constant(rng.normal(size=(batch, size, size, 2)) * 4.0, tf.float32)
    attention = tf.constant(rng.random((batch, size, size, k * k)), tf.float32)
    upstream = tf.constant(rng.normal(size=(batch, size, size, channels)), tf.float32)

    @tf.function
    def step(s, f, a):
        with tf.GradientTape() as tape:
            tape.watch([s, f, a])
            out = ops.local_attention(s, f, a, k, impl=impl)
            loss = tf.reduce_sum(out * upstream)
        return tape.gradient(loss, [s, f, a])

    step.get_concrete_function(source, flow, attention)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    [g.numpy() for g in step(source, flow, attention)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [g.numpy() for g in step(source, flow, attention)]
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "time_ms": 1e3 * statistics.median(times),
        "peak_mb": (peak_kb - base_kb) / 1024.0,
        "impl": ops.resolve_impl(impl),
    }


def _machine():
    import tensorflow as tf

    return f"{cpu_name()}, {os.cpu_count()} logical cores visible, TensorFlow {tf.__version__}"


def main(argv=None):
    """Runs every case in subprocesses and prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.batch, args.repeats)))
        return 0
    rows = []
    for case in CASES:
        result = {}
        for impl in ("custom", "reference"):
            proc = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    case,
                    impl,
                    "--repeats",
                    str(args.repeats),
                    "--batch",
                    str(args.batch),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((case, result))
    print(
        f"Machine: {_machine()}; batch {args.batch}, float32, forward+backward, "
        f"median of {args.repeats} steps; peak = growth of peak RSS in a fresh process.\n"
    )
    print(
        "| case | custom ms | reference ms | speed-up | custom peak MB | reference peak MB "
        "| memory ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case, r in rows:
        c, ref = r["custom"], r["reference"]
        speedup = ref["time_ms"] / c["time_ms"]
        ratio = c["peak_mb"] / ref["peak_mb"] if ref["peak_mb"] > 0 else float("nan")
        print(
            f"| {case} | {c['time_ms']:.1f} | {ref['time_ms']:.1f} | {speedup:.1f}x "
            f"| {c['peak_mb']:.1f} | {ref['peak_mb']:.1f} | {ratio:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
