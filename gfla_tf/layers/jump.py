"""The skip connection of the GFLA flow estimator."""

import keras

from gfla_tf.layers import _common


@keras.saving.register_keras_serializable(package="gfla")
class Jump(keras.layers.Layer):
    """LeakyReLU -> ReflectionPad -> Conv (valid, with bias, no normalisation).

    Carries an encoder feature to the decoder of the flow estimator, where it is added.

    Args:
      filters: output channels.
      kernel_size: odd conv size (3 in GFLA); the padding is ``kernel_size // 2``.
      negative_slope: slope of the LeakyReLU (0.1 in GFLA).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base layer arguments.

    Example:
      >>> jump = Jump(64)
      >>> y = jump(np.zeros((1, 16, 16, 64), "float32"))  # (1, 16, 16, 64)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020.
    """

    def __init__(
        self, filters, kernel_size=3, negative_slope=0.1, kernel_initializer=None, **kwargs
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters!r}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 != 1:
            raise ValueError(f"kernel_size must be an odd integer >= 1, got {kernel_size!r}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        self.conv = keras.layers.Conv2D(
            self.filters, self.kernel_size, name="conv", **_common.conv_kwargs(self)
        )

    def build(self, input_shape):
        _common.check_rank4(input_shape, "inputs", self.name)
        pad = self.kernel_size // 2
        b, h, w, c = input_shape
        self.conv.build(
            (b, None if h is None else h + 2 * pad, None if w is None else w + 2 * pad, c)
        )

    def call(self, inputs):
        x = _common.leaky_relu(inputs, self.negative_slope)
        return self.conv(_common.reflect_pad(x, self.kernel_size // 2))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
