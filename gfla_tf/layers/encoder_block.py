"""The pre-activation down-sampling block of the GFLA encoders."""

import keras

from gfla_tf.layers import _common
from gfla_tf.layers.instance_normalization import InstanceNormalization


@keras.saving.register_keras_serializable(package="gfla")
class EncoderBlock(keras.layers.Layer):
    """IN -> LeakyReLU -> Conv4x4/2 (pad 1) -> IN -> LeakyReLU -> Conv3x3 (pad 1).

    Halves the spatial size. The block normalises its input first, so the first block of
    an encoder normalises the raw image/pose channels too, as the reference does.

    Args:
      filters: output channels.
      negative_slope: slope of the LeakyReLU (0.1 in GFLA).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base layer arguments.

    Example:
      >>> block = EncoderBlock(64)
      >>> y = block(np.zeros((1, 32, 32, 3), "float32"))  # (1, 16, 16, 64)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020.
    """

    def __init__(
        self, filters, negative_slope=0.1, kernel_initializer=None, normalize_input=True, **kwargs
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters!r}")
        self.filters = int(filters)
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        kw = _common.conv_kwargs(self)
        self.normalize_input = bool(normalize_input)
        self.norm1 = (
            InstanceNormalization(dtype=self.dtype_policy, name="norm1")
            if self.normalize_input
            else None
        )
        # Explicit pad 1 + 'valid' reproduces PyTorch's Conv2d(4, 2, padding=1) exactly;
        # Keras 'same' would pad asymmetrically.
        self.conv1 = keras.layers.Conv2D(self.filters, 4, strides=2, name="conv1", **kw)
        self.norm2 = InstanceNormalization(dtype=self.dtype_policy, name="norm2")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv2", **kw)

    def build(self, input_shape):
        _common.check_rank4(input_shape, "inputs", self.name)
        b, h, w, c = input_shape
        if self.norm1 is not None:
            self.norm1.build(input_shape)
        self.conv1.build((b, None if h is None else h + 2, None if w is None else w + 2, c))
        mid = (b, None if h is None else h // 2, None if w is None else w // 2, self.filters)
        self.norm2.build(mid)
        self.conv2.build(mid)

    def call(self, inputs):
        x = inputs if self.norm1 is None else self.norm1(inputs)
        x = _common.leaky_relu(x, self.negative_slope)
        x = self.conv1(_common.zero_pad(x, 1))
        x = _common.leaky_relu(self.norm2(x), self.negative_slope)
        return self.conv2(x)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else h // 2, None if w is None else w // 2, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            normalize_input=self.normalize_input,
        )
        return config
