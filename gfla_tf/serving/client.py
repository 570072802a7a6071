"""Clients for a GFLA model served by TensorFlow Serving: REST and gRPC.

Both send ``source_image`` (uint8 [B, H, W, 3]), ``source_keypoints`` and
``target_keypoints`` (float32 [B, 18, 2], (x, y) pixels, negative = missing) to the
``serving_default`` signature written by ``gfla export`` and return numpy
``{"image": uint8 [B, H, W, 3], "flows": [...], "masks": [...]}``, the shape of
``gfla_tf.export.load_predictor(...).predict``. Requests are checked by the same
``gfla_tf.export.validate_request`` as the predictors' before they are sent.

Failures: UNAVAILABLE (gRPC), HTTP 503 and connection errors are retried with
exponential backoff and jitter up to ``max_retries`` times; INVALID_ARGUMENT is raised at
once as ``InvalidArgumentError`` carrying the server's message; a request slower than
``timeout`` seconds raises ``DeadlineExceededError``.

Example:

    client = RestClient("http://127.0.0.1:8501", model_name="gfla")
    out = client.predict(image_uint8, source_keypoints, target_keypoints)
    out["image"]  # uint8 [B, H, W, 3]
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gfla_tf.export.predictor import validate_request
from gfla_tf.export.signatures import split_outputs

_log = logging.getLogger(__name__)

# HTTP status codes TF Serving's REST API uses for the canonical error codes.
_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ServingError(RuntimeError):
    """A request the server rejected or could not answer.

    Attributes:
      code: the canonical error code name, e.g. "INVALID_ARGUMENT".
      message: the server's message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidArgumentError(ServingError):
    """The request is malformed for the model (shape, dtype, size); not retried."""


class UnavailableError(ServingError):
    """The server stayed unavailable (or unreachable) through every retry."""


class DeadlineExceededError(ServingError):
    """The request took longer than the client's timeout."""


def make_error(code: str, message: str) -> ServingError:
    """Returns the ``ServingError`` subclass instance for a canonical code name."""
    cls = {
        "INVALID_ARGUMENT": InvalidArgumentError,
        "UNAVAILABLE": UnavailableError,
        "DEADLINE_EXCEEDED": DeadlineExceededError,
    }.get(code, ServingError)
    return cls(code, message)


class _Retryable(Exception):
    """Internal: an attempt failed in a way worth retrying."""

    def __init__(self, error: ServingError) -> None:
        super().__init__(str(error))
        self.error = error


