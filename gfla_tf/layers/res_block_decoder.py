"""The pre-activation up-sampling residual block of the GFLA decoders."""

import keras

from gfla_tf.layers import _common
from gfla_tf.layers.instance_normalization import InstanceNormalization


def _upsampled(size):
    return None if size is None else 2 * size


@keras.saving.register_keras_serializable(package="gfla")
class ResBlockDecoder(keras.layers.Layer):
    """Doubles the spatial size with a residual pair of transposed convs.

    Main path: IN -> LReLU -> Conv3x3 (in -> hidden) -> IN -> LReLU -> ConvTranspose3x3/2;
    shortcut: ConvTranspose3x3/2 (in -> filters); output is their sum. Each transposed conv
    is PyTorch's ConvTranspose2d(3, stride 2, padding 1, output_padding 1), which keeps rows
    and columns 1..2H of the full (2H+1) output: Keras 'same' would keep 0..2H-1, a
    one-pixel shift, so the layer runs 'valid' and crops the first row and column.

    Args:
      filters: output channels.
      hidden_filters: channels after the first conv; None = the input channels.
      negative_slope: slope of the LeakyReLU (0.1 in GFLA).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base layer arguments.

    Example:
      >>> block = ResBlockDecoder(32)
      >>> y = block(np.zeros((1, 8, 8, 64), "float32"))  # (1, 16, 16, 32)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020.
    """

    def __init__(
        self, filters, hidden_filters=None, negative_slope=0.1, kernel_initializer=None, **kwargs
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters!r}")
        if hidden_filters is not None and int(hidden_filters) < 1:
            raise ValueError(f"hidden_filters must be None or >= 1, got {hidden_filters!r}")
        self.filters = int(filters)
        self.hidden_filters = None if hidden_filters is None else int(hidden_filters)
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        self.norm1 = InstanceNormalization(dtype=self.dtype_policy, name="norm1")
        self.norm2 = InstanceNormalization(dtype=self.dtype_policy, name="norm2")
        kw = _common.conv_kwargs(self)
        self.deconv = keras.layers.Conv2DTranspose(self.filters, 3, strides=2, name="deconv", **kw)
        self.shortcut = keras.layers.Conv2DTranspose(
            self.filters, 3, strides=2, name="shortcut", **kw
        )

    def build(self, input_shape):
        _common.check_rank4(input_shape, "inputs", self.name)
        hidden = self.hidden_filters or input_shape[-1]
        self.conv1 = keras.layers.Conv2D(
            hidden, 3, padding="same", name="conv1", **_common.conv_kwargs(self)
        )
        mid = tuple(input_shape[:3]) + (hidden,)
        self.norm1.build(input_shape)
        self.conv1.build(input_shape)
        self.norm2.build(mid)
        self.deconv.build(mid)
        self.shortcut.build(input_shape)

    def call(self, inputs):
        x = self.conv1(_common.leaky_relu(self.norm1(inputs), self.negative_slope))
        x = self.deconv(_common.leaky_relu(self.norm2(x), self.negative_slope))
        return x[:, 1:, 1:, :] + self.shortcut(inputs)[:, 1:, 1:, :]

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, _upsampled(h), _upsampled(w), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            hidden_filters=self.hidden_filters,
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
