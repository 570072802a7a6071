"""The local attention block of the GFLA renderer (kernel prediction + local sampling)."""

import keras
from keras import ops

from gfla_tf import ops as gfla_ops
from gfla_tf.layers import _common
from gfla_tf.ops import _validation


@keras.saving.register_keras_serializable(package="gfla")
class LocalAttention(keras.layers.Layer):
    """Warps a source feature map to the target with a flow and a predicted local kernel.

    For every target position: the k x k source patch around the flow-displaced position
    (bilinear, border-replicate) and the k x k target patch around the position itself are
    flattened and concatenated (target first, then source), mapped by a dense layer to
    ``hidden`` units, LeakyReLU(0.1), a dense layer to k*k logits and a softmax. The output
    is the attention-weighted average of the source patch, ``sum_n a_n v_n / k**2`` (the
    1/k**2 factor is part of the reference model).

    The dense layers are the reference's Conv(k, stride k) and 1x1 conv over the block
    layout: their kernels are the PyTorch weights transposed to (k, k, 2C, hidden) and
    flattened, so the flattening order is (row offset, column offset, channel).

    The ops and the softmax run in float32 when the compute dtype is float16/bfloat16. A
    layer whose op resolves to the compiled library sets ``supports_jit = False``: Keras then keeps ``jit_compile`` off for
    any model that contains it (XLA cannot compile the custom op).

    Args:
      kernel_size: k, the patch size (3 or 5 in GFLA).
      hidden: units of the kernel prediction network (128 in GFLA).
      negative_slope: slope of the LeakyReLU (0.1 in GFLA).
      impl: op implementation, "auto", "custom" or "reference" (see ``gfla_tf.ops``).
      kernel_initializer: dense weight initialiser; None = orthogonal with gain 0.02.
      **kwargs: base layer arguments.

    Call arguments:
      source: [B, H, W, C] source feature map.
      target: [B, H, W, C] target feature map.
      flow: [B, H, W, 2] backward flow in pixels (channel 0 = x, 1 = y).

    Returns:
      [B, H, W, C] source features warped to the target.

    Example:
      >>> attn = LocalAttention(kernel_size=3, hidden=16)
      >>> out = attn(source, target, flow)  # source/target (1, 8, 8, 4), flow (1, 8, 8, 2)

    Reference:
      Ren et al., "Deep Image Spatial Transformation for Person Image Generation"
      (GFLA), CVPR 2020, Sec. 3.2.
    """

    def __init__(
        self,
        kernel_size=3,
        hidden=128,
        negative_slope=0.1,
        impl="auto",
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validation.check_kernel_size(kernel_size)
        _validation.check_impl(impl)
        if int(hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden!r}")
        self.kernel_size = kernel_size
        self.hidden = int(hidden)
        self.negative_slope = float(negative_slope)
        self.impl = impl
        self.kernel_initializer = _common.get_kernel_initializer(kernel_initializer)
        self.supports_jit = not uses_custom_op(impl)
        kw = _common.conv_kwargs(self)
        self.hidden_dense = keras.layers.Dense(self.hidden, name="hidden_dense", **kw)
        self.logits_dense = keras.layers.Dense(kernel_size * kernel_size, name="logits_dense", **kw)

    def build(self, source_shape, target_shape, flow_shape):
        try:
            # The ops' own validation: the block the layer extracts is block_extract's output.
            _validation.check_shapes(source_shape, flow_shape, self.kernel_size)
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}") from None
        _common.check_rank4(source_shape, "source", self.name)
        _common.check_rank4(target_shape, "target", self.name, channels=source_shape[-1])
        kk = self.kernel_size * self.kernel_size
        # A huge kernel_size with an unknown batch passes the op checks but not Keras.
        _validation.check_element_count(
            f"{self.name}: hidden_dense kernel", [kk * 2 * source_shape[-1], self.hidden]
        )
        b, h, w = flow_shape[:3]
        self.hidden_dense.build((b, h, w, kk * 2 * source_shape[-1]))
        self.logits_dense.build((b, h, w, self.hidden))

    def call(self, source, target, flow):
        k = self.kernel_size
        impl = gfla_ops.resolve_impl(self.impl)
        op_dtype = _common.statistics_dtype(self.compute_dtype)
        source32 = ops.cast(source, op_dtype)
        flow32 = ops.cast(flow, op_dtype)
        source_block = gfla_ops.block_extract(source32, flow32, k, impl=impl)
        x = self._hidden(source_block, target)
        x = _common.leaky_relu(x, self.negative_slope)
        attention = ops.softmax(ops.cast(self.logits_dense(x), op_dtype), axis=-1)
        if impl == "custom":
            out = gfla_ops.local_attention(source32, flow32, attention, k, impl=impl)
        else:
            # The block is already materialised for the kernel prediction network: reuse it
            # rather than sampling the source a second time (same formula as the op).
            out = ops.einsum("bhwn,bhwnc->bhwc", attention, source_block) / float(k * k)
        return ops.cast(out, self.compute_dtype)

    def _hidden(self, source_block, target):
        """The first layer of the kernel-prediction network on each (target, source) patch pair.

        ``hidden_dense`` holds the reference's weight over the flattened pair (for every
        offset n: the target patch's C channels, then the source patch's C). The target half
        is applied as an edge-padded k x k convolution, which is the same sum, so neither the
        target unfold nor the concatenated pair is materialised.
        """
        k = self.kernel_size
        kk = k * k
        channels = target.shape[-1]
        dtype = self.compute_dtype
        kernel = ops.reshape(ops.cast(self.hidden_dense.kernel, dtype), (kk, 2 * channels, -1))
        target_kernel = ops.reshape(kernel[:, :channels, :], (k, k, channels, self.hidden))
        source_kernel = ops.reshape(kernel[:, channels:, :], (kk * channels, self.hidden))
        x = ops.conv(_common.edge_pad(ops.cast(target, dtype), k), target_kernel, padding="valid")
        shape = ops.shape(source_block)
        flat = ops.reshape(ops.cast(source_block, dtype), (-1, kk * channels))
        from_source = ops.reshape(
            ops.matmul(flat, source_kernel), (shape[0], shape[1], shape[2], self.hidden)
        )
        return x + from_source + ops.cast(self.hidden_dense.bias, dtype)

    def compute_output_shape(self, source_shape, target_shape, flow_shape):
        return tuple(flow_shape[:3]) + (source_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            hidden=self.hidden,
            negative_slope=self.negative_slope,
            impl=self.impl,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


def uses_custom_op(impl: str) -> bool:
    """Whether ``impl`` resolves to the compiled library (never raises).

    Args:
      impl: "auto", "custom" or "reference".

    Returns:
      True for "custom", and for "auto" when the library loads.
    """
    if impl == "custom":
        return True
    if impl == "auto":
        return gfla_ops.library_available()
    return False
