"""``gfla demo``'s API: results equal ``gfla generate``'s, bad requests get a 400 naming the
field, limits hold before decoding, concurrent requests stay apart, and the CLI's errors."""

import base64
import concurrent.futures
import io
import json
import os
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from gfla_tf import demo  # noqa: E402
from gfla_tf.cli import demo as demo_cli  # noqa: E402
from gfla_tf.cli.generate import generate  # noqa: E402
from gfla_tf.data import keypoints as kp  # noqa: E402
from gfla_tf.export import load_predictor, testing  # noqa: E402

PHOTO_SIZE = (48, 40)  # (height, width): not the model's 32x32, so the resize path runs


def _png_b64(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_png(text):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def _request(seed, size=PHOTO_SIZE):
    photo, source, target = testing.random_request(1, size, seed=seed)
    return photo[0], source[0], target[0]


def _payload(photo, source, target):
    return {
        "image": _png_b64(photo),
        "source_keypoints": source.tolist(),
        "target_keypoints": target.tolist(),
    }


class _Server:
    """uvicorn serving an app in a thread of this process, on a free local port."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    model_path = str(root / "generator.keras")
    testing.tiny_generator(seed=6).save(model_path)
    predictor = load_predictor(model_path)
    service = demo.DemoService(predictor, model_path)
    server = _Server(demo.create_app(service))
    client = httpx.Client(base_url=server.url, timeout=120)
    yield {"root": root, "model": model_path, "predictor": predictor, "client": client}
    client.close()
    server.close()


def _post(setup, payload=None, **kwargs):
    if payload is not None:
        kwargs["content"] = json.dumps(payload)
    return setup["client"].post("/api/v1/generate", **kwargs)


def test_info(setup):
    info = setup["client"].get("/api/v1/info").json()
    assert info["image_size"] == [32, 32]
    assert info["model"] == {"path": setup["model"], "format": "keras"}
    assert info["keypoint_names"] == list(kp.KEYPOINT_NAMES)
    assert info["edges"] == [list(limb) for limb in kp.LIMBS]
    assert len(info["edge_colours"]) == len(kp.LIMBS)
    assert len(info["joint_colours"]) == 18
    names = info["keypoint_names"]
    assert [names[a] + names[b] for a, b in info["mirror_pairs"]][:2] == ["RshoLsho", "RelbLelb"]
    assert len(info["mirror_pairs"]) == 8
    assert info["limits"]["body_bytes"] == demo.MAX_BODY_BYTES


def test_generate_equals_gfla_generate(setup):
    photo, source, target = _request(seed=1)
    response = _post(setup, _payload(photo, source, target))
    assert response.status_code == 200, response.text
    result = response.json()
    expected = generate(setup["predictor"], photo, source, target)
    image = _decode_png(result["image"])
    assert image.shape == PHOTO_SIZE + (3,)
    np.testing.assert_array_equal(image, expected["image"])
    assert result["size"] == list(PHOTO_SIZE)
    # One flow and one mask panel per attention scale (1/8, 1/4), at the photo's size.
    assert [f["scale"] for f in result["flows"]] == ["1/8", "1/4"]
    assert [m["scale"] for m in result["masks"]] == ["1/8", "1/4"]
    for panel in result["flows"] + result["masks"]:
        assert _decode_png(panel["image"]).shape == PHOTO_SIZE + (3,)
    assert _decode_png(result["flow_legend"]).shape == (64, 64, 3)
    assert result["flow_max"] > 0
    assert result["ms"] > 0


def test_eight_concurrent_requests(setup):
    requests = [_request(seed=10 + i) for i in range(8)]
    expected = [generate(setup["predictor"], *r)["image"] for r in requests]
    # All different, so a result given to the wrong request would be seen.
    assert all(np.abs(expected[0].astype(int) - e).max() > 0 for e in expected[1:])
    barrier = threading.Barrier(8)

    def send(request):
        barrier.wait()
        return _post(setup, _payload(*request))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, requests))
    for response, want in zip(responses, expected):
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(_decode_png(response.json()["image"]), want)


def _good():
    photo, source, target = _request(seed=2, size=(32, 32))
    return _payload(photo, source, target)


def _with(**changes):
    payload = _good()
    payload.update(changes)
    return payload


def _points(count=18, value=10.0):
    return [[value, value]] * count


BAD_REQUESTS = {
    "not an image": (
        lambda: _with(image=base64.b64encode(b"just some text").decode()),
        "image",
        "not an image",
    ),
    "not base64": (lambda: _with(image="***"), "image", "not valid base64"),
    "image not a string": (lambda: _with(image=[1, 2]), "image", "expected a base64 string"),
    "wrong keypoint count": (
        lambda: _with(source_keypoints=_points(17)),
        "source_keypoints",
        "expected 18 [x, y] points, got 17",
    ),
    "NaN": (
        lambda: _with(target_keypoints=[[float("nan"), 3.0]] + _points(17)),
        "target_keypoints",
        "point 0 has a NaN or infinite coordinate",
    ),
    "infinity": (
        lambda: _with(target_keypoints=_points(5) + [[1.0, float("inf")]] + _points(12)),
        "target_keypoints",
        "point 5 has a NaN or infinite coordinate",
    ),
    "null (a NaN from JavaScript)": (
        lambda: _with(source_keypoints=[[None, 3]] + _points(17)),
        "source_keypoints",
        "point 0 has a non-number (null)",
    ),
    "not a pair": (
        lambda: _with(source_keypoints=[[1, 2, 3]] + _points(17)),
        "source_keypoints",
        "point 0 is not an [x, y] pair",
    ),
    "boolean": (
        lambda: _with(source_keypoints=[[True, 2]] + _points(17)),
        "source_keypoints",
        "non-number (bool)",
    ),
    "missing field": (
        lambda: {k: v for k, v in _good().items() if k != "target_keypoints"},
        "target_keypoints",
        "missing",
    ),
    "unknown field": (lambda: _with(imgae="x"), "imgae", "unknown field"),
    "not an object": (lambda: [1, 2], "body", "expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request(setup, case):
    make, field, problem = BAD_REQUESTS[case]
    response = _post(setup, make())
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == field
    assert problem in body["problem"]
    assert body["error"].startswith(f"{field}: ")


def test_not_json(setup):
    response = _post(setup, content=b"{not json")
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert "not valid JSON" in response.json()["problem"]


def test_body_too_large(setup):
    response = _post(setup, content=b" " * (demo.MAX_BODY_BYTES + 1))
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert "too large" in response.json()["problem"]
    # Without a Content-Length (chunked), the stream is cut at the limit.
    chunks = (b" " * (1 << 20) for _ in range(demo.MAX_BODY_BYTES // (1 << 20) + 2))
    response = _post(setup, content=chunks)
    assert response.status_code == 400
    assert response.json()["field"] == "body"


def test_body_refused_from_its_header(setup):
    """A declared oversize body is refused before a byte of it is sent."""
    host, port = setup["client"].base_url.host, setup["client"].base_url.port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
        head, _, body = reply.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["field"] == "body"


def test_image_limits_before_decoding():
    # Too much base64 is refused before decoding it (it is not even valid base64).
    limit = 4 * -(-demo.MAX_IMAGE_BYTES // 3)
    with pytest.raises(demo.RequestError, match="image: too large"):
        demo.service.decode_image("*" * (limit + 4))
    # A header that declares too many pixels is refused before the pixels are decoded:
    # the pixel data of this PNG is cut off, which decoding would report as corrupt.
    buffer = io.BytesIO()
    Image.new("RGB", (demo.MAX_IMAGE_SIDE + 1, 8)).save(buffer, format="PNG")
    truncated = base64.b64encode(buffer.getvalue()[:200]).decode()
    with pytest.raises(demo.RequestError, match=r"too large: 4097x8 pixels"):
        demo.service.decode_image(truncated)
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4200)).save(buffer, format="PNG")
    with pytest.raises(demo.RequestError, match=r"too large: 4000x4200"):
        demo.service.decode_image(base64.b64encode(buffer.getvalue()[:300]).decode())
    # Within the limits, a cut-off file is reported as such.
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, format="PNG")
    with pytest.raises(demo.RequestError, match="truncated or corrupt"):
        demo.service.decode_image(base64.b64encode(buffer.getvalue()[:60]).decode())


def test_image_formats_and_exif_orientation():
    photo = np.zeros((20, 30, 3), np.uint8)
    photo[:, :10] = 255
    for fmt in ("PNG", "JPEG", "WEBP"):
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format=fmt)
        text = base64.b64encode(buffer.getvalue()).decode()
        decoded = demo.service.decode_image(f"data:image/{fmt.lower()};base64,{text}")
        assert decoded.shape == (20, 30, 3), fmt
    # GIF is not accepted.
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="GIF")
    with pytest.raises(demo.RequestError, match="not an image"):
        demo.service.decode_image(base64.b64encode(buffer.getvalue()).decode())
    # EXIF orientation 6 (rotate 90 clockwise to display): the pixels as a browser shows.
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    decoded = demo.service.decode_image(base64.b64encode(buffer.getvalue()).decode())
    assert decoded.shape == (30, 20, 3)


def _post_pose(setup, data, name=None):
    params = {"name": name} if name else None
    return setup["client"].post("/api/v1/keypoints", content=data, params=params)


def test_pose_files_every_format(setup, tmp_path):
    points = np.stack([np.arange(18) * 2.0 + 1, np.arange(18) + 5.0], axis=-1)
    points[3] = -1
    expected = points.tolist()
    openpose = {"people": [{"pose_keypoints_2d": [v for p in points for v in (*p, 0.9)]}]}
    openpose["people"][0]["pose_keypoints_2d"][9:12] = [0, 0, 0]
    csv_path = tmp_path / "poses.csv"
    kp.write_annotation_csv(str(csv_path), {"a.jpg": points, "b.jpg": points[::-1]})
    one_row = tmp_path / "one.csv"
    kp.write_annotation_csv(str(one_row), {"only.jpg": points})
    cases = {
        "list": json.dumps(expected).encode(),
        "openpose": json.dumps(openpose).encode(),
        "csv one row": one_row.read_bytes(),
    }
    for name, data in cases.items():
        response = _post_pose(setup, data)
        assert response.status_code == 200, (name, response.text)
        np.testing.assert_allclose(response.json()["keypoints"], expected, err_msg=name)
    # A COCO-17 annotation maps to 18 points (the neck from the shoulders).
    coco = {"keypoints": [v for p in points[:17] for v in (*p, 2)]}
    response = _post_pose(setup, json.dumps(coco).encode())
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        response.json()["keypoints"], kp.coco17_to_18(np.asarray(points[:17]))
    )
    # A multi-row CSV: the named row, or a 400 that lists the rows to choose from.
    response = _post_pose(setup, csv_path.read_bytes(), name="b.jpg")
    assert response.status_code == 200
    assert response.json()["name"] == "b.jpg"
    assert response.json()["rows"] == 2
    assert response.json()["names"] == ["a.jpg", "b.jpg"]
    np.testing.assert_allclose(response.json()["keypoints"], points[::-1].tolist())
    for name in (None, "photo.jpg"):
        response = _post_pose(setup, csv_path.read_bytes(), name=name)
        assert response.status_code == 400
        assert response.json()["field"] == "name"
        assert response.json()["names"] == ["a.jpg", "b.jpg"]


def test_bad_pose_files(setup):
    for data, problem in (
        (b"{not json", "not valid JSON"),
        (b"[[1, 2], [3, 4]]", "keypoint list"),
        (b"\xff\xfe\x00garbage", "not a UTF-8 text file"),
        (b"   ", "empty pose file"),
        (b"name:keypoints_y:keypoints_x\n", "no rows"),
        (b'{"people": []}', "no person"),
    ):
        response = _post_pose(setup, data)
        assert response.status_code == 400, data
        body = response.json()
        assert body["field"] == "file"
        assert problem in body["problem"], body
        # The server's temporary file name is not shown.
        assert "gfla-demo-" not in body["error"]
    response = _post_pose(setup, b" " * (demo.MAX_POSE_FILE_BYTES + 1))
    assert response.status_code == 400
    assert response.json()["field"] == "body"


def test_page_and_static_files(setup):
    client = setup["client"]
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for text in ('for="source-photo">Source photo<', 'for="source-pose">Source pose<'):
        assert text in page.text
    assert 'alt="Generated image"' in page.text
    assert ">Generate</button>" in page.text
    # Nothing from elsewhere: no http(s) URL in the page, its script or its style sheet.
    for path in ("/", "/static/demo.js", "/static/demo.css"):
        response = client.get(path)
        assert response.status_code == 200
        assert "http://" not in response.text and "https://" not in response.text, path
    # Only the fixed files are served: no URL is mapped to the file system.
    for path in ("/static/index.html", "/static/../service.py", "/static/%2e%2e/app.py"):
        assert client.get(path).status_code == 404


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from gfla_tf.data import synthetic

    root = tmp_path_factory.mktemp("synth") / "data"
    return synthetic.generate_dataset(str(root), 2, num_test_pairs=2, size=32)


def test_gallery_from_synthetic_dataset(synth_root, setup):
    root = synth_root
    gallery = demo.load_gallery(root, max_poses=3, max_samples=2)
    assert 0 < len(gallery.poses) <= 3
    assert len(gallery.samples) == 2
    assert all(p["frame"] == [32, 32] for p in gallery.poses)
    assert all(len(p["keypoints"]) == 18 for p in gallery.poses)
    service = demo.DemoService(setup["predictor"], setup["model"], gallery)
    server = _Server(demo.create_app(service))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            listing = client.get("/api/v1/gallery").json()
            assert len(listing["poses"]) == len(gallery.poses)
            assert [s["index"] for s in listing["samples"]] == [0, 1]
            assert "data" not in listing["samples"][0]
            photo = client.get("/api/v1/samples/1")
            assert photo.status_code == 200
            assert photo.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(photo.content)).size == (32, 32)
            assert client.get("/api/v1/samples/2").status_code == 404
            assert client.get("/api/v1/info").json()["gallery"] == {"poses": 3, "samples": 2}
    finally:
        server.close()
    # An annotation CSV alone (its images next to it) works too.
    csv_file = os.path.join(root, "fashion-annotation-test.csv")
    assert len(demo.load_gallery(csv_file, max_samples=1).samples) == 1


def test_gallery_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--poses: not found"):
        demo.load_gallery(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="holds no annotation CSV"):
        demo.load_gallery(str(tmp_path))


def test_default_model_path(tmp_path):
    workdir = str(tmp_path / "quickstart")
    assert demo.default_model_path(workdir) is None
    os.makedirs(os.path.join(workdir, "stage2"))
    keras_file = os.path.join(workdir, "stage2", "generator.keras")
    with open(keras_file, "wb") as f:
        f.write(b"")
    assert demo.default_model_path(workdir) == keras_file
    # A version folder without a SavedModel (an export in progress) is not taken.
    os.makedirs(os.path.join(workdir, "export", "1"))
    assert demo.default_model_path(workdir) == keras_file
    # A complete version (a saved_model.pb is what TensorFlow looks for) is.
    os.makedirs(os.path.join(workdir, "export", "2"))
    with open(os.path.join(workdir, "export", "2", "saved_model.pb"), "wb") as f:
        f.write(b"")
    assert demo.default_model_path(workdir) == os.path.join(workdir, "export")


def test_cli_errors(tmp_path, monkeypatch, capsys, setup):
    monkeypatch.chdir(tmp_path)
    assert demo_cli.main(["gfla demo"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pass --model PATH" in err and "gfla quickstart" in err
    assert demo_cli.main(["gfla demo", "--model", "missing.keras"]) == 1
    assert capsys.readouterr().err.strip() == "gfla demo: model not found: missing.keras"
    assert demo_cli.main(["gfla demo", "--model", setup["model"], "--poses", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "gfla demo: --poses: not found: nope"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert demo_cli.main(["gfla demo", "--model", setup["model"], "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gfla demo: cannot listen on 127.0.0.1:{port}"), err
    assert demo_cli._parser("gfla demo").parse_args([]).host == "127.0.0.1"


def test_cli_quickstart_defaults(tmp_path, monkeypatch, capsys, setup, synth_root):
    """Without --model: the quickstart's model, and its synthetic people as the gallery."""
    import shutil

    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.join("runs", "quickstart", "stage2"))
    shutil.copy(setup["model"], os.path.join("runs", "quickstart", "stage2", "generator.keras"))
    shutil.copytree(synth_root, os.path.join("runs", "quickstart", "data"))
    served = {}

    def run(server, sockets):
        served["app"], served["address"] = server.config.app, sockets[0].getsockname()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert demo_cli.main(["gfla demo", "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert f"model: {os.path.join('runs', 'quickstart', 'stage2', 'generator.keras')}" in out
    assert f"poses: {os.path.join('runs', 'quickstart', 'data')} (" in out
    assert served["address"][0] == "127.0.0.1"
    assert f"serving on http://127.0.0.1:{served['address'][1]}/" in out


def test_inference_is_serialised(setup):
    """Requests never run the model at the same time (a TFLite interpreter is not
    thread-safe): a predictor that notices overlapping calls is never overlapped."""
    predictor = setup["predictor"]
    state = {"inside": 0, "overlaps": 0, "calls": 0}
    guard = threading.Lock()

    class Watching(type(predictor)):
        def __init__(self):  # shares the loaded model
            self.__dict__.update(predictor.__dict__)

        def _run(self, *inputs):
            with guard:
                state["inside"] += 1
                state["overlaps"] += state["inside"] > 1
                state["calls"] += 1
            time.sleep(0.05)  # widen the window an unserialised server would hit
            try:
                return super()._run(*inputs)
            finally:
                with guard:
                    state["inside"] -= 1

    service = demo.DemoService(Watching(), setup["model"])
    requests = [_request(seed=30 + i) for i in range(8)]
    barrier = threading.Barrier(8)

    def send(request):
        barrier.wait()
        return service.generate(_payload(*request))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, requests))
    assert state["calls"] == 8 and state["overlaps"] == 0, state
    for result, request in zip(results, requests):
        want = generate(predictor, *request)["image"]
        np.testing.assert_array_equal(_decode_png(result["image"]), want)


