"""The pre-activation residual block of the GFLA renderer."""

import keras

from gfla_tf.layers import _common
from gfla_tf.layers.instance_normalization import InstanceNormalization


@keras.saving.register_keras_serializable(package="gfla")
class ResBlock(keras.layers.Layer):
    """x + Conv3x3(LReLU(IN(Conv3x3(LReLU(IN(x)))))), channels unchanged.

    Args:
      hidden_filters: channels between the two convs; None = the input channels.
      negative_slope: slope of the LeakyReLU (0.1 in GFLA).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base layer arguments.

    Example:
      >>> block = ResBlock()
      >>> y = block(np.zeros((1, 16, 16, 64), "float32"))  # (1, 16, 16, 64)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020.
    """

    def __init__(self, hidden_filters=None, negative_slope=0.1, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        if hidden_filters is not None and int(hidden_filters) < 1:
            raise ValueError(f"hidden_filters must be None or >= 1, got {hidden_filters!r}")
        self.hidden_filters = None if hidden_filters is None else int(hidden_filters)
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        self.norm1 = InstanceNormalization(dtype=self.dtype_policy, name="norm1")
        self.norm2 = InstanceNormalization(dtype=self.dtype_policy, name="norm2")

    def build(self, input_shape):
        _common.check_rank4(input_shape, "inputs", self.name)
        channels = input_shape[-1]
        hidden = self.hidden_filters or channels
        kw = _common.conv_kwargs(self)
        self.conv1 = keras.layers.Conv2D(hidden, 3, padding="same", name="conv1", **kw)
        self.conv2 = keras.layers.Conv2D(channels, 3, padding="same", name="conv2", **kw)
        mid = tuple(input_shape[:3]) + (hidden,)
        self.norm1.build(input_shape)
        self.conv1.build(input_shape)
        self.norm2.build(mid)
        self.conv2.build(mid)

    def call(self, inputs):
        x = self.conv1(_common.leaky_relu(self.norm1(inputs), self.negative_slope))
        x = self.conv2(_common.leaky_relu(self.norm2(x), self.negative_slope))
        return inputs + x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_filters=self.hidden_filters,
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
