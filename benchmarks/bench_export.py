"""Export formats compared: file size, CPU latency and error of SavedModel and TFLite.

Builds the full DeepFashion generator (256x256, random weights rescaled so that images
and flows are not trivially constant), exports it as a SavedModel (reference op path,
as ``gfla export`` does) and converts that to TFLite float32, float16 and dynamic-range
int8. Each format is timed on the same uint8 image + keypoint request (batch 1), all in
one process, and its float image (``heatmaps`` signature, [-1, 1]) is compared with the
Keras model's. Prints a markdown table.

    python benchmarks/bench_export.py [--size 256] [--repeats 7] [--threads N]

TFLite runs with LiteRT (XNNPACK) on ``--threads`` threads (default: all cores, as
TensorFlow uses).
"""

import argparse
import os
import statistics
import tempfile
import time

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gfla_tf import export, models  # noqa: E402
from gfla_tf.configs import deepfashion  # noqa: E402
from gfla_tf.export import signatures, testing  # noqa: E402


def _size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--modes", nargs="+", default=["none", "float16", "dynamic"])
    args = parser.parse_args()
    from ai_edge_litert.interpreter import Interpreter

    config = deepfashion.get_config().model
    config.image_height = config.image_width = args.size
    generator = models.build_generator(config, impl="reference")
    testing.randomize_weights(generator, seed=0, gain=1.0)
    # float64 copy: the rounding floor of float32 itself, to put the errors in scale.
    generator64 = models.build_generator(config, impl="reference", dtype="float64")
    generator64.set_weights([w.astype(np.float64) for w in generator.get_weights()])
    size = (args.size, args.size)
    images, source, target = testing.random_request(1, size, seed=0)
    float_inputs = {
        "source_image": (images / 127.5 - 1.0).astype(np.float32),
        "source_pose": np.asarray(
            signatures.keypoints_to_heatmaps(source, args.size, args.size), np.float32
        ),
        "target_pose": np.asarray(
            signatures.keypoints_to_heatmaps(target, args.size, args.size), np.float32
        ),
    }
    reference = np.asarray(generator(float_inputs, training=False)["image"], np.float64)
    truth = np.asarray(
        generator64({k: v.astype(np.float64) for k, v in float_inputs.items()})["image"]
    )

    def errors(image):
        image = np.asarray(image, np.float64)
        return float(np.max(np.abs(image - reference))), float(np.max(np.abs(image - truth)))

    # name -> [file bytes, build seconds, (error vs Keras, error vs float64), run callable]
    formats = {}
    with tempfile.TemporaryDirectory(prefix="gfla-bench-export-") as tmp:
        keras_predictor = export.KerasPredictor(generator)
        formats["Keras (tf.function, reference op)"] = [
            None,
            None,
            errors(reference),
            lambda: keras_predictor.predict(images, source, target),
        ]

        start = time.perf_counter()
        saved = export.export_saved_model(generator, os.path.join(tmp, "saved"))
        export_s = time.perf_counter() - start
        loaded = tf.saved_model.load(saved)
        serve = loaded.signatures["serving_default"]
        tensors = {
            "source_image": tf.constant(images),
            "source_keypoints": tf.constant(source),
            "target_keypoints": tf.constant(target),
        }
        heat_out = loaded.signatures["heatmaps"](
            **{k: tf.constant(v) for k, v in float_inputs.items()}
        )
        formats["SavedModel"] = [
            _size_of(saved),
            export_s,
            errors(heat_out["image"]),
            lambda: serve(**tensors)["image"].numpy(),
        ]

        for mode in args.modes:
            start = time.perf_counter()
            path = export.export_tflite(saved, os.path.join(tmp, f"gfla_{mode}.tflite"), mode)
            convert_s = time.perf_counter() - start
            interpreter = Interpreter(model_path=path, num_threads=args.threads)
            runner = interpreter.get_signature_runner("serving_default")
            heat_runner = interpreter.get_signature_runner("heatmaps")
            label = {"none": "float32", "float16": "float16", "dynamic": "dynamic int8"}[mode]
            formats[f"TFLite {label}"] = [
                os.path.getsize(path),
                convert_s,
                errors(heat_runner(**float_inputs)["image"]),
                lambda runner=runner: runner(
                    source_image=images, source_keypoints=source, target_keypoints=target
                ),
            ]

        # Interleaved rounds, so that load from other jobs on a shared machine hits every
        # format alike; one warm-up call each first (tracing, delegate preparation).
        times = {name: [] for name in formats}
        for entry in formats.values():
            entry[3]()
        for _ in range(args.repeats):
            for name, entry in formats.items():
                start = time.perf_counter()
                entry[3]()
                times[name].append(time.perf_counter() - start)

    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"Export formats, DeepFashion generator at {args.size}x{args.size}, batch 1 "
        f"(uint8 image + keypoints in, uint8 image out), "
        f"{models.count_params(generator) / 1e6:.2f} M parameters (random weights); "
        f"median of {args.repeats} interleaved rounds; {cpu_name()}, {os.cpu_count()} cores, "
        f"TensorFlow {tf.__version__}, TFLite (LiteRT, XNNPACK) threads {args.threads}\n"
    )
    print(
        "| format | file size (MB) | latency (ms) | vs SavedModel | max abs error vs Keras "
        "float32 | max abs error vs float64 | export / convert time (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (nbytes, build_s, (err, err64), _) in formats.items():
        size_text = "-" if nbytes is None else f"{nbytes / 1e6:.1f}"
        build_text = "-" if build_s is None else f"{build_s:.0f}"
        print(
            f"| {name} | {size_text} | {median[name] * 1e3:.0f} | "
            f"{median[name] / median['SavedModel']:.2f}x | {err:.1e} | {err64:.1e} | "
            f"{build_text} |"
        )
    print(
        "\nErrors: the float image ([-1, 1]) of the `heatmaps` signature against the Keras "
        "model in float32 and in float64, same weights and inputs."
    )


if __name__ == "__main__":
    main()
