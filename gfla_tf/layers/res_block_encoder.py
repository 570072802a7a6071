"""The down-sampling residual block of the GFLA discriminator."""

import keras
from keras import ops

from gfla_tf.layers import _common
from gfla_tf.layers.spectral_normalization import SpectralNormalization


@keras.saving.register_keras_serializable(package="gfla")
class ResBlockEncoder(keras.layers.Layer):
    """Residual down-sampling block without normalisation, spectral norm on every conv.

    Main path: LReLU -> Conv3x3 (in -> hidden) -> LReLU -> Conv4x4/2 pad 1 (hidden ->
    filters); shortcut: AvgPool 2x2 -> Conv1x1 (in -> filters); output is their sum.

    Args:
      filters: output channels.
      hidden_filters: channels after the first conv; None = ``filters``.
      negative_slope: slope of the LeakyReLU (0.1 in GFLA).
      use_spectral_norm: wrap every conv in ``SpectralNormalization`` (True in GFLA).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base layer arguments.

    Example:
      >>> block = ResBlockEncoder(64, hidden_filters=32)
      >>> y = block(np.zeros((1, 32, 32, 32), "float32"))  # (1, 16, 16, 64)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020.
    """

    def __init__(
        self,
        filters,
        hidden_filters=None,
        negative_slope=0.1,
        use_spectral_norm=True,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters!r}")
        if hidden_filters is not None and int(hidden_filters) < 1:
            raise ValueError(f"hidden_filters must be None or >= 1, got {hidden_filters!r}")
        self.filters = int(filters)
        self.hidden_filters = None if hidden_filters is None else int(hidden_filters)
        self.negative_slope = float(negative_slope)
        self.use_spectral_norm = bool(use_spectral_norm)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        hidden = self.hidden_filters or self.filters
        self.conv1 = self._conv(hidden, 3, 1, "same", "conv1")
        self.conv2 = self._conv(self.filters, 4, 2, "valid", "conv2")
        self.bypass = self._conv(self.filters, 1, 1, "valid", "bypass")

    def _conv(self, filters, size, strides, padding, name):
        conv = keras.layers.Conv2D(
            filters,
            size,
            strides=strides,
            padding=padding,
            name=name if not self.use_spectral_norm else name + "_conv",
            **_common.conv_kwargs(self),
        )
        if self.use_spectral_norm:
            return SpectralNormalization(conv, dtype=self.dtype_policy, name=name)
        return conv

    def build(self, input_shape):
        _common.check_rank4(input_shape, "inputs", self.name)
        b, h, w, c = input_shape
        hidden = self.hidden_filters or self.filters
        self.conv1.build(input_shape)
        self.conv2.build((b, None if h is None else h + 2, None if w is None else w + 2, hidden))
        self.bypass.build((b, None if h is None else h // 2, None if w is None else w // 2, c))

    def call(self, inputs, training=None):
        kw = {"training": training} if self.use_spectral_norm else {}
        x = self.conv1(_common.leaky_relu(inputs, self.negative_slope), **kw)
        x = _common.leaky_relu(x, self.negative_slope)
        x = self.conv2(_common.zero_pad(x, 1), **kw)
        shortcut = ops.average_pool(inputs, pool_size=2, strides=2, padding="valid")
        return x + self.bypass(shortcut, **kw)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else h // 2, None if w is None else w // 2, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            hidden_filters=self.hidden_filters,
            negative_slope=self.negative_slope,
            use_spectral_norm=self.use_spectral_norm,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
