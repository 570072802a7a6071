"""The global flow field estimator F of GFLA."""

import keras
from keras import ops

from gfla_tf.layers import EncoderBlock, Jump, PosePriorFlow, ResBlockDecoder, _common
from gfla_tf.models.common import channel_schedule, check_input_dict


def _scaled(size, factor):
    return None if size is None else size // factor


@keras.saving.register_keras_serializable(package="gfla")
class FlowEstimator(keras.Model):
    """Predicts a backward flow and an occlusion mask per attention scale.

    Input: concat(source image 3, source pose K, target pose K). An encoder of
    ``layers`` pre-activation ``EncoderBlock``s (channels ngf * 2**i capped at
    ``max_channels``), then ``layers - min(attention_layers)`` ``ResBlockDecoder`` steps
    (hidden = output channels) each followed by ``+ Jump(encoder feature of that scale)``;
    at every attention scale a 3x3 conv head gives the flow (2 channels, pixels of that
    scale, no activation) and another the mask (1 channel, sigmoid).

    With ``pose_prior`` (not in the paper; off for the authors' checkpoints) F also gets
    the flow that moves each bone of the source skeleton onto the target's
    (``PosePriorFlow``) as 2 more input channels, and every flow head predicts a
    correction that is added to that prior, average-pooled to its scale.

    Args:
      num_keypoints: pose heatmap channels K (18).
      ngf: channels of the first encoder block (32).
      max_channels: channel cap (256).
      layers: encoder blocks (5).
      attention_layers: encoder layer index of each attention scale, coarse to fine
        (layer l = 1/2**l resolution); (3, 2) for DeepFashion.
      negative_slope: LeakyReLU slope (0.1).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      pose_prior: start from the skeletons' bone-wise flow (False).
      **kwargs: base model arguments.

    Call:
      ``flow_estimator({"source_image", "source_pose", "target_pose"})`` ->
      ``{"flows": [[B, h, w, 2] per scale], "masks": [[B, h, w, 1] per scale]}``, coarse
      to fine, float32.

    Example:
      >>> f = FlowEstimator(ngf=4, max_channels=16)
      >>> out = f({"source_image": x, "source_pose": ps, "target_pose": pt})

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020, Sec. 3.1.
    """

    def __init__(
        self,
        num_keypoints=18,
        ngf=32,
        max_channels=256,
        layers=5,
        attention_layers=(3, 2),
        negative_slope=0.1,
        kernel_initializer=None,
        pose_prior=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        attention_layers = tuple(int(a) for a in attention_layers)
        if not attention_layers:
            raise ValueError("attention_layers must name at least one scale")
        if list(attention_layers) != sorted(set(attention_layers), reverse=True):
            raise ValueError(
                f"attention_layers must be distinct and coarse to fine (decreasing), "
                f"got {attention_layers}"
            )
        if min(attention_layers) < 1 or max(attention_layers) >= layers:
            raise ValueError(
                f"attention_layers must lie in [1, layers - 1] = [1, {layers - 1}], "
                f"got {attention_layers}"
            )
        self.num_keypoints = int(num_keypoints)
        self.ngf = int(ngf)
        self.max_channels = int(max_channels)
        self.num_layers = int(layers)
        self.attention_layers = attention_layers
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        self.pose_prior = bool(pose_prior)
        self.prior = PosePriorFlow(name="pose_prior") if self.pose_prior else None
        common = dict(
            negative_slope=self.negative_slope,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
        )
        conv = dict(kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy)

        self.encoder_channels = channel_schedule(self.ngf, self.num_layers, self.max_channels)
        self.encoders = [
            EncoderBlock(c, name=f"encoder{i}", **common)
            for i, c in enumerate(self.encoder_channels)
        ]
        self.num_decoders = self.num_layers - min(attention_layers)
        self.decoders, self.jumps = [], []
        # Decoder steps that end at an attention scale carry a flow head and a mask head.
        self.head_steps = []
        self.flow_heads, self.mask_heads = [], []
        for i in range(self.num_decoders):
            channels = self.encoder_channels[self.num_layers - i - 2]
            self.decoders.append(ResBlockDecoder(channels, channels, name=f"decoder{i}", **common))
            self.jumps.append(Jump(channels, name=f"jump{i}", **common))
            if self.num_layers - i - 1 in attention_layers:
                self.head_steps.append(i)
                self.flow_heads.append(
                    keras.layers.Conv2D(2, 3, padding="same", name=f"flow{i}", **conv)
                )
                self.mask_heads.append(
                    keras.layers.Conv2D(1, 3, padding="same", name=f"mask{i}", **conv)
                )

    @property
    def attention_scales(self):
        """Down-sampling factor of each flow, coarse to fine (e.g. [8, 4])."""
        return [2**a for a in self.attention_layers]

    def build(self, input_shape=None):
        shape = _input_shape(input_shape)
        b, h, w = shape[:3]
        x = (b, h, w, self._input_channels)
        for i, enc in enumerate(self.encoders):
            enc.build(x)
            x = (b, _scaled(h, 2 ** (i + 1)), _scaled(w, 2 ** (i + 1)), self.encoder_channels[i])
        for i, (dec, jump) in enumerate(zip(self.decoders, self.jumps)):
            dec.build(x)
            factor = 2 ** (self.num_layers - i - 1)
            x = (b, _scaled(h, factor), _scaled(w, factor), dec.filters)
            jump.build(x)
            if i in self.head_steps:
                self.flow_heads[self.head_steps.index(i)].build(x)
                self.mask_heads[self.head_steps.index(i)].build(x)
        self.built = True

    @property
    def _input_channels(self):
        return 3 + 2 * self.num_keypoints + (2 if self.pose_prior else 0)

    def call(self, inputs, training=None):
        check_input_dict(inputs, "FlowEstimator")
        parts = [inputs["source_image"], inputs["source_pose"], inputs["target_pose"]]
        if self.pose_prior:
            prior = self.prior(inputs["source_pose"], inputs["target_pose"])
            width = ops.cast(ops.shape(prior)[2], "float32")
            # In units of half the image width, like the [-1, 1] images beside it.
            parts.append(prior * (2.0 / width))
        x = ops.concatenate([ops.cast(p, self.compute_dtype) for p in parts], axis=-1)
        features = []
        for enc in self.encoders:
            x = enc(x)
            features.append(x)
        flows, masks = [], []
        for i, (dec, jump) in enumerate(zip(self.decoders, self.jumps)):
            x = dec(x) + jump(features[self.num_layers - i - 2])
            if i in self.head_steps:
                head = self.head_steps.index(i)
                flow = ops.cast(self.flow_heads[head](x), "float32")
                if self.pose_prior:
                    scale = self.attention_scales[head]
                    flow = flow + ops.average_pool(prior, scale, scale, "valid") / scale
                flows.append(flow)
                masks.append(ops.sigmoid(ops.cast(self.mask_heads[head](x), "float32")))
        return {"flows": flows, "masks": masks}

    def get_config(self):
        config = super().get_config()
        config.update(
            num_keypoints=self.num_keypoints,
            ngf=self.ngf,
            max_channels=self.max_channels,
            layers=self.num_layers,
            attention_layers=list(self.attention_layers),
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            pose_prior=self.pose_prior,
        )
        return config


def _input_shape(input_shape):
    """Extracts [B, H, W, C] of the source image from a build shape (dict or tuple)."""
    if input_shape is None:
        return (None, None, None, 3)
    if isinstance(input_shape, dict):
        return tuple(input_shape["source_image"])
    return tuple(input_shape)
