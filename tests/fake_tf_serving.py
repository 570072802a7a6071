"""An in-process stand-in for TensorFlow Serving, for testing the clients without it.

``ServingStack(saved_model_dir)`` runs an exported SavedModel (``tf.saved_model.load``)
behind the two TF Serving front ends on loopback ports chosen by the OS:

* REST: ``POST /v1/models/<name>[/versions/<n>]:predict`` with ``{"signature_name",
  "inputs"}`` (columnar) or ``{"signature_name", "instances"}`` (rows), answering
  ``{"outputs": {...}}`` / ``{"predictions": [...]}`` or ``{"error": "..."}`` with TF
  Serving's HTTP status codes; ``GET /v1/models/<name>`` answers the model status.
* gRPC: ``tensorflow.serving.PredictionService/Predict``.

Faults can be injected to test clients: ``fail_first`` answers the first N requests with
UNAVAILABLE (HTTP 503), ``delay`` sleeps before each answer. Only loopback addresses are
accepted. This is a test fixture, not a server to deploy: use TF Serving for that.

Like TF Serving, every request gets an answer: a malformed one (bad JSON, a wrong type
anywhere, deep nesting, a bad ``Content-Length``, a malformed TensorProto) gets HTTP 400 /
INVALID_ARGUMENT naming the problem, and an unexpected failure HTTP 500 / INTERNAL; the
connection is never just closed.

Example:

    with ServingStack(export_dir, model_name="gfla") as stack:
        client = RestClient(stack.rest_url, model_name="gfla")
        client.predict(image, source_keypoints, target_keypoints)
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import re
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from gfla_tf.export.saved_model import resolve_saved_model_dir
from gfla_tf.serving.client import ServingError

_log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_STATUS_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?$")
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 400,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}
# Largest request body accepted (TF Serving's default gRPC limit is of this order too).
MAX_BODY_BYTES = 256 * 1024 * 1024
# Seconds a connection may stall mid-request (e.g. a Content-Length larger than the body).
READ_TIMEOUT_S = 5.0


def _server_message(err: tf.errors.OpError) -> str:
    """The error text TF Serving would send: the op's message without Python's preamble."""
    message = err.message
    marker = "<stack traces unavailable>"
    if marker in message:
        message = message.split(marker, 1)[1]
    return message.strip()


def _code_name(code: int) -> str:
    """Canonical name of a TF error code (TF and gRPC share the numbering)."""
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return "UNKNOWN"


def _check_loopback(host: str) -> None:
    if host not in LOOPBACK:
        raise ValueError(f"host must be a loopback address {LOOPBACK}, got {host!r}")


class SavedModelBackend:
    """Runs the signatures of a SavedModel the way TF Serving does, with its error codes.

    Args:
      saved_model_dir: a SavedModel directory, or a base directory of numbered versions
        (the highest is loaded).
      fail_first: answer the first N requests with UNAVAILABLE.
      delay: seconds to sleep before running each request.
    """

    def __init__(
        self, saved_model_dir: str | os.PathLike, fail_first: int = 0, delay: float = 0.0
    ) -> None:
        directory = resolve_saved_model_dir(os.fspath(saved_model_dir))
        name = os.path.basename(os.path.normpath(directory))
        self.version = int(name) if name.isdigit() else 1
        self.directory = directory
        self._loaded = tf.saved_model.load(directory)
        self.signatures = dict(self._loaded.signatures)
        self.fail_first = int(fail_first)
        self.delay = float(delay)
        self.requests = 0
        self._lock = threading.Lock()

    def input_specs(self, signature_name: Any) -> dict[str, tf.TensorSpec]:
        """Returns {input name: tf.TensorSpec} of a signature."""
        return dict(self._signature(signature_name).structured_input_signature[1])

    def _signature(self, signature_name: Any) -> Any:
        if not isinstance(signature_name, str):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"signature_name must be a string, got {type(signature_name).__name__}",
            )
        if signature_name not in self.signatures:
            raise ServingError(
                "INVALID_ARGUMENT",
                f'Serving signature name: "{signature_name}" not found in signature def',
            )
        return self.signatures[signature_name]

    def check_model(self, name: str, version: Any, model_name: str) -> None:
        """Raises NOT_FOUND unless the request names the served model and version."""
        if name != model_name:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        if version is not None and int(version) != self.version:
            raise ServingError(
                "NOT_FOUND", f"Servable not found for request: Specific({name}, {version})"
            )

    def admit(self) -> None:
        """Counts a request; raises UNAVAILABLE for the first ``fail_first`` of them."""
        with self._lock:
            self.requests += 1
            count = self.requests
        if self.delay:
            time.sleep(self.delay)
        if count <= self.fail_first:
            raise ServingError("UNAVAILABLE", f"injected failure {count}/{self.fail_first}")

    def run(self, signature_name: Any, inputs: Any) -> dict[str, np.ndarray]:
        """Runs a signature on numpy inputs; errors become ServingError with a code.

        Args:
          signature_name: the signature key.
          inputs: dict of input name -> numpy array of the signature's dtype.

        Returns:
          dict of output name -> numpy array.
        """
        fn = self._signature(signature_name)
        specs = self.input_specs(signature_name)
        if not isinstance(inputs, dict):
            raise ServingError("INVALID_ARGUMENT", "inputs must map input names to tensors")
        missing = sorted(set(specs) - set(inputs))
        extra = sorted(set(inputs) - set(specs))
        if missing or extra:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input names must be {sorted(specs)}; missing {missing}, unexpected {extra}",
            )
        for i, (name, spec) in enumerate(sorted(specs.items())):
            dtype = np.asarray(inputs[name]).dtype
            if tf.as_dtype(dtype) != spec.dtype:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[{i}] ({name}) to be {spec.dtype.name} but "
                    f"{tf.as_dtype(dtype).name} is provided",
                )
        try:
            outputs = fn(**{name: tf.constant(value) for name, value in inputs.items()})
        except tf.errors.InvalidArgumentError as err:
            raise ServingError("INVALID_ARGUMENT", _server_message(err)) from None
        except (ValueError, TypeError) as err:
            raise ServingError("INVALID_ARGUMENT", str(err)) from None
        except tf.errors.OpError as err:
            raise ServingError(_code_name(err.error_code), _server_message(err)) from None
        return {name: value.numpy() for name, value in outputs.items()}


def _json_to_array(value: Any, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """Converts a JSON value to the signature dtype, rejecting lossy conversions."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as err:  # ragged or absurdly deep lists
        raise ServingError(
            "INVALID_ARGUMENT", f"{name}: ragged or malformed list ({err})"
        ) from None
    dtype = spec.dtype.as_numpy_dtype
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ServingError("INVALID_ARGUMENT", f"{name}: expected numbers, got {array.dtype}")
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if array.dtype.kind == "f" and not np.all(np.floor(array) == array):
            raise ServingError(
                "INVALID_ARGUMENT", f"{name}: expected {spec.dtype.name} integers, got fractions"
            )
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ServingError(
                "INVALID_ARGUMENT", f"{name}: values out of the range of {spec.dtype.name}"
            )
    return array.astype(dtype)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    """Speaks the subset of TF Serving's REST API the clients use."""

    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S  # socket timeout: a stalled body cannot hold a thread forever

    def log_message(
        self, fmt: str, *args: Any
    ) -> None:  # route the access log to logging, not stderr
        _log.debug("rest: " + fmt, *args)

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, err: ServingError) -> None:
        self._reply(_HTTP_STATUS.get(err.code, 500), {"error": err.message})

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        server = self.server
        match = _STATUS_PATH.match(self.path)
        try:
            if not match:
                raise ServingError("NOT_FOUND", f"malformed request: GET {self.path}")
            server.backend.check_model(match.group(1), match.group(2), server.model_name)
        except ServingError as err:
            self._error(err)
            return
        status = {"error_code": "OK", "error_message": ""}
        self._reply(
            200,
            {
                "model_version_status": [
                    {"version": str(server.backend.version), "state": "AVAILABLE", "status": status}
                ]
            },
        )

    def _read_body(self) -> bytes:
        """Reads the request body, or raises ServingError for a bad Content-Length."""
        header = self.headers.get("Content-Length")
        if header is None:
            raise ServingError("INVALID_ARGUMENT", "POST without a Content-Length header")
        try:
            length = int(header)
        except ValueError:
            raise ServingError(
                "INVALID_ARGUMENT", f"Content-Length must be an integer, got {header!r}"
            ) from None
        if length < 0:
            raise ServingError("INVALID_ARGUMENT", f"Content-Length must be >= 0, got {length}")
        if length > MAX_BODY_BYTES:
            raise ServingError(
                "INVALID_ARGUMENT", f"request body of {length} bytes exceeds {MAX_BODY_BYTES}"
            )
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            raw = b""
        if len(raw) != length:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"request body ended after {len(raw)} of the {length} bytes Content-Length "
                "announced",
            )
        return raw

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        try:
            self._post()
        except ServingError as err:
            self.close_connection = True  # the body may be unread: never reuse the stream
            self._error(err)
        except Exception as err:  # a fake server must answer, never drop the connection
            _log.exception("rest: unexpected error")
            self.close_connection = True
            self._error(ServingError("INTERNAL", f"{type(err).__name__}: {err}"))

    def _post(self) -> None:
        server = self.server
        match = _PREDICT_PATH.match(self.path)
        if not match:
            raise ServingError("NOT_FOUND", f"malformed request: POST {self.path}")
        raw = self._read_body()
        server.backend.check_model(match.group(1), match.group(2), server.model_name)
        server.backend.admit()
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {reason}") from None
        if not isinstance(body, dict):
            raise ServingError("INVALID_ARGUMENT", "request body must be a JSON object")
        signature = body.get("signature_name", "serving_default")
        specs = server.backend.input_specs(signature)
        if ("inputs" in body) == ("instances" in body):
            raise ServingError(
                "INVALID_ARGUMENT", "request must have exactly one of 'instances' or 'inputs'"
            )
        rows = "instances" in body
        if rows:
            instances = body["instances"]
            if not isinstance(instances, list) or not all(
                isinstance(row, dict) for row in instances
            ):
                raise ServingError(
                    "INVALID_ARGUMENT", "'instances' must be a list of objects of named inputs"
                )
            values = {
                name: [row.get(name) for row in instances]
                for name in (instances[0] if instances else {})
            }
        else:
            values = body["inputs"]
            if not isinstance(values, dict):
                raise ServingError("INVALID_ARGUMENT", "'inputs' must map input names to values")
        arrays = {}
        for name, value in values.items():
            if name not in specs:
                raise ServingError(
                    "INVALID_ARGUMENT", f"unknown input {name!r}; expected {sorted(specs)}"
                )
            arrays[name] = _json_to_array(value, specs[name], name)
        outputs = server.backend.run(signature, arrays)
        if rows:
            batch = next(iter(outputs.values())).shape[0]
            payload = {
                "predictions": [
                    {name: value[i].tolist() for name, value in outputs.items()}
                    for i in range(batch)
                ]
            }
        else:
            payload = {"outputs": {name: value.tolist() for name, value in outputs.items()}}
        self._reply(200, payload)


