"""The GFLA generator: flow estimator F plus local neural texture renderer G."""

import keras
from keras import ops

from gfla_tf import ops as gfla_ops
from gfla_tf.layers import (
    EncoderBlock,
    LocalAttention,
    OutputBlock,
    ResBlock,
    ResBlockDecoder,
    _common,
)
from gfla_tf.models.common import channel_schedule, check_input_dict
from gfla_tf.models.flow_estimator import FlowEstimator


def _scaled(size, factor):
    return None if size is None else size // factor


@keras.saving.register_keras_serializable(package="gfla")
class GFLAGenerator(keras.Model):
    """Renders the person of a source image in a target pose.

    ``flow_estimator`` (F) predicts a flow and a mask per attention scale from the source
    image and both poses. The renderer encodes the source image (for the textures) and the
    target pose (``EncoderBlock``s, channels ngf * 2**i capped at ``max_channels``); its
    decoder runs ``renderer_layers`` steps, coarse to fine; before a step at an attention
    scale ``f = (1 - m) f + m LocalAttention(source_feature, f, flow)``; each step is
    ``renderer_blocks - 1`` ``ResBlock``s and a ``ResBlockDecoder`` (hidden = input
    channels); an ``OutputBlock`` gives the image (tanh).

    Args:
      image_height, image_width: input size; both divisible by ``2**flow_layers``.
      num_keypoints: pose heatmap channels (18).
      flow_ngf, flow_max_channels, flow_layers: F's widths and depth (32, 256, 5).
      renderer_ngf, renderer_max_channels, renderer_layers, renderer_blocks: G's widths,
        depth and blocks per decoder step (64, 512, 3, 2).
      attention_layers: encoder layer index of each attention scale, coarse to fine (layer
        l = 1/2**l resolution): (3, 2) for DeepFashion, (2,) for Market.
      kernel_sizes: local attention patch size per attention scale ((3, 5) / (3,)).
      attention_hidden: units of the kernel prediction network (128).
      op_impl: local attention op, "auto", "custom" or "reference". With the compiled op
        the model cannot be XLA-compiled: every ``LocalAttention`` then reports
        ``supports_jit = False`` and Keras resolves ``jit_compile`` to False (also when
        asked for True, with a warning), in this model and in any model containing it.
      negative_slope: LeakyReLU slope (0.1).
      kernel_initializer: conv weight initialiser; None = orthogonal with gain 0.02.
      normalize_source_image: whether the renderer's first source-encoder block
        instance-normalises the raw image, as the reference does (True). False keeps each
        image's absolute colour (no checkpoint of the authors has this variant).
      flow_pose_prior: F refines the flow implied by the two skeletons instead of
        predicting it from scratch (``FlowEstimator(pose_prior=True)``; False as in the
        paper and the authors' checkpoints).
      **kwargs: base model arguments.

    Call:
      ``generator({"source_image": [B,H,W,3] in [-1, 1], "source_pose": [B,H,W,K],
      "target_pose": [B,H,W,K]}, training=...)`` -> ``{"image": [B,H,W,3] in [-1, 1],
      "flows": [[B,h,w,2] per scale, coarse to fine], "masks": [[B,h,w,1] per scale]}``,
      all float32 whatever the dtype policy.

    Example:
      >>> from gfla_tf.configs import deepfashion
      >>> generator = build_generator(deepfashion.get_config("test").model)
      >>> out = generator({"source_image": x, "source_pose": ps, "target_pose": pt})

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020.
    """

    def __init__(
        self,
        image_height=256,
        image_width=256,
        num_keypoints=18,
        flow_ngf=32,
        flow_max_channels=256,
        flow_layers=5,
        renderer_ngf=64,
        renderer_max_channels=512,
        renderer_layers=3,
        renderer_blocks=2,
        attention_layers=(3, 2),
        kernel_sizes=(3, 5),
        attention_hidden=128,
        op_impl="auto",
        negative_slope=0.1,
        kernel_initializer=None,
        normalize_source_image=True,
        flow_pose_prior=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        attention_layers = tuple(int(a) for a in attention_layers)
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if len(kernel_sizes) != len(attention_layers):
            raise ValueError(
                f"kernel_sizes {kernel_sizes} must give one size per attention layer "
                f"{attention_layers}"
            )
        if op_impl not in gfla_ops.IMPLS:
            raise ValueError(f"op_impl must be one of {gfla_ops.IMPLS}, got {op_impl!r}")
        factor = 2 ** int(flow_layers)
        if int(image_height) % factor or int(image_width) % factor:
            raise ValueError(
                f"image_height and image_width must be divisible by 2**flow_layers = "
                f"{factor}, got {image_height}x{image_width}"
            )
        if max(attention_layers) > int(renderer_layers):
            raise ValueError(
                f"attention_layers {attention_layers} must be <= renderer_layers "
                f"({renderer_layers})"
            )
        if int(renderer_blocks) < 1:
            raise ValueError(f"renderer_blocks must be >= 1, got {renderer_blocks!r}")
        self.image_height = int(image_height)
        self.image_width = int(image_width)
        self.num_keypoints = int(num_keypoints)
        self.flow_ngf = int(flow_ngf)
        self.flow_max_channels = int(flow_max_channels)
        self.flow_layers = int(flow_layers)
        self.renderer_ngf = int(renderer_ngf)
        self.renderer_max_channels = int(renderer_max_channels)
        self.renderer_layers = int(renderer_layers)
        self.renderer_blocks = int(renderer_blocks)
        self.attention_layers = attention_layers
        self.kernel_sizes = list(kernel_sizes)
        self.attention_hidden = int(attention_hidden)
        self.op_impl = op_impl
        self.normalize_source_image = bool(normalize_source_image)
        self.flow_pose_prior = bool(flow_pose_prior)
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        common = dict(
            negative_slope=self.negative_slope,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
        )

        self.flow_estimator = FlowEstimator(
            num_keypoints=self.num_keypoints,
            ngf=self.flow_ngf,
            max_channels=self.flow_max_channels,
            layers=self.flow_layers,
            attention_layers=self.attention_layers,
            pose_prior=self.flow_pose_prior,
            name="flow_estimator",
            **common,
        )
        ngf, n_layers = self.renderer_ngf, self.renderer_layers
        self.encoder_channels = channel_schedule(ngf, n_layers, self.renderer_max_channels)
        self.source_encoders = [
            EncoderBlock(
                c,
                name=f"source_encoder{i}",
                normalize_input=self.normalize_source_image or i > 0,
                **common,
            )
            for i, c in enumerate(self.encoder_channels)
        ]
        self.target_encoders = [
            EncoderBlock(c, name=f"target_encoder{i}", **common)
            for i, c in enumerate(self.encoder_channels)
        ]
        # Decoder step i runs at 1/2**(n_layers - i) and keeps the channels of that encoder
        # scale; the last step keeps ngf channels.
        self.decoder_channels = []
        self.res_blocks, self.up_blocks = [], []
        self.attention_steps, self.attention = [], []
        for i in range(n_layers):
            c_in = self.encoder_channels[n_layers - 1 - i]
            c_out = self.encoder_channels[n_layers - 2 - i] if i < n_layers - 1 else ngf
            self.decoder_channels.append((c_in, c_out))
            layer_index = n_layers - i
            if layer_index in self.attention_layers:
                k = kernel_sizes[self.attention_layers.index(layer_index)]
                self.attention_steps.append(i)
                self.attention.append(
                    LocalAttention(
                        kernel_size=k,
                        hidden=self.attention_hidden,
                        impl=op_impl,
                        name=f"attention{i}",
                        **common,
                    )
                )
            for j in range(self.renderer_blocks - 1):
                self.res_blocks.append(ResBlock(name=f"decoder{i}_res{j}", **common))
            self.up_blocks.append(
                ResBlockDecoder(c_out, hidden_filters=c_in, name=f"decoder{i}_up", **common)
            )
        self.output_block = OutputBlock(3, name="output_block", **common)

    @property
    def attention_scales(self):
        """Down-sampling factor of each flow, coarse to fine (e.g. [8, 4])."""
        return [2**a for a in self.attention_layers]

    @property
    def uses_custom_op(self):
        """Whether the local attention runs the compiled op (then no XLA)."""
        return any(not layer.supports_jit for layer in self.attention)

    def input_shapes(self, batch_size=None):
        """The input dict's shapes for this model's image size."""
        h, w, k = self.image_height, self.image_width, self.num_keypoints
        return {
            "source_image": (batch_size, h, w, 3),
            "source_pose": (batch_size, h, w, k),
            "target_pose": (batch_size, h, w, k),
        }

    def build(self, input_shape=None):
        shapes = self.input_shapes() if input_shape is None else dict(input_shape)
        self.flow_estimator.build(shapes)
        b, h, w = shapes["source_image"][:3]
        x_src = tuple(shapes["source_image"])
        x_tgt = tuple(shapes["target_pose"])
        source_shapes = []
        for i, (src, tgt) in enumerate(zip(self.source_encoders, self.target_encoders)):
            src.build(x_src)
            tgt.build(x_tgt)
            factor = 2 ** (i + 1)
            x_src = x_tgt = (b, _scaled(h, factor), _scaled(w, factor), src.filters)
            source_shapes.append(x_src)
        x = x_tgt
        blocks = iter(self.res_blocks)
        for i, up in enumerate(self.up_blocks):
            if i in self.attention_steps:
                attn = self.attention[self.attention_steps.index(i)]
                attn.build(source_shapes[self.renderer_layers - 1 - i], x, x[:3] + (2,))
            for _ in range(self.renderer_blocks - 1):
                next(blocks).build(x)
            up.build(x)
            factor = 2 ** (self.renderer_layers - 1 - i)
            x = (b, _scaled(h, factor), _scaled(w, factor), up.filters)
        self.output_block.build(x)
        self.built = True

    def call(self, inputs, training=None):
        check_input_dict(inputs, "GFLAGenerator")
        flow_out = self.flow_estimator(inputs, training=training)
        flows, masks = flow_out["flows"], flow_out["masks"]
        x = ops.cast(inputs["source_image"], self.compute_dtype)
        source_features = []
        for enc in self.source_encoders:
            x = enc(x)
            source_features.append(x)
        x = ops.cast(inputs["target_pose"], self.compute_dtype)
        for enc in self.target_encoders:
            x = enc(x)
        blocks = iter(self.res_blocks)
        for i, up in enumerate(self.up_blocks):
            if i in self.attention_steps:
                a = self.attention_steps.index(i)
                warped = self.attention[a](
                    source_features[self.renderer_layers - 1 - i], x, flows[a]
                )
                mask = ops.cast(masks[a], self.compute_dtype)
                x = x * (1.0 - mask) + warped * mask
            for _ in range(self.renderer_blocks - 1):
                x = next(blocks)(x)
            x = up(x)
        image = ops.cast(self.output_block(x), "float32")
        return {"image": image, "flows": list(flows), "masks": list(masks)}

    def get_config(self):
        config = super().get_config()
        config.update(
            image_height=self.image_height,
            image_width=self.image_width,
            num_keypoints=self.num_keypoints,
            flow_ngf=self.flow_ngf,
            flow_max_channels=self.flow_max_channels,
            flow_layers=self.flow_layers,
            renderer_ngf=self.renderer_ngf,
            renderer_max_channels=self.renderer_max_channels,
            renderer_layers=self.renderer_layers,
            renderer_blocks=self.renderer_blocks,
            attention_layers=list(self.attention_layers),
            kernel_sizes=list(self.kernel_sizes),
            attention_hidden=self.attention_hidden,
            op_impl=self.op_impl,
            normalize_source_image=self.normalize_source_image,
            flow_pose_prior=self.flow_pose_prior,
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
