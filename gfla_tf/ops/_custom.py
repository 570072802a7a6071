"""Wrappers of the compiled local-attention ops and their gradient registrations.

Importing this module registers the gradients of ``GflaLocalAttention`` and
``GflaBlockExtract``; the wrappers load the library (``_loader``) on first use. They are
called by ``gfla_tf.ops.block_extract`` / ``local_attention`` after ``_validation`` has
checked the arguments, exactly as for the reference implementation; the kernels' own
OP_REQUIRES checks (same wording) are the last line of defence.
"""

import tensorflow as tf

from gfla_tf.ops import _loader


def _prepare(source, flow, attention=None):
    """Casts validated inputs to a kernel dtype; returns them and the output dtype or None."""
    out_dtype = None
    if source.dtype == tf.bfloat16:
        # No bfloat16 kernels: compute in float32 (mixed_bfloat16 Keras policies).
        out_dtype = tf.bfloat16
        source = tf.cast(source, tf.float32)
    flow = tf.cast(flow, source.dtype)
    if attention is not None:
        attention = tf.cast(attention, source.dtype)
    return source, flow, attention, out_dtype


def _block_extract(source, flow, kernel_size):
    """``block_extract`` on arguments ``_validation.validate`` accepted."""
    source, flow, _, out_dtype = _prepare(source, flow)
    lib = _loader.load_library()
    block = lib.gfla_block_extract(source=source, flow=flow, kernel_size=kernel_size)
    return block if out_dtype is None else tf.cast(block, out_dtype)


def _local_attention(source, flow, attention, kernel_size):
    """``local_attention`` on arguments ``_validation.validate`` accepted."""
    source, flow, attention, out_dtype = _prepare(source, flow, attention)
    lib = _loader.load_library()
    out = lib.gfla_local_attention(
        source=source, flow=flow, attention=attention, kernel_size=kernel_size
    )
    return out if out_dtype is None else tf.cast(out, out_dtype)


@tf.RegisterGradient("GflaLocalAttention")
def _local_attention_grad(op, grad):
    """Gradients w.r.t. source, flow and attention (first order only)."""
    source, flow, attention = op.inputs
    grad_source, grad_flow, grad_attention = _loader.load_library().gfla_local_attention_grad(
        grad=grad,
        source=source,
        flow=flow,
        attention=attention,
        kernel_size=op.get_attr("kernel_size"),
    )
    return grad_source, grad_flow, grad_attention


@tf.RegisterGradient("GflaBlockExtract")
def _block_extract_grad(op, grad):
    """Gradients w.r.t. source and flow (first order only)."""
    source, flow = op.inputs
    grad_source, grad_flow = _loader.load_library().gfla_block_extract_grad(
        grad=grad, source=source, flow=flow, kernel_size=op.get_attr("kernel_size")
    )
    return grad_source, grad_flow
