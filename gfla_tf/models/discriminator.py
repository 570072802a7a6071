"""The GFLA discriminator: an unconditional residual patch discriminator."""

import keras
from keras import ops

from gfla_tf.layers import ResBlockEncoder, SpectralNormalization, _common
from gfla_tf.models.common import channel_schedule


@keras.saving.register_keras_serializable(package="gfla")
class Discriminator(keras.Model):
    """Maps an image to a map of real/fake scores (LSGAN: no sigmoid).

    ``layers`` ``ResBlockEncoder``s (spectral norm on every conv, no normalisation; the
    first applies LeakyReLU to the raw image as the reference does), channels ndf * 2**i
    capped at ``max_channels``, hidden = input channels (ndf for the first); then LReLU ->
    spectral-normalised Conv1x1 -> 1 channel.

    Args:
      image_height, image_width: input size, used to build the model.
      ndf: channels of the first block (32).
      max_channels: channel cap (128).
      layers: residual blocks (4 for DeepFashion, 3 for Market).
      negative_slope: LeakyReLU slope (0.1).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base model arguments.

    Call:
      ``discriminator(image [B,H,W,3], training=...)`` -> [B, H/2**layers, W/2**layers, 1]
      float32. ``training=True`` runs one spectral-norm power iteration per conv.

    Example:
      >>> d = Discriminator(64, 64, ndf=4, max_channels=16)
      >>> scores = d(images)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020; Mao et al., "Least Squares Generative Adversarial Networks",
      ICCV 2017.
    """

    def __init__(
        self,
        image_height=256,
        image_width=256,
        ndf=32,
        max_channels=128,
        layers=4,
        negative_slope=0.1,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(layers) < 1:
            raise ValueError(f"layers must be >= 1, got {layers!r}")
        self.image_height = int(image_height)
        self.image_width = int(image_width)
        self.ndf = int(ndf)
        self.max_channels = int(max_channels)
        self.num_layers = int(layers)
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        common = dict(
            negative_slope=self.negative_slope,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
        )
        channels = channel_schedule(self.ndf, self.num_layers, self.max_channels)
        self.blocks = [ResBlockEncoder(self.ndf, hidden_filters=self.ndf, name="block0", **common)]
        for i in range(1, self.num_layers):
            self.blocks.append(
                ResBlockEncoder(
                    channels[i], hidden_filters=channels[i - 1], name=f"encoder{i - 1}", **common
                )
            )
        self.conv = SpectralNormalization(
            keras.layers.Conv2D(
                1,
                1,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name="conv_conv",
            ),
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape=None):
        if input_shape is None:
            input_shape = (None, self.image_height, self.image_width, 3)
        x = tuple(input_shape)
        _common.check_rank4(x, "images", self.name, channels=3)
        for block in self.blocks:
            block.build(x)
            x = block.compute_output_shape(x)
        self.conv.build(x)
        self.built = True

    def call(self, images, training=None):
        x = ops.cast(images, self.compute_dtype)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.conv(_common.leaky_relu(x, self.negative_slope), training=training)
        return ops.cast(x, "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            image_height=self.image_height,
            image_width=self.image_width,
            ndf=self.ndf,
            max_channels=self.max_channels,
            layers=self.num_layers,
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