def test_panel_size():
    assert demo.service._panel_size((48, 40)) == (48, 40)
    assert demo.service._panel_size((1024, 768)) == (256, 192)
    assert demo.service._panel_size((3, 4000)) == (1, 256)


def test_single_pose_file_gallery(tmp_path):
    path = tmp_path / "target.json"
    path.write_text(json.dumps([[5.0 + i, 10.0] for i in range(18)]))
    gallery = demo.load_gallery(str(path))
    assert gallery.samples == []
    assert gallery.poses[0]["name"] == "target.json"
    assert gallery.poses[0]["frame"] is None  # in the photo's own pixels
    assert gallery.poses[0]["keypoints"][3] == [8.0, 10.0]


def test_loopback_server_answers_loopback_names_only(setup):
    from gfla_tf.demo.app import LOOPBACK_HOSTS

    service = demo.DemoService(setup["predictor"], setup["model"])
    server = _Server(demo.create_app(service, allowed_hosts=LOOPBACK_HOSTS))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/api/v1/info").status_code == 200
            port = client.base_url.port
            assert client.get("/", headers={"Host": f"localhost:{port}"}).status_code == 200
            rebound = client.get("/api/v1/info", headers={"Host": f"evil.example:{port}"})
            assert rebound.status_code == 400
    finally:
        server.close()
