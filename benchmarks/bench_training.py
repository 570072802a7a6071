"""Training-step throughput of GFLA: custom vs reference local-attention op, and where the
step time goes (local attention blocks, sampling correctness loss).

For each configuration (the quickstart's synthetic 64x64 and DeepFashion 256x256) it
times the stage-2 train step (discriminator + generator update, the most expensive step)
and the stage-1 step, with the generator built on the custom op and on the pure-TF
reference op, in one process. Shares are measured by ablation in the same process:

* correctness loss: the stage-2 step with ``correctness`` weight 0, versus the full step;
* local attention: forward + backward of ``gfla_tf.ops.local_attention`` alone at the
  exact shapes of the generator's attention calls, as a fraction of the step.

Prints a markdown table. Example::

    python benchmarks/bench_training.py                 # both configurations
    python benchmarks/bench_training.py --configs synthetic --steps 5
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gfla_tf import ops, training  # noqa: E402
from gfla_tf.configs import deepfashion, synthetic  # noqa: E402


def _batch(config, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    h, w, k = config.model.image_height, config.model.image_width, config.model.num_keypoints
    return {
        "source_image": tf.constant(rng.uniform(-1, 1, (batch_size, h, w, 3)), tf.float32),
        "target_image": tf.constant(rng.uniform(-1, 1, (batch_size, h, w, 3)), tf.float32),
        "source_pose": tf.constant(rng.uniform(0, 1, (batch_size, h, w, k)), tf.float32),
        "target_pose": tf.constant(rng.uniform(0, 1, (batch_size, h, w, k)), tf.float32),
        # Ground truth for the quickstart's flow supervision (the synthetic data has it).
        "flow": tf.constant(rng.uniform(-4, 4, (batch_size, h, w, 2)), tf.float32),
        "visibility": tf.constant(
            (rng.uniform(0, 1, (batch_size, h, w, 1)) > 0.2).astype("float32")
        ),
    }


def _time(fn, steps):
    fn()  # trace + warm-up
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        out = fn()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
    return (time.perf_counter() - start) / steps


def step_time(config, stage, impl, batch, steps, weights=None):
    """Seconds per train step of a freshly built trainer."""
    config = config.copy_and_resolve_references()
    config.train.stage = stage
    if weights:
        config.loss[f"stage{stage}"].update(weights)
    trainer = training.build_trainer(config, impl=impl)
    step = tf.function(trainer.train_step)
    return _time(lambda: step(batch), steps), trainer


def attention_time(trainer, batch_size, impl, steps):
    """Seconds for forward + backward of every local-attention call of one generator pass."""
    generator = trainer.generator
    h, w = generator.image_height, generator.image_width
    config_model = generator.get_config()
    ngf = config_model["renderer_ngf"]
    max_channels = config_model["renderer_max_channels"]
    calls = []
    for scale, k in zip(generator.attention_scales, generator.kernel_sizes):
        level = int(np.log2(scale))  # 1/2 -> ngf, 1/4 -> 2 ngf, 1/8 -> 4 ngf
        channels = min(ngf * 2 ** (level - 1), max_channels)
        shape = (batch_size, h // scale, w // scale)
        calls.append((shape, channels, k))
    rng = np.random.default_rng(0)
    tensors = []
    for shape, channels, k in calls:
        tensors.append(
            (
                tf.constant(rng.normal(size=shape + (channels,)), tf.float32),
                tf.constant(rng.normal(size=shape + (2,)), tf.float32),
                tf.constant(rng.uniform(size=shape + (k * k,)), tf.float32),
                k,
            )
        )

    @tf.function
    def run():
        grads = []
        for source, flow, attention, k in tensors:
            with tf.GradientTape() as tape:
                tape.watch([source, flow, attention])
                out = ops.local_attention(source, flow, attention, k, impl=impl)
                loss = tf.reduce_sum(out)
            grads += tape.gradient(loss, [source, flow, attention])
        return grads

    # The generator runs attention once per stage-2 step forward (plus its backward).
    return _time(run, steps)


_MEMORY_CHILD = """
import resource, sys, tensorflow as tf
from gfla_tf import losses
b, n, c, chunk = (int(a) for a in sys.argv[1:5])
side = int(n ** 0.5)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = tf.random.uniform([b, side, side, c])
t = tf.random.uniform([b, side, side, c])
f = tf.Variable(tf.zeros([b, side, side, 2]))
@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.sampling_correctness_loss(s, t, f, chunk_size=chunk))
    return tape.gradient(loss, f)
step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0)
"""


def correctness_memory(batch, chunks):
    """Peak RSS growth (MiB) of the correctness loss + gradient at relu3_1 of 256x256."""
    import subprocess
    import sys

    results = []
    for chunk in chunks:
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, str(batch), "4096", "256", str(chunk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        results.append((chunk, float(out)))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="synthetic,deepfashion")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--deepfashion-batch", type=int, default=1)
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    impls = ["custom", "reference"] if ops.library_available() else ["reference"]
    memory = correctness_memory(8, [0, 1024, 256])
    print("Correctness loss + flow gradient, relu3_1 of a 256x256 batch of 8 (64x64x256):\n")
    print("| chunk (target positions) | peak RSS growth, MiB |")
    print("|---|---|")
    for chunk, mib in memory:
        print(f"| {chunk or 'none (full 4096x4096 per sample)'} | {mib:.0f} |")
    if args.memory_only:
        return
    rows = []
    for name in args.configs.split(","):
        if name == "synthetic":
            config = synthetic.get_config()
            batch_size = config.train.batch_size
        else:
            config = deepfashion.get_config()
            batch_size = args.deepfashion_batch
        config.loss.vgg_weights = "random"  # same cost as ImageNet weights, no download
        # Each configuration is timed with its own losses: the paper's for DeepFashion; the
        # quickstart's (flow supervision instead of the VGG losses) for synthetic.
        correctness_on = bool(config.loss.stage2.correctness)
        batch = _batch(config, batch_size)
        steps = args.steps if name == "synthetic" else max(2, args.steps // 2)
        for impl in impls:
            t1, _ = step_time(config, 1, impl, batch, steps)
            t2, trainer = step_time(config, 2, impl, batch, steps)
            t2_nocorr = (
                step_time(config, 2, impl, batch, steps, {"correctness": 0.0})[0]
                if correctness_on
                else None
            )
            t_attn = attention_time(trainer, batch_size, impl, steps)
            rows.append(
                (
                    name,
                    f"{config.model.image_height}x{config.model.image_width}",
                    batch_size,
                    impl,
                    1.0 / t1,
                    1.0 / t2,
                    batch_size / t2,
                    100.0 * t_attn / t2,
                    f"{100.0 * max(t2 - t2_nocorr, 0.0) / t2:.0f}%" if correctness_on else "off",
                )
            )
            print(f"# done {name} {impl}", flush=True)
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"TF {tf.__version__}; {args.steps} timed steps after 2 warm-up steps.\n"
    )
    print(
        "| config | image | batch | op | stage-1 steps/s | stage-2 steps/s | stage-2 "
        "examples/s | local attention share of stage-2 step | correctness loss share |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| {} | {} | {} | {} | {:.2f} | {:.2f} | {:.2f} | {:.0f}% | {} |".format(*row))


if __name__ == "__main__":
    main()