class _Client:
    """Retry, backoff and output handling shared by the REST and gRPC clients."""

    def __init__(
        self,
        model_name: str = "gfla",
        version: int | None = None,
        signature_name: str = "serving_default",
        timeout: float | None = 30.0,
        max_retries: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        if version is not None and (isinstance(version, bool) or int(version) < 1):
            raise ValueError(f"version must be a positive integer or None, got {version!r}")
        self.model_name = model_name
        self.version = None if version is None else int(version)
        self.signature_name = signature_name
        self.timeout = timeout
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.attempts = 0  # total attempts made, for monitoring and tests

    def _with_retries(self, attempt: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        last = None
        for retry in range(self.max_retries + 1):
            if retry:
                # Full jitter keeps concurrent clients from retrying in lockstep.
                delay = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
                time.sleep(random.uniform(0.5, 1.0) * delay)
            self.attempts += 1
            try:
                return attempt()
            except _Retryable as err:
                last = err.error
                _log.warning(
                    "attempt %d/%d failed: %s", retry + 1, self.max_retries + 1, last.message
                )
        raise UnavailableError(
            "UNAVAILABLE",
            f"gave up after {self.max_retries + 1} attempts; last error: {last.message}",
        )

    def predict_raw(
        self, inputs: Mapping[str, Any], signature_name: str | None = None
    ) -> dict[str, np.ndarray]:
        """Sends named numpy inputs and returns named numpy outputs.

        Args:
          inputs: dict of input name -> array-like.
          signature_name: overrides the client's signature.

        Returns:
          dict of output name -> numpy array.

        Raises:
          InvalidArgumentError: the server rejected the request (its message included).
          UnavailableError: the server stayed unavailable through every retry.
          DeadlineExceededError: an attempt ran past ``timeout``.
          ServingError: any other server error.
        """
        signature = signature_name or self.signature_name
        return self._with_retries(lambda: self._attempt(inputs, signature))

    def predict(
        self, source_image: Any, source_keypoints: Any, target_keypoints: Any
    ) -> dict[str, Any]:
        """Renders the source person in the target pose on the server.

        Args:
          source_image: uint8 [B, H, W, 3] at the served model's image size.
          source_keypoints: [B, 18, 2] (x, y) pixels; negative = missing.
          target_keypoints: [B, 18, 2] (x, y) pixels; negative = missing.

        Returns:
          {"image": uint8 [B, H, W, 3], "flows": [...], "masks": [...]} as numpy arrays.

        Raises:
          TypeError, ValueError: malformed inputs, e.g. a NaN keypoint (checked before
            sending, as ``gfla_tf.export.Predictor`` checks them).
          InvalidArgumentError, UnavailableError, DeadlineExceededError, ServingError: as
            ``predict_raw``.
        """
        image, source, target = validate_request(source_image, source_keypoints, target_keypoints)
        outputs = self.predict_raw(
            {"source_image": image, "source_keypoints": source, "target_keypoints": target}
        )
        # JSON carries no dtype: restore the signature's (uint8 image, float32 rest).
        outputs = {
            name: np.asarray(value).astype(np.uint8 if name == "image" else np.float32)
            for name, value in outputs.items()
        }
        return split_outputs(outputs)

    def _attempt(self, inputs: Mapping[str, Any], signature_name: str) -> dict[str, np.ndarray]:
        raise NotImplementedError


class RestClient(_Client):
    """Client for TF Serving's REST predict API (``POST /v1/models/<name>:predict``).

    Args:
      url: the server's REST base URL, e.g. "http://127.0.0.1:8501".
      model_name: the served model name (``MODEL_NAME`` of the container).
      version: a specific version, or None for the latest.
      signature_name: the signature to call.
      timeout: seconds per attempt (None: no timeout).
      max_retries: retries after the first attempt on 503 or connection errors.
      backoff: first retry delay in seconds; doubles each retry, capped at max_backoff.
      max_backoff: the largest delay between retries.
      request_format: "columnar" (``{"inputs": {...}}``) or "rows" (``{"instances": [...]}``).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8501",
        *args: Any,
        request_format: str = "columnar",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if request_format not in ("columnar", "rows"):
            raise ValueError(f"request_format must be 'columnar' or 'rows', got {request_format!r}")
        self.url = url.rstrip("/")
        self.request_format = request_format

    @property
    def predict_url(self) -> str:
        """The predict endpoint for this model (and version)."""
        path = f"{self.url}/v1/models/{self.model_name}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        return path + ":predict"

    def _body(self, inputs: Mapping[str, Any], signature_name: str) -> bytes:
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        body = {"signature_name": signature_name}
        if self.request_format == "columnar":
            body["inputs"] = {name: value.tolist() for name, value in arrays.items()}
        else:
            batch = {value.shape[0] for value in arrays.values()}
            if len(batch) != 1:
                raise ValueError(f"row format needs one batch size for all inputs, got {batch}")
            body["instances"] = [
                {name: value[i].tolist() for name, value in arrays.items()}
                for i in range(batch.pop())
            ]
        return json.dumps(body).encode("utf-8")

    @staticmethod
    def _parse(payload: Any) -> dict[str, np.ndarray]:
        if not isinstance(payload, dict):
            raise ServingError("INTERNAL", f"response is not a JSON object: {str(payload)[:200]}")
        if "outputs" in payload:
            outputs = payload["outputs"]
            if not isinstance(outputs, dict):  # a single unnamed output
                outputs = {"output": outputs}
            return {name: np.asarray(value) for name, value in outputs.items()}
        if "predictions" in payload:
            rows = payload["predictions"]
            if not isinstance(rows, list):
                raise ServingError("INTERNAL", "'predictions' in the response is not a list")
            if rows and not isinstance(rows[0], dict):
                return {"output": np.asarray(rows)}
            names = rows[0].keys() if rows else []
            return {name: np.asarray([row[name] for row in rows]) for name in names}
        raise ServingError("INTERNAL", f"unexpected response keys {sorted(payload)}")

    def _attempt(self, inputs: Mapping[str, Any], signature_name: str) -> dict[str, np.ndarray]:
        request = urllib.request.Request(
            self.predict_url,
            data=self._body(inputs, signature_name),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", errors="replace")
            try:
                message = str(json.loads(text).get("error", text))
            except (ValueError, AttributeError):
                message = text.strip() or f"HTTP {err.code} {err.reason}"
            error = make_error(_HTTP_CODES.get(err.code, f"HTTP_{err.code}"), message)
            if err.code == 503:
                raise _Retryable(error) from None
            raise error from None
        except TimeoutError as err:
            raise DeadlineExceededError(
                "DEADLINE_EXCEEDED", f"no response within {self.timeout} s ({err})"
            ) from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise DeadlineExceededError(
                    "DEADLINE_EXCEEDED", f"no response within {self.timeout} s"
                ) from None
            raise _Retryable(UnavailableError("UNAVAILABLE", f"{self.url}: {err.reason}")) from None
        except (ConnectionError, http.client.HTTPException) as err:
            raise _Retryable(UnavailableError("UNAVAILABLE", f"{self.url}: {err!r}")) from None
        try:
            payload = json.loads(text)
        except ValueError:
            raise ServingError("INTERNAL", f"response is not JSON: {text[:200]!r}") from None
        return self._parse(payload)


class GrpcClient(_Client):
    """Client for TF Serving's gRPC PredictionService.

    Args:
      target: "host:port" of the gRPC endpoint, e.g. "127.0.0.1:8500".
      model_name: the served model name.
      version: a specific version, or None for the latest.
      signature_name: the signature to call.
      timeout: seconds per attempt (the gRPC deadline; None: no deadline).
      max_retries: retries after the first attempt on UNAVAILABLE.
      backoff: first retry delay in seconds; doubles each retry, capped at max_backoff.
      max_backoff: the largest delay between retries.
      max_message_mb: gRPC message size limit (images are sent as raw tensors).
    """

    def __init__(
        self, target: str = "127.0.0.1:8500", *args: Any, max_message_mb: int = 256, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        limit = int(max_message_mb * 1024 * 1024)
        self.target = target
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
            ],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _attempt(self, inputs: Mapping[str, Any], signature_name: str) -> dict[str, np.ndarray]:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as err:
            code = err.code()
            error = make_error(code.name, err.details() or str(code))
            if code == grpc.StatusCode.UNAVAILABLE:
                raise _Retryable(error) from None
            raise error from None
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