class _RestServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], backend: SavedModelBackend, model_name: str
    ) -> None:
        self.backend = backend
        self.model_name = model_name
        super().__init__(address, _RestHandler)


def _proto_to_array(proto: Any, name: str) -> np.ndarray:
    """Decodes a request TensorProto; a malformed one is INVALID_ARGUMENT naming the input."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > MAX_BODY_BYTES:
        # make_ndarray would pad a short value list up to the shape: refuse absurd shapes.
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: invalid tensor shape {dims}")
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise ServingError(
            "INVALID_ARGUMENT", f"input {name!r}: malformed TensorProto ({err})"
        ) from None


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService.Predict over a SavedModelBackend."""

    def __init__(self, backend: SavedModelBackend, model_name: str) -> None:
        self.backend = backend
        self.model_name = model_name

    def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC API)
        try:
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            self.backend.check_model(spec.name, version, self.model_name)
            self.backend.admit()
            signature = spec.signature_name or "serving_default"
            inputs = {name: _proto_to_array(proto, name) for name, proto in request.inputs.items()}
            outputs = self.backend.run(signature, inputs)
        except ServingError as err:
            context.abort(getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN), err.message)
            return None
        except Exception as err:  # answer INTERNAL rather than gRPC's bare UNKNOWN
            _log.exception("grpc: unexpected error")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")
            return None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.signature_name = signature
        response.model_spec.version.value = self.backend.version
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


