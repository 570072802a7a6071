"""The local-attention op family: ``block_extract`` and ``local_attention``.

Every op takes ``impl``:

* ``"custom"``: the compiled library (C++ CPU kernels, CUDA kernels where built). Raises
  if the library cannot be loaded.
* ``"reference"``: pure TensorFlow ops only (XLA-compilable, TFLite builtin ops, loads in
  any TensorFlow process). Used for export.
* ``"auto"`` (default): custom when the library loads, else reference, with one warning
  that names the reason.

The library is loaded lazily on first use; ``import gfla_tf.ops`` never fails because of
it. ``status()`` reports what was found.

Arguments are validated once, before dispatch, by ``gfla_tf.ops._validation``: a bad
argument raises the same exception with the same message whichever impl runs
(``ValueError`` when static shapes or dtypes show it, ``tf.errors.InvalidArgumentError``
when only the run time does).
"""

import tensorflow as tf

# _custom only defines the wrappers and registers the gradients: it loads nothing.
from gfla_tf.ops import _custom, _validation, reference
from gfla_tf.ops._loader import library_available, status
from gfla_tf.ops._validation import IMPLS


def resolve_impl(impl: str) -> str:
    """Maps ``impl`` to "custom" or "reference".

    Args:
      impl: "auto", "custom" or "reference".

    Returns:
      "custom" or "reference".

    Raises:
      ValueError: if ``impl`` is not one of IMPLS.
      RuntimeError: if ``impl == "custom"`` and the library cannot be loaded.
    """
    _validation.check_impl(impl)
    if impl == "reference":
        return "reference"
    if library_available(required=(impl == "custom")):
        return "custom"
    return "reference"


def block_extract(
    source: tf.types.experimental.TensorLike,
    flow: tf.types.experimental.TensorLike,
    kernel_size: int,
    impl: str = "auto",
) -> tf.Tensor:
    """Samples a k x k block of ``source`` around every flow-displaced target position.

    Args:
      source: [B, Hs, Ws, C] float tensor (float16, bfloat16, float32 or float64).
      flow: [B, H, W, 2] floating-point backward flow in pixels; channel 0 is x, 1 is y.
      kernel_size: k, an integer >= 1.
      impl: "auto", "custom" or "reference".

    Returns:
      [B, H, W, k*k, C]: entry ``n = i*k + j`` is ``source`` sampled bilinearly (border
      clamped taps) at ``(y + flow_y + i - k//2, x + flow_x + j - k//2)``.

    Raises:
      ValueError: bad ``impl``, ``kernel_size`` or dtype, or shapes that are wrong in
        their static form (always the case in eager mode). The same for every impl.
      tf.errors.InvalidArgumentError: shapes whose problem only shows at run time
        (dimensions unknown while tracing a ``tf.function``). The same for every impl.
      RuntimeError: ``impl="custom"`` and the library cannot be loaded.
    """
    _validation.check_impl(impl)
    source, flow, _ = _validation.validate(source, flow, kernel_size, op="block_extract")
    if resolve_impl(impl) == "custom":
        return _custom._block_extract(source, flow, kernel_size)
    return reference._block_extract(source, flow, kernel_size)


def local_attention(
    source: tf.types.experimental.TensorLike,
    flow: tf.types.experimental.TensorLike,
    attention: tf.types.experimental.TensorLike,
    kernel_size: int,
    impl: str = "auto",
) -> tf.Tensor:
    """Fused local attention: ``sum_n attention[..., n] * block[..., n, :] / k**2``.

    Args:
      source: [B, Hs, Ws, C] float tensor.
      flow: [B, H, W, 2] floating-point backward flow in pixels; channel 0 is x, 1 is y.
      attention: [B, H, W, k*k] floating-point attention weights.
      kernel_size: k, an integer >= 1.
      impl: "auto", "custom" or "reference".

    Returns:
      [B, H, W, C] tensor.

    Raises:
      ValueError: bad ``impl``, ``kernel_size`` or dtype, or shapes that are wrong in
        their static form (always the case in eager mode). The same for every impl.
      tf.errors.InvalidArgumentError: shapes whose problem only shows at run time
        (dimensions unknown while tracing a ``tf.function``). The same for every impl.
      RuntimeError: ``impl="custom"`` and the library cannot be loaded.
    """
    _validation.check_impl(impl)
    source, flow, attention = _validation.validate(
        source, flow, kernel_size, attention, op="local_attention"
    )
    if resolve_impl(impl) == "custom":
        return _custom._local_attention(source, flow, attention, kernel_size)
    return reference._local_attention(source, flow, attention, kernel_size)


__all__ = [
    "IMPLS",
    "block_extract",
    "library_available",
    "local_attention",
    "resolve_impl",
    "status",
]
