"""Clients for a GFLA model served by TensorFlow Serving (REST and gRPC).

``RestClient`` and ``GrpcClient`` send a uint8 image and two keypoint sets to the
``serving_default`` signature written by ``gfla export`` and return the rendered image,
flows and masks as numpy arrays; see ``gfla_tf.serving.client``. The tests run them
against an in-process TF Serving stand-in (``tests/fake_tf_serving.py``).
"""

from gfla_tf.serving.client import (
    DeadlineExceededError,
    GrpcClient,
    InvalidArgumentError,
    RestClient,
    ServingError,
    UnavailableError,
)

__all__ = [
    "DeadlineExceededError",
    "GrpcClient",
    "InvalidArgumentError",
    "RestClient",
    "ServingError",
    "UnavailableError",
]
