"""Throughput of the evaluation metrics (images per second) with random weights.

Measures, at one resolution and batch size, each metric as ``gfla evaluate`` runs it (a
``tf.function`` over a batch, after one warm-up call): SSIM + PSNR, LPIPS (AlexNet, the
pair of images per example), FID feature extraction under both protocols (the gfla
protocol's torchvision Inception-v3 port and Keras' InceptionV3, at 299x299 after the
bilinear resize) and the flow metrics (full-resolution EPE of the 1/8 and 1/4 flows plus
warped-source SSIM). The paper's SSIM variants run in scikit-image on the host (not here).
Weights are random: the cost does not depend on their values. Prints a markdown table.

Usage::

    python benchmarks/bench_eval.py [--size 256] [--batch-size 8] [--repeats 3]
"""

import argparse
import os
import time

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gfla_tf.evaluation import (  # noqa: E402
    FID,
    LPIPS,
    endpoint_error_sums,
    psnr,
    ssim,
    upsample_flow,
    warped_ssim,
)


def _time(fn, args, repeats):
    fn(*args)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy(), result)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _tf_ssim(a, b):
    return tf.image.ssim((a + 1.0) * 127.5, (b + 1.0) * 127.5, max_val=255.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size, batch = args.size, args.batch_size
    rng = np.random.RandomState(0)
    fake = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
    real = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
    gt_flow = tf.constant(rng.uniform(-4, 4, (batch, size, size, 2)).astype(np.float32))
    visible = tf.ones((batch, size, size, 1))
    flows = [tf.constant(rng.uniform(-1, 1, (batch, size // f, size // f, 2))) for f in (8, 4)]
    flows = [tf.cast(f, tf.float32) for f in flows]

    lpips = LPIPS()
    fid = FID(weights=None, protocol="gfla")
    fid_keras = FID(weights=None, protocol="keras")

    def flow_metrics(source, target, gt, vis, predicted):
        out = []
        for flow in predicted:
            full = upsample_flow(flow, (size, size))
            out.append(endpoint_error_sums(full, gt, vis))
            out.append(warped_ssim(source, target, flow, vis))
        return out

    cases = [
        ("SSIM + PSNR", lambda a, b: (ssim(a, b), psnr(a, b)), (fake, real)),
        # image_metrics.ssim is tf.image.ssim plus the [0, 255] frame and range scaling:
        # this row is the bare call, for the cost of that wrapping.
        (
            "bare tf.image.ssim + PSNR",
            lambda a, b: (_tf_ssim(a, b), psnr(a, b)),
            (fake, real),
        ),
        ("LPIPS (AlexNet, per pair)", lambda a, b: lpips((a, b)), (fake, real)),
        ("FID features, gfla (torchvision Inception-v3 @299)", fid.extract_tensor, (fake,)),
        ("FID features, keras (InceptionV3 @299)", fid_keras.extract_tensor, (fake,)),
        ("EPE + warped SSIM (2 scales)", flow_metrics, (fake, real, gt_flow, visible, flows)),
    ]
    rows = []
    for name, fn, fn_args in cases:
        seconds = _time(tf.function(fn, autograph=False), fn_args, args.repeats)
        rows.append((name, seconds * 1000.0, batch / seconds))

    print(f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, TensorFlow {tf.__version__}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Images {size}x{size}, batch {batch}, median of {args.repeats} runs, random weights; "
        f"1-minute load average at the end: {load:.1f}.\n"
    )
    print("| metric | ms / batch | images / s |")
    print("|---|---:|---:|")
    for name, ms, rate in rows:
        print(f"| {name} | {ms:.1f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
