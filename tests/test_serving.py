"""REST and gRPC clients against in-process TF Serving stand-ins running the export."""

import socket
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import export
from gfla_tf.export import testing
from gfla_tf.serving import (
    DeadlineExceededError,
    GrpcClient,
    InvalidArgumentError,
    RestClient,
    ServingError,
    UnavailableError,
)

pytest.importorskip("tensorflow_serving.apis")
pytest.importorskip("grpc")
from gfla_tf.serving.testing import ServingStack  # noqa: E402

SIZE = (32, 32)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    export.export_saved_model(testing.tiny_generator(seed=4), str(root / "gfla"))
    with ServingStack(str(root / "gfla"), model_name="gfla") as running:
        yield running


@pytest.fixture(autouse=True)
def _reset_faults(stack):
    stack.backend.fail_first = 0
    stack.backend.delay = 0.0
    yield
    stack.backend.fail_first = 0
    stack.backend.delay = 0.0


def _direct(stack, request):
    """The SavedModel's own answer, without any server in between."""
    images, source, target = request
    return stack.backend.run(
        "serving_default",
        {"source_image": images, "source_keypoints": source, "target_keypoints": target},
    )


def _assert_same(got, want):
    np.testing.assert_array_equal(got["image"], want["image"])
    assert got["image"].dtype == np.uint8
    for i in range(2):
        np.testing.assert_allclose(got["flows"][i], want[f"flow_{i}"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got["masks"][i], want[f"mask_{i}"], rtol=1e-6, atol=1e-6)


def _clients(stack, **kwargs):
    return {
        "rest": RestClient(stack.rest_url, model_name="gfla", **kwargs),
        "rest_rows": RestClient(stack.rest_url, model_name="gfla", request_format="rows", **kwargs),
        "grpc": GrpcClient(stack.grpc_target, model_name="gfla", **kwargs),
    }


def test_predict_matches_saved_model(stack):
    request = testing.random_request(2, SIZE, seed=11)
    want = _direct(stack, request)
    for name, client in _clients(stack).items():
        got = client.predict(*request)
        _assert_same(got, want)
        assert client.attempts == 1, name


def test_specific_version_and_unknown_model(stack):
    request = testing.random_request(1, SIZE, seed=12)
    for client in _clients(stack, version=1).values():
        client.predict(*request)
    for client in (
        RestClient(stack.rest_url, model_name="gfla", version=7),
        GrpcClient(stack.grpc_target, model_name="other"),
    ):
        with pytest.raises(ServingError) as info:
            client.predict(*request)
        assert info.value.code == "NOT_FOUND"
        assert client.attempts == 1


def test_invalid_argument_surfaced_not_retried(stack):
    images, source, target = testing.random_request(1, SIZE, seed=13)
    wrong_size = {
        "source_image": np.zeros((1, 40, 32, 3), np.uint8),
        "source_keypoints": source,
        "target_keypoints": target,
    }
    for name, client in _clients(stack).items():
        with pytest.raises(InvalidArgumentError, match="this model takes 32x32 images") as info:
            client.predict_raw(wrong_size)
        assert info.value.code == "INVALID_ARGUMENT"
        assert client.attempts == 1, name
    grpc_client = GrpcClient(stack.grpc_target)
    with pytest.raises(InvalidArgumentError, match="to be uint8 but float32 is provided"):
        grpc_client.predict_raw(
            {
                "source_image": images.astype(np.float32),
                "source_keypoints": source,
                "target_keypoints": target,
            }
        )
    rest_client = RestClient(stack.rest_url)
    with pytest.raises(InvalidArgumentError, match="expected uint8 integers"):
        rest_client.predict_raw(
            {
                "source_image": images.astype(np.float32) + 0.5,
                "source_keypoints": source,
                "target_keypoints": target,
            }
        )
    with pytest.raises(InvalidArgumentError, match="source_keypoints must have shape"):
        rest_client.predict_raw(
            {"source_image": images, "source_keypoints": source[:, :17], "target_keypoints": target}
        )


def test_client_side_validation(stack):
    images, source, target = testing.random_request(1, SIZE, seed=14)
    client = RestClient(stack.rest_url)
    with pytest.raises(TypeError, match="source_image must be uint8"):
        client.predict(images.astype(np.float32), source, target)
    with pytest.raises(ValueError, match="target_keypoints must have shape"):
        client.predict(images, source, target[0])
    assert client.attempts == 0


def test_retries_on_unavailable(stack):
    request = testing.random_request(1, SIZE, seed=15)
    want = _direct(stack, request)
    for name, client in _clients(stack, backoff=0.01).items():
        stack.backend.fail_first = stack.backend.requests + 2
        got = client.predict(*request)
        _assert_same(got, want)
        assert client.attempts == 3, name


def test_gives_up_after_max_retries(stack):
    request = testing.random_request(1, SIZE, seed=16)
    for name, client in _clients(stack, backoff=0.01, max_retries=2).items():
        stack.backend.fail_first = stack.backend.requests + 100
        with pytest.raises(UnavailableError, match="gave up after 3 attempts"):
            client.predict(*request)
        assert client.attempts == 3, name


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_retried():
    request = testing.random_request(1, SIZE, seed=17)
    port = _closed_port()
    for client in (
        RestClient(f"http://127.0.0.1:{port}", backoff=0.01, max_retries=2, timeout=5),
        GrpcClient(f"127.0.0.1:{port}", backoff=0.01, max_retries=2, timeout=5),
    ):
        with pytest.raises(UnavailableError):
            client.predict(*request)
        assert client.attempts == 3


def test_timeout(stack):
    request = testing.random_request(1, SIZE, seed=18)
    stack.backend.delay = 1.0
    for name, client in _clients(stack, timeout=0.2).items():
        start = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            client.predict(*request)
        assert time.monotonic() - start < 1.0, name
        assert client.attempts == 1


def test_eight_concurrent_clients(stack):
    requests_per_client = 6
    jobs = []
    for c in range(8):
        for r in range(requests_per_client):
            request = testing.random_request(1 + (c + r) % 2, SIZE, seed=100 + 10 * c + r)
            jobs.append((c, request, _direct(stack, request)))
    failures = []
    done = []

    def worker(c):
        if c % 2:
            client = GrpcClient(stack.grpc_target, timeout=60)
        else:
            client = RestClient(
                stack.rest_url, timeout=60, request_format=("columnar", "rows")[c % 4 // 2]
            )
        for index, (owner, request, want) in enumerate(jobs):
            if owner != c:
                continue
            try:
                _assert_same(client.predict(*request), want)
                done.append((c, index))
            except Exception as err:  # collected and reported by the main thread
                failures.append((c, index, repr(err)))

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "clients did not finish in time"
    assert not failures, failures
    assert len(done) == 8 * requests_per_client


def test_loopback_only(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        ServingStack(str(tmp_path), host="0.0.0.0")


def test_rest_status_endpoint(stack):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{stack.rest_url}/v1/models/gfla", timeout=10) as response:
        status = json.loads(response.read())
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert tf.__version__  # the server runs in this process's TensorFlow
