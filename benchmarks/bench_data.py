"""Data throughput: synthetic generation and the tf.data input pipeline.

Measures, in one process:

1. Synthetic dataset generation (render, flows, PNG writes) at 64x64, pairs per second.
2. The input pipeline at 256x256, pairs per second (decode, resize, keypoint scaling,
   36 heatmaps per pair, batching), on fixtures made from a 256x256 synthetic set:
   a DeepFashion-like copy (JPEG, 176x256 images, squashed to 256x256 on load) and the
   synthetic set itself (PNG plus ground-truth flow PNGs).

Usage::

    python benchmarks/bench_data.py [--gen-pairs 1000] [--pipeline-pairs 200]

Prints a markdown table to stdout.
"""

import argparse
import logging
import os
import platform
import tempfile
import time

import numpy as np
from PIL import Image

from gfla_tf import data
from gfla_tf.configs import deepfashion
from gfla_tf.data import synthetic


def _rates(count, wall_start, cpu_start):
    """(per wall second, per CPU second of this process, all threads)."""
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    return count / wall, count / cpu


def bench_generation(workdir, pairs, size):
    wall, cpu = time.perf_counter(), time.process_time()
    synthetic.generate_dataset(os.path.join(workdir, f"gen{size}"), pairs, 0, size=size, seed=1)
    return _rates(pairs, wall, cpu)


def make_deepfashion_copy(synth_root, out_root):
    """Copies a synthetic set into the DeepFashion layout: JPEG, 176x256 images."""
    os.makedirs(out_root, exist_ok=True)
    for split in ("train",):
        os.makedirs(os.path.join(out_root, split), exist_ok=True)
        keypoints, _ = data.read_annotation_csv(
            os.path.join(synth_root, f"fashion-annotation-{split}.csv")
        )
        renamed = {}
        for name, points in keypoints.items():
            image = Image.open(os.path.join(synth_root, split, name)).convert("RGB")
            size = image.size[1]
            jpeg = os.path.splitext(name)[0] + ".jpg"
            image.resize((176, 256), Image.BILINEAR).save(
                os.path.join(out_root, split, jpeg), quality=95
            )
            renamed[jpeg] = data.scale_keypoints(points, (size, size), (256, 176))
        data.write_annotation_csv(
            os.path.join(out_root, f"fashion-annotation-{split}.csv"), renamed
        )
        with open(os.path.join(synth_root, f"fashion-pairs-{split}.csv")) as f:
            text = f.read().replace(".png", ".jpg")
        with open(os.path.join(out_root, f"fashion-pairs-{split}.csv"), "w") as f:
            f.write(text)
    return out_root


def bench_pipeline(data_config, batch_size, batches, warmup=5):
    ds = data.build_dataset(data_config, "train", batch_size, (256, 256))
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        batch = next(iterator)
    np.asarray(batch["source_pose"])  # make sure the last batch is materialised
    return _rates(batches * batch_size, wall, cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gen-pairs", type=int, default=1000)
    parser.add_argument("--pipeline-pairs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        rows.append(
            (
                "synthetic generation, 64x64 (1 process)",
                *bench_generation(workdir, args.gen_pairs, 64),
                ">= 200",
            )
        )
        rows.append(
            (
                "synthetic generation, 256x256 (1 process)",
                *bench_generation(workdir, max(args.gen_pairs // 10, 10), 256),
                "-",
            )
        )

        synth_root = synthetic.generate_dataset(
            os.path.join(workdir, "synth256"), args.pipeline_pairs, 0, size=256, seed=2
        )
        df_root = make_deepfashion_copy(synth_root, os.path.join(workdir, "df256"))
        config = deepfashion.get_config().data
        config.root = df_root
        rows.append(
            (
                "input pipeline, DeepFashion layout (JPEG 176x256 -> 256x256)",
                *bench_pipeline(config, args.batch_size, args.batches),
                ">= 150",
            )
        )
        config = deepfashion.get_config().data
        config.kind, config.root = "synthetic", synth_root
        rows.append(
            (
                "input pipeline, synthetic 256x256 PNG + flow",
                *bench_pipeline(config, args.batch_size, args.batches),
                "-",
            )
        )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (os.cpu_count), Python "
        f"{platform.python_version()}, load average {load:.1f} at the end; batch "
        f"{args.batch_size}, {args.batches} timed batches after 5 warm-up batches. "
        "'per CPU-s' divides by the CPU time of this process (all threads), which does not "
        "depend on other load; 'per wall-s' is what this run saw.\n"
    )
    print("| measurement | pairs per wall-s | pairs per CPU-s | target (pairs/s) |")
    print("|---|---:|---:|---:|")
    for name, wall, cpu, target in rows:
        print(f"| {name} | {wall:.0f} | {cpu:.0f} | {target} |")


if __name__ == "__main__":
    main()
