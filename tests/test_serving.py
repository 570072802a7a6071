"""REST and gRPC clients against in-process TF Serving stand-ins running the export."""

import http.client
import json
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
from fake_tf_serving import ServingStack  # noqa: E402

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
    import urllib.request

    with urllib.request.urlopen(f"{stack.rest_url}/v1/models/gfla", timeout=10) as response:
        status = json.loads(response.read())
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert tf.__version__  # the server runs in this process's TensorFlow


def _valid_inputs(seed=20, batch=1):
    images, source, target = testing.random_request(batch, SIZE, seed=seed)
    return {"source_image": images, "source_keypoints": source, "target_keypoints": target}


def test_non_finite_keypoints_are_invalid_argument(stack):
    inputs = _valid_inputs(batch=2)
    inputs["target_keypoints"] = inputs["target_keypoints"].copy()
    inputs["target_keypoints"][1, 7] = [np.nan, 3.0]
    for name, client in _clients(stack).items():
        if name == "rest_rows":
            continue  # predict_raw sends columnar or rows alike; one REST form suffices
        with pytest.raises(InvalidArgumentError, match=r"target_keypoints must be finite"):
            client.predict_raw(inputs)
        assert client.attempts == 1, name
    target = np.where(np.isnan(inputs["target_keypoints"]), np.inf, inputs["target_keypoints"])
    inf = dict(inputs, target_keypoints=target.astype(np.float32))
    with pytest.raises(InvalidArgumentError, match=r"NaN or infinite at \[batch, keypoint\]"):
        GrpcClient(stack.grpc_target).predict_raw(inf)
    # The client's predict refuses it before sending, naming the keypoint.
    client = RestClient(stack.rest_url)
    with pytest.raises(ValueError, match=r"target_keypoints\[1, 7\] \(keypoint 7 \(Lwri\)\)"):
        client.predict(*inputs.values())
    assert client.attempts == 0


def test_empty_batch_is_invalid_argument(stack):
    inputs = {name: value[:0] for name, value in _valid_inputs().items()}
    with pytest.raises(InvalidArgumentError, match="at least one image; got batch size"):
        GrpcClient(stack.grpc_target).predict_raw(inputs)
    # JSON cannot spell an empty [0, 32, 32, 3] array: "[]" arrives as shape [0].
    with pytest.raises(InvalidArgumentError, match=r"source_image must have shape.*\[0\]"):
        RestClient(stack.rest_url).predict_raw(inputs)
    with pytest.raises(ValueError, match="at least one image"):
        RestClient(stack.rest_url).predict(*inputs.values())


def _post(stack, body, headers=None, path="/v1/models/gfla:predict"):
    """Sends a raw POST; returns (status, parsed JSON body). Fails if the server hangs up."""
    host, port = stack.rest_url.rsplit("/", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", path)
        for key, value in (headers or {"Content-Length": str(len(body))}).items():
            connection.putheader(key, value)
        connection.endheaders()
        connection.send(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_rest_malformed_requests_get_400(stack):
    good = {name: value.tolist() for name, value in _valid_inputs().items()}
    deep = "[" * 100000 + "]" * 100000
    cases = {
        "signature list": json.dumps({"signature_name": [], "inputs": good}).encode(),
        "signature object": json.dumps({"signature_name": {"a": 1}, "inputs": good}).encode(),
        "deep nesting": ('{"inputs": {"source_image": ' + deep + "}}").encode(),
        "deep but parseable": json.dumps(
            {"inputs": dict(good, source_keypoints=json.loads("[" * 60 + "1" + "]" * 60))}
        ).encode(),
        "not json": b"\xff\xfe not json",
        "json list": b"[1, 2]",
        "inputs list": json.dumps({"inputs": [1, 2]}).encode(),
        "strings": json.dumps({"inputs": dict(good, source_keypoints="abc")}).encode(),
    }
    for name, body in cases.items():
        status, payload = _post(stack, body)
        assert status == 400, (name, status, payload)
        assert payload["error"], name
    body = json.dumps({"inputs": good}).encode()
    for name, length in (("not a number", "abc"), ("negative", "-5"), ("too long", "999999")):
        status, payload = _post(stack, body[:100], headers={"Content-Length": length})
        assert status == 400, (name, status, payload)
        assert "Content-Length" in payload["error"], (name, payload)


def test_grpc_malformed_tensor_proto_is_invalid_argument(stack):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    inputs = _valid_inputs()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(stack.grpc_target)
    )

    def request_with(name, mutate):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "gfla"
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        mutate(request.inputs[name])
        return request

    def short_content(proto):
        proto.tensor_content = proto.tensor_content[:7]

    def bad_dtype(proto):
        proto.dtype = 0  # DT_INVALID

    def huge_shape(proto):
        proto.tensor_shape.dim[0].size = 2**40

    for mutate in (short_content, bad_dtype, huge_shape):
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request_with("source_keypoints", mutate), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, mutate.__name__
        assert "source_keypoints" in info.value.details(), mutate.__name__