class ServingStack:
    """A SavedModel behind loopback REST and gRPC servers (a TF Serving stand-in).

    Args:
      saved_model_dir: the export (a version directory or the base directory).
      model_name: the name clients must use.
      host: a loopback address.
      rest_port: REST port; 0 picks a free one.
      grpc_port: gRPC port; 0 picks a free one.
      fail_first: answer the first N requests (over both front ends) with UNAVAILABLE.
      delay: seconds to sleep before each answer.
      max_workers: gRPC worker threads.

    Attributes:
      rest_url: e.g. "http://127.0.0.1:41234".
      grpc_target: e.g. "127.0.0.1:41235".
      backend: the ``SavedModelBackend`` (``requests`` counts the requests served).
    """

    def __init__(
        self,
        saved_model_dir: str | os.PathLike,
        model_name: str = "gfla",
        host: str = "127.0.0.1",
        rest_port: int = 0,
        grpc_port: int = 0,
        fail_first: int = 0,
        delay: float = 0.0,
        max_workers: int = 16,
    ) -> None:
        _check_loopback(host)
        self.host = host
        self.model_name = model_name
        self.backend = SavedModelBackend(saved_model_dir, fail_first=fail_first, delay=delay)
        self._rest_port = rest_port
        self._grpc_port = grpc_port
        self._max_workers = max_workers
        self._rest = None
        self._grpc = None
        self._thread = None
        self.rest_url = None
        self.grpc_target = None

    def start(self) -> ServingStack:
        """Starts both servers; returns self."""
        self._rest = _RestServer((self.host, self._rest_port), self.backend, self.model_name)
        self._thread = threading.Thread(
            target=self._rest.serve_forever, name="gfla-test-rest", daemon=True
        )
        self._thread.start()
        self.rest_url = f"http://{self.host}:{self._rest.server_address[1]}"

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionServicer(self.backend, self.model_name), self._grpc
        )
        port = self._grpc.add_insecure_port(f"{self.host}:{self._grpc_port}")
        if port == 0:
            raise OSError(f"could not bind a gRPC port on {self.host}")
        self._grpc.start()
        self.grpc_target = f"{self.host}:{port}"
        return self

    def stop(self) -> None:
        """Stops both servers."""
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
            self._rest = None
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None

    def __enter__(self) -> ServingStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
