"""Instance normalisation with an affine transform, as PyTorch's InstanceNorm2d(affine=True)."""

import keras
from keras import ops

from gfla_tf.layers import _common


@keras.saving.register_keras_serializable(package="gfla")
class InstanceNormalization(keras.layers.Layer):
    """Normalises every channel of every example over its spatial positions.

    ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta`` with the biased variance and no
    running statistics (training and inference behave alike). The statistics are computed
    in float32 (at least) whatever the compute dtype, so mixed precision does not lose them.

    Args:
      epsilon: added to the variance; 1e-5 as in PyTorch.
      center: whether to learn ``beta`` (initialised to 0).
      scale: whether to learn ``gamma`` (initialised to 1).
      **kwargs: base layer arguments (``name``, ``dtype``...).

    Example:
      >>> norm = InstanceNormalization()
      >>> y = norm(np.random.rand(2, 8, 8, 3).astype("float32"))  # same shape

    Reference:
      Ulyanov et al., "Instance Normalization: The Missing Ingredient for Fast
      Stylization", 2016; used throughout GFLA (Ren et al., CVPR 2020).
    """

    def __init__(self, epsilon=1e-5, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.supports_masking = True

    def build(self, input_shape):
        _common.check_rank4(input_shape, "inputs", self.name)
        channels = input_shape[-1]
        self.gamma = (
            self.add_weight(name="gamma", shape=(channels,), initializer="ones")
            if self.scale
            else None
        )
        self.beta = (
            self.add_weight(name="beta", shape=(channels,), initializer="zeros")
            if self.center
            else None
        )

    def call(self, inputs):
        dtype = _common.statistics_dtype(self.compute_dtype)
        x = ops.cast(inputs, dtype)
        # Rows first, then columns: runtimes that reduce with one running sum (TFLite) lose
        # about 20x less precision on a 256x256 map than with a single H*W reduction.
        mean = _spatial_mean(x)
        variance = _spatial_mean(ops.square(x - mean))
        # Folded into one scale and one offset per (sample, channel), so the full-size
        # tensor is touched by a single multiply-add.
        scale = ops.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            scale = scale * ops.cast(self.gamma, dtype)
        offset = -mean * scale
        if self.beta is not None:
            offset = offset + ops.cast(self.beta, dtype)
        return ops.cast(x * scale + offset, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, center=self.center, scale=self.scale)
        return config


def _spatial_mean(x):
    """Mean over height and width of an NHWC tensor, keeping dims, as two reductions."""
    return ops.mean(ops.mean(x, axis=2, keepdims=True), axis=1, keepdims=True)
