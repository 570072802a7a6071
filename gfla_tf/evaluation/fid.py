"""Frechet Inception Distance (Heusel et al., NeurIPS 2017).

Features: ``keras.applications.InceptionV3(include_top=False, pooling="avg")``, the
2048-d pool3 vector, on images in [-1, 1] (InceptionV3's own input range) resized to
299x299 with bilinear interpolation (half-pixel centres, no antialiasing, like
``F.interpolate(..., mode="bilinear", align_corners=False)`` in pytorch-fid). The Keras
ImageNet weights are not the TF-slim graph that TTUR/pytorch-fid use, so absolute values
are comparable between runs of this project but only approximately with published FIDs;
the protocol recorded in ``metrics.json`` says so.

Statistics are accumulated in float64 as sums (``FeatureStatistics``), so any number of
images streams through in batches; they are stored as ``.npz`` with ``mu`` and ``sigma``
(the pytorch-fid/TTUR file layout), so reference statistics computed elsewhere load too.
"""

import logging
import os
import socket
import tempfile

import keras
import numpy as np
import tensorflow as tf
from scipy import linalg

from gfla_tf.evaluation.weights import WeightsUnavailableError, keras_home

logger = logging.getLogger(__name__)

INCEPTION_SIZE = 299
INCEPTION_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
_HELP = (
    "FID needs InceptionV3 ImageNet weights. Keras downloads them on first use into "
    "$KERAS_HOME/models (~/.keras/models); without network access, copy "
    f"{INCEPTION_NOTOP_FILE} there or pass a local file with --inception-weights PATH "
    "(a Keras InceptionV3 include_top=False weights file)."
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
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
        os.close(fd)
        try:
            np.savez(tmp, mu=self.mean, sigma=self.covariance, count=self.count)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
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


def _inception_weights(weights):
    """Resolves "imagenet" without hanging when offline; returns a keras weights argument."""
    if weights is None or weights != "imagenet":
        if weights is not None and not os.path.exists(weights):
            raise WeightsUnavailableError(f"InceptionV3 weights {weights!r} do not exist. {_HELP}")
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
            f"could not download the InceptionV3 ImageNet weights ({error}). {_HELP}"
        ) from error
    finally:
        socket.setdefaulttimeout(previous)
    return "imagenet"


def build_inception(weights="imagenet", input_size=INCEPTION_SIZE):
    """InceptionV3 pool3 feature extractor (2048-d).

    Args:
      weights: "imagenet" (Keras' cache, downloaded if missing and possible), a local
        weights file, or None for random weights (tests, benchmarks).
      input_size: side of the square network input (299 as published; at least 75).

    Returns:
      A ``keras.Model`` from [B, input_size, input_size, 3] in [-1, 1] to [B, 2048].

    Raises:
      WeightsUnavailableError: the weights cannot be found or fetched.
    """
    weights = _inception_weights(weights)
    return keras.applications.InceptionV3(
        include_top=False,
        weights=weights,
        input_shape=(input_size, input_size, 3),
        pooling="avg",
    )


class FID:
    """Frechet Inception Distance between generated images and reference statistics.

    Args:
      weights: InceptionV3 weights: "imagenet", a local file, or None (random).
      feature_extractor: optional model used instead of InceptionV3 (maps
        [B, input_size, input_size, 3] images in [-1, 1] to [B, D]); tests use a tiny one.
      input_size: the extractor's input side; images are resized to it.

    Raises:
      WeightsUnavailableError: InceptionV3 weights are unavailable.

    Example:
      >>> fid = FID(weights="imagenet")
      >>> real = fid.statistics(real_batches)
      >>> fake = fid.statistics(generated_batches)
      >>> fid.distance(fake, real)

    Reference:
      Heusel et al. GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
      Equilibrium. NeurIPS 2017. Reported by Ren et al., CVPR 2020 (GFLA) against the
      training set.
    """

    def __init__(self, weights="imagenet", feature_extractor=None, input_size=INCEPTION_SIZE):
        self.weights = weights
        self.input_size = int(input_size)
        if feature_extractor is None:
            feature_extractor = build_inception(weights, self.input_size)
        self.feature_extractor = feature_extractor
        self._extract = tf.function(self.extract_tensor, reduce_retracing=True, autograph=False)

    @property
    def feature_dim(self):
        """The feature dimension D."""
        return int(self.feature_extractor.output_shape[-1])

    def extract_tensor(self, images):
        """Graph-friendly feature extraction ([B, H, W, 3] uint8 or [-1, 1] -> [B, D])."""
        if images.dtype == tf.uint8:
            images = tf.cast(images, tf.float32) / 127.5 - 1.0
        images = tf.cast(images, tf.float32)
        images = tf.image.resize(images, [self.input_size, self.input_size], method="bilinear")
        return self.feature_extractor(images, training=False)

    def features(self, images):
        """Features of a batch as a float64 numpy array [B, D]."""
        return np.asarray(self._extract(tf.convert_to_tensor(images)), np.float64)

    def statistics(self, batches):
        """Accumulates ``FeatureStatistics`` over an iterable of image batches."""
        stats = FeatureStatistics()
        for batch in batches:
            stats.update(self.features(batch))
        return stats

    @staticmethod
    def distance(stats_a, stats_b):
        """Frechet distance between two ``FeatureStatistics``."""
        return frechet_distance(stats_a.mean, stats_a.covariance, stats_b.mean, stats_b.covariance)
