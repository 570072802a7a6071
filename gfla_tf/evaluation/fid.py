"""Frechet Inception Distance (Heusel et al., NeurIPS 2017), under a named protocol.

Two feature networks, each with its own input convention (``FID_PROTOCOLS``):

* ``"gfla"`` (default; the authors' ``script/metrics.py``): torchvision's ImageNet
  ``inception_v3`` (``gfla_tf.pretrained.inception_v3``), its blocks called one by one, so
  its ``transform_input`` is not applied. Images in [0, 1] are resized to 299x299
  bilinearly (half-pixel centres, no antialiasing: ``F.interpolate(..., mode="bilinear",
  align_corners=False)``), then mapped per channel by ``x * (std / 0.5) + (mean - 0.5) /
  0.5`` with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); the
  2048-d final average pool; activations in batches of 64 with the remainder dropped
  (8,570 DeepFashion test images -> 8,512). This is the FID of the paper's table.
* ``"keras"``: ``keras.applications.InceptionV3(include_top=False, pooling="avg")`` on
  [-1, 1] images resized the same way, every image used. Keras' weights are neither
  torchvision's nor the TF-slim graph of TTUR/pytorch-fid: its values compare between runs
  of this project only.

Statistics are accumulated in float64 as sums (``FeatureStatistics``), so any number of
images streams through in batches; they are stored as ``.npz`` with ``mu`` and ``sigma``
(the pytorch-fid/TTUR file layout), so reference statistics computed elsewhere load too.
"""

import logging
import os
import socket

import keras
import numpy as np
import tensorflow as tf
from scipy import linalg

from gfla_tf import io as gfla_io
from gfla_tf.pretrained import inception_v3
from gfla_tf.pretrained.errors import WeightsUnavailableError
from gfla_tf.pretrained.files import keras_home

logger = logging.getLogger(__name__)

FID_PROTOCOLS = ("gfla", "keras")
INCEPTION_SIZE = 299
# The authors' activations are taken in batches of 64 and the last partial batch dropped.
GFLA_BATCH = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
_KERAS_HELP = (
    "The 'keras' FID protocol needs Keras' InceptionV3 ImageNet weights. Keras downloads "
    "them on first use into $KERAS_HOME/models (~/.keras/models); without network access, "
    f"copy {INCEPTION_NOTOP_FILE} there or pass a local file with --inception-weights PATH "
    "(a Keras InceptionV3 include_top=False weights file). For the paper's FID use "
    "--fid-protocol gfla with torchvision's inception_v3 weights."
)


