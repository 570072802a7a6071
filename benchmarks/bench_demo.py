"""``gfla demo``'s request latency next to the bare predictor, in one process.

For the quickstart model (``configs/synthetic.py``, 64x64) and the DeepFashion model
(``configs/deepfashion.py``, 256x256), both with random weights (the time does not depend
on their values): exports a SavedModel (what ``gfla quickstart`` and ``gfla export`` give
the demo), loads it with ``load_predictor`` as ``gfla demo`` does, serves the demo app with
uvicorn in a thread of this process, and times in interleaved rounds:

* the bare predictor: ``predictor.predict`` on a uint8 batch of one at the model's size;
* ``POST /api/v1/generate`` end to end from an HTTP client: base64 + JSON encoding, image
  decoding and validation, the same prediction behind the lock with ``gfla generate``'s
  resize path, PNG encoding of the image and of the flow and mask panels, JSON decoding.

Photos: one at the model's size, and a 512x384 (height x width) JPEG as a phone photo
scaled down by the page would be. Prints a markdown table (medians).

    python benchmarks/bench_demo.py [--repeats 5] [--configs quickstart deepfashion]
"""

import argparse
import base64
import io
import os
import socket
import statistics
import tempfile
import threading
import time

from _machine import cpu_name  # benchmarks/ is on sys.path when a script runs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402

from gfla_tf import demo, export, models  # noqa: E402
from gfla_tf.configs import deepfashion, synthetic  # noqa: E402
from gfla_tf.export import testing  # noqa: E402

CONFIGS = {
    "quickstart": lambda: synthetic.get_config().model,
    "deepfashion": lambda: deepfashion.get_config().model,
}


def _serve(app):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _encoded(photo, fmt):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def bench_config(name, repeats, tmp):
    config = CONFIGS[name]()
    generator = models.build_generator(config)
    testing.randomize_weights(generator, seed=0, gain=1.0)
    size = (config.image_height, config.image_width)
    path = export.export_saved_model(generator, os.path.join(tmp, name))
    del generator
    predictor = export.load_predictor(os.path.join(tmp, name))
    service = demo.DemoService(predictor, path)
    server, thread, url = _serve(demo.create_app(service))
    rows = []
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            images, source, target = testing.random_request(1, size, seed=1)
            cases = {"bare predictor": lambda: predictor.predict(images, source, target)}
            requests = {
                f"{size[0]}x{size[1]} PNG (model size)": (images[0], "PNG"),
                "512x384 JPEG": (
                    np.asarray(Image.fromarray(images[0]).resize((384, 512), Image.BICUBIC)),
                    "JPEG",
                ),
            }
            server_ms = {}
            for label, (photo, fmt) in requests.items():
                scale = np.array([photo.shape[1] / size[1], photo.shape[0] / size[0]])
                body = {
                    "image": _encoded(photo, fmt),
                    "source_keypoints": (source[0] * scale).tolist(),
                    "target_keypoints": (target[0] * scale).tolist(),
                }
                server_ms[label] = []

                def post(body=body, label=label):
                    response = client.post("/api/v1/generate", json=body)
                    response.raise_for_status()
                    server_ms[label].append(response.json()["ms"])

                cases[f"POST /api/v1/generate, {label}"] = post
            times = {case: [] for case in cases}
            for run in cases.values():  # warm-up (tracing, first connection)
                run()
            for values in server_ms.values():
                values.clear()
            for _ in range(repeats):
                for case, run in cases.items():
                    start = time.perf_counter()
                    run()
                    times[case].append(1000.0 * (time.perf_counter() - start))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    bare = statistics.median(times["bare predictor"])
    for case, values in times.items():
        label = case.split(", ", 1)[1] if ", " in case else None
        median = statistics.median(values)
        inside = f"{statistics.median(server_ms[label]):.0f}" if label else "-"
        rows.append(
            f"| {name} ({size[0]}x{size[1]}) | {case} | {median:.0f} | {inside} | "
            f"{median / bare:.2f}x |"
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gfla-bench-demo-") as tmp:
        for name in args.configs:
            rows.extend(bench_config(name, args.repeats, tmp))
    print(
        f"gfla demo request latency vs the bare predictor (SavedModel, batch 1, random "
        f"weights); median of {args.repeats} interleaved rounds; {cpu_name()}, "
        f"{os.cpu_count()} cores, TensorFlow {tf.__version__}\n"
    )
    print("| model | call | latency (ms) | model time in the server (ms) | vs bare predictor |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        "\nModel time in the server: the response's `ms` (resize to the model's size, "
        "predict, resize back), inside the lock."
    )


if __name__ == "__main__":
    main()
