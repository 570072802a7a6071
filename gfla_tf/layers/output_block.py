"""The image output head of the GFLA renderer."""

import keras
from keras import ops

from gfla_tf.layers.jump import Jump


@keras.saving.register_keras_serializable(package="gfla")
class OutputBlock(Jump):
    """LeakyReLU -> ReflectionPad -> Conv (valid, no normalisation) -> tanh.

    The same layers as ``Jump``, with a tanh on top.

    Args:
      filters: output channels (3 for an RGB image).
      kernel_size: odd conv size (3 in GFLA); the padding is ``kernel_size // 2``.
      negative_slope: slope of the LeakyReLU (0.1 in GFLA).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base layer arguments.

    Example:
      >>> head = OutputBlock(3)
      >>> image = head(np.zeros((1, 64, 64, 64), "float32"))  # (1, 64, 64, 3) in [-1, 1]

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020.
    """

    def __init__(
        self, filters=3, kernel_size=3, negative_slope=0.1, kernel_initializer=None, **kwargs
    ):
        super().__init__(
            filters,
            kernel_size=kernel_size,
            negative_slope=negative_slope,
            kernel_initializer=kernel_initializer,
            **kwargs,
        )

    def call(self, inputs):
        return ops.tanh(super().call(inputs))