def describe(protocol, weights, input_size=INCEPTION_SIZE):
    """The ``metrics.json`` description of an FID protocol.

    Args:
      protocol: a name in FID_PROTOCOLS.
      weights: the weights argument given.
      input_size: the network input side.

    Returns:
      A one-line description naming the network, weights and input mapping.
    """
    if protocol == "gfla":
        return (
            f"protocol gfla (the GFLA authors' script/metrics.py): torchvision inception_v3 "
            f"(Keras port), weights {weights}; [0, 1] images bilinearly resized to "
            f"{input_size}x{input_size} (align_corners=False, no antialias), per channel "
            "x * std / 0.5 + (mean - 0.5) / 0.5 (ImageNet mean/std), 2048-d final average "
            f"pool, batches of {GFLA_BATCH} with the remainder dropped"
        )
    return (
        f"protocol keras: keras.applications.InceptionV3 pool3 (2048-d, pooling='avg'), "
        f"weights {weights}; images bilinearly resized to {input_size}x{input_size}, [-1, 1] "
        "input; every image used; not comparable with published FIDs"
    )


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Frechet distance between two Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``. As in the reference
    implementations, a non-finite matrix square root (singular product, e.g. fewer
    samples than dimensions) is retried with ``eps`` added to both diagonals, and a
    numerically complex result keeps its real part if the imaginary diagonal is small.

    Args:
      mu1: [D] mean.
      sigma1: [D, D] covariance.
      mu2: [D] mean.
      sigma2: [D, D] covariance.
      eps: diagonal offset used when the square root is not finite.

    Returns:
      The distance as a Python float (>= 0 up to round-off).

    Raises:
      ValueError: shapes disagree, or the square root has a large imaginary part.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must have the same shape, got {mu1.shape}, {mu2.shape}")
    dim = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (dim, dim):
            raise ValueError(f"{name} must be [{dim}, {dim}], got {sigma.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logger.warning("FID: the covariance product is singular; adding %g to the diagonals", eps)
        offset = np.eye(dim) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.max(np.abs(np.diagonal(covmean).imag))
        if largest > 1e-3:
            raise ValueError(f"FID: matrix square root has an imaginary component {largest}")
        covmean = covmean.real
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(value)


class FeatureStatistics:
    """Streaming mean and covariance of feature vectors (float64 sums).

    Args:
      dim: the feature dimension (fixed by the first ``update`` if None).

    Example:
      >>> stats = FeatureStatistics()
      >>> for batch in batches:
      ...     stats.update(extract(batch))
      >>> stats.mean, stats.covariance
    """

    def __init__(self, dim=None):
        self.dim = dim
        self.count = 0
        self._sum = None
        self._outer = None
        self._mu = None
        self._sigma = None

    def update(self, features):
        """Adds a [N, D] batch of features."""
        if self._mu is not None:
            raise ValueError("statistics loaded from a file cannot be updated")
        features = np.asarray(features, np.float64)
        if features.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {features.shape}")
        if self._sum is None:
            self.dim = self.dim or features.shape[1]
            self._sum = np.zeros(self.dim)
            self._outer = np.zeros((self.dim, self.dim))
        if features.shape[1] != self.dim:
            raise ValueError(f"features must have {self.dim} columns, got {features.shape[1]}")
        self.count += features.shape[0]
        self._sum += features.sum(axis=0)
        self._outer += features.T @ features

    @property
    def mean(self):
        """[D] mean."""
        if self._mu is not None:
            return self._mu
        if not self.count:
            raise ValueError("no features were added")
        return self._sum / self.count

    @property
    def covariance(self):
        """[D, D] unbiased covariance (``np.cov(features, rowvar=False)``)."""
        if self._sigma is not None:
            return self._sigma
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        mean = self.mean
        return (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)

    def save(self, path):
        """Writes ``mu``, ``sigma`` and ``count`` to ``path`` (.npz) atomically."""
        with gfla_io.atomic_path(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, mu=self.mean, sigma=self.covariance, count=self.count)
        return path

    @classmethod
    def load(cls, path):
        """Reads statistics written by ``save`` (or pytorch-fid's ``mu``/``sigma`` .npz).

        Raises:
          ValueError: the file lacks ``mu`` or ``sigma``.
        """
        with np.load(path) as data:
            if "mu" not in data.files or "sigma" not in data.files:
                raise ValueError(f"{path!r} is not a statistics file: it needs 'mu' and 'sigma'")
            stats = cls(dim=data["mu"].shape[0])
            stats._mu = np.asarray(data["mu"], np.float64)
            stats._sigma = np.asarray(data["sigma"], np.float64)
            stats.count = int(data["count"]) if "count" in data.files else -1
        return stats


class FeatureAccumulator:
    """Streams features into ``FeatureStatistics`` in whole chunks of ``chunk`` rows.

    The rows of a last, partial chunk never enter the statistics: with ``chunk=64`` this
    is the authors' batches of 64 with the remainder dropped, whatever batch size the
    features arrive in.

    Args:
      chunk: the chunk size (1 keeps every row).
    """

    def __init__(self, chunk=1):
        self.chunk = int(chunk)
        self.statistics = FeatureStatistics()
        self._pending = None

    def update(self, features):
        """Adds a [N, D] batch of features."""
        features = np.asarray(features, np.float64)
        if self._pending is not None:
            features = np.concatenate([self._pending, features], axis=0)
        usable = len(features) - len(features) % self.chunk
        if usable:
            self.statistics.update(features[:usable])
        self._pending = features[usable:]

    @property
    def dropped(self):
        """The number of rows held back (dropped if no more arrive)."""
        return 0 if self._pending is None else len(self._pending)


def _keras_inception_weights(weights):
    """Resolves "imagenet" without hanging when offline; returns a keras weights argument."""
    if weights is None or weights != "imagenet":
        if weights is not None and not os.path.exists(weights):
            raise WeightsUnavailableError(
                f"InceptionV3 weights {weights!r} do not exist. {_KERAS_HELP}"
            )
        return weights
    cached = os.path.join(keras_home(), "models", INCEPTION_NOTOP_FILE)
    if os.path.exists(cached):
        return "imagenet"
    # Let Keras fetch them as it always does, but fail quickly when there is no network.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        keras.applications.InceptionV3(include_top=False, weights="imagenet", pooling="avg")
    except Exception as error:  # noqa: BLE001 - any download failure means unavailable
        raise WeightsUnavailableError(
            f"could not download the InceptionV3 ImageNet weights ({error}). {_KERAS_HELP}"
        ) from error
    finally:
        socket.setdefaulttimeout(previous)
    return "imagenet"


def build_inception(weights="default", input_size=INCEPTION_SIZE, protocol="gfla"):
    """The 2048-d pool feature extractor of an FID protocol.

    Args:
      weights: for "gfla": "default" (``gfla_tf.pretrained.inception_v3
        .default_weights_path``), the path of torchvision's ``inception_v3`` state dict
        (``.pth``/``.npz``), or None (random: tests, benchmarks). For "keras": "imagenet"
        (Keras' cache, downloaded if missing and possible), a Keras weights file, or None.
      input_size: side of the square network input (299 as published; at least 75).
      protocol: a name in FID_PROTOCOLS.

    Returns:
      A ``keras.Model`` from [B, input_size, input_size, 3] images in the protocol's
      input convention (see ``FID.extract_tensor``) to [B, 2048].

    Raises:
      WeightsUnavailableError: the weights cannot be found, fetched or read.
      ValueError: unknown protocol.
    """
    if protocol not in FID_PROTOCOLS:
        raise ValueError(
            f"FID protocol must be one of {', '.join(FID_PROTOCOLS)}, got {protocol!r}"
        )
    if protocol == "gfla":
        if weights == "default":
            weights = inception_v3.default_weights_path()
        elif weights == "imagenet":
            raise WeightsUnavailableError(
                "'imagenet' names Keras' InceptionV3 (--fid-protocol keras); the gfla protocol "
                f"needs torchvision's weights. {inception_v3.HOW_TO}"
            )
        elif weights is not None and not os.path.isfile(weights):
            raise WeightsUnavailableError(
                f"Inception-v3 weights file {weights!r} does not exist. {inception_v3.HOW_TO}"
            )
        return inception_v3.build_inception_v3(weights, input_size=input_size)
    weights = _keras_inception_weights("imagenet" if weights == "default" else weights)
    return keras.applications.InceptionV3(
        include_top=False,
        weights=weights,
        input_shape=(input_size, input_size, 3),
        pooling="avg",
    )


class FID:
    """Frechet Inception Distance between generated images and reference statistics.

    Args:
      weights: the feature network's weights (see ``build_inception``), None = random.
      protocol: "gfla" (torchvision Inception-v3, the paper's) or "keras".
      feature_extractor: optional model used instead of the protocol's network (maps
        [B, input_size, input_size, 3] images in the protocol's input convention to
        [B, D]); tests use a tiny one.
      input_size: the extractor's input side; images are resized to it.

    Raises:
      WeightsUnavailableError: the network's weights are unavailable.

    Example:
      >>> fid = FID(weights="inception_v3.pth", protocol="gfla")
      >>> real = fid.statistics(real_batches)
      >>> fake = fid.statistics(generated_batches)
      >>> fid.distance(fake, real)

    Reference:
      Heusel et al. GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
      Equilibrium. NeurIPS 2017. Reported by Ren et al., CVPR 2020 (GFLA) against the
      training set.
    """

    def __init__(
        self, weights="default", feature_extractor=None, input_size=INCEPTION_SIZE, protocol="gfla"
    ):
        if protocol not in FID_PROTOCOLS:
            raise ValueError(
                f"FID protocol must be one of {', '.join(FID_PROTOCOLS)}, got {protocol!r}"
            )
        self.weights = weights
        self.protocol = protocol
        self.input_size = int(input_size)
        if feature_extractor is None:
            feature_extractor = build_inception(weights, self.input_size, protocol)
        self.feature_extractor = feature_extractor
        self._extract = tf.function(self.extract_tensor, reduce_retracing=True, autograph=False)

    @property
    def feature_dim(self):
        """The feature dimension D."""
        return int(self.feature_extractor.output_shape[-1])

    def usable_count(self, count):
        """How many of ``count`` images enter the statistics (gfla drops a partial 64)."""
        return count - count % GFLA_BATCH if self.protocol == "gfla" else count

    def preprocess(self, images):
        """Maps [B, H, W, 3] uint8 or [-1, 1] images to the network's input."""
        if images.dtype == tf.uint8:
            images = tf.cast(images, tf.float32) / 127.5 - 1.0
        images = tf.cast(images, tf.float32)
        size = [self.input_size, self.input_size]
        if self.protocol == "keras":
            return tf.image.resize(images, size, method="bilinear")
        unit = tf.image.resize((images + 1.0) * 0.5, size, method="bilinear")
        std = tf.constant(IMAGENET_STD, tf.float32)
        mean = tf.constant(IMAGENET_MEAN, tf.float32)
        return unit * (std / 0.5) + (mean - 0.5) / 0.5

    def extract_tensor(self, images):
        """Graph-friendly feature extraction ([B, H, W, 3] uint8 or [-1, 1] -> [B, D])."""
        return self.feature_extractor(self.preprocess(images), training=False)

    def features(self, images):
        """Features of a batch as a float64 numpy array [B, D]."""
        return np.asarray(self._extract(tf.convert_to_tensor(images)), np.float64)

    def accumulator(self):
        """A ``FeatureAccumulator`` that applies this protocol's batching rule."""
        return FeatureAccumulator(GFLA_BATCH if self.protocol == "gfla" else 1)

    def statistics(self, batches):
        """Accumulates ``FeatureStatistics`` over an iterable of image batches.

        Under the gfla protocol the images past the last full batch of 64 are dropped.
        """
        accumulator = self.accumulator()
        for batch in batches:
            accumulator.update(self.features(batch))
        return accumulator.statistics

    @staticmethod
    def distance(stats_a, stats_b):
        """Frechet distance between two ``FeatureStatistics``."""
        return frechet_distance(stats_a.mean, stats_a.covariance, stats_b.mean, stats_b.covariance)
