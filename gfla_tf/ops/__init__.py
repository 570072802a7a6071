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
"""

from gfla_tf.ops import reference
from gfla_tf.ops._loader import library_available, status

IMPLS = ("auto", "custom", "reference")


def resolve_impl(impl):
    """Maps ``impl`` to "custom" or "reference".

    Args:
      impl: "auto", "custom" or "reference".

    Returns:
      "custom" or "reference".

    Raises:
      ValueError: if ``impl`` is not one of IMPLS.
      RuntimeError: if ``impl == "custom"`` and the library cannot be loaded.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "reference":
        return "reference"
    if library_available(required=(impl == "custom")):
        return "custom"
    return "reference"


def block_extract(source, flow, kernel_size, impl="auto"):
    """Samples a k x k block of ``source`` around every flow-displaced target position.

    Args:
      source: [B, Hs, Ws, C] float tensor (float16, float32 or float64).
      flow: [B, H, W, 2] backward flow in pixels; channel 0 is x, channel 1 is y.
      kernel_size: k, an integer >= 1.
      impl: "auto", "custom" or "reference".

    Returns:
      [B, H, W, k*k, C]: entry ``n = i*k + j`` is ``source`` sampled bilinearly (border
      clamped taps) at ``(y + flow_y + i - k//2, x + flow_x + j - k//2)``.

    Raises:
      ValueError: bad ``impl`` or (reference path) bad shapes.
      tf.errors.InvalidArgumentError: (custom path) bad shapes.
    """
    if resolve_impl(impl) == "custom":
        from gfla_tf.ops import _custom

        return _custom.block_extract(source, flow, kernel_size)
    return reference.block_extract(source, flow, kernel_size)


def local_attention(source, flow, attention, kernel_size, impl="auto"):
    """Fused local attention: ``sum_n attention[..., n] * block[..., n, :] / k**2``.

    Args:
      source: [B, Hs, Ws, C] float tensor.
      flow: [B, H, W, 2] backward flow in pixels; channel 0 is x, channel 1 is y.
      attention: [B, H, W, k*k] attention weights.
      kernel_size: k, an integer >= 1.
      impl: "auto", "custom" or "reference".

    Returns:
      [B, H, W, C] tensor.

    Raises:
      ValueError: bad ``impl`` or (reference path) bad shapes.
      tf.errors.InvalidArgumentError: (custom path) bad shapes.
    """
    if resolve_impl(impl) == "custom":
        from gfla_tf.ops import _custom

        return _custom.local_attention(source, flow, attention, kernel_size)
    return reference.local_attention(source, flow, attention, kernel_size)


__all__ = [
    "IMPLS",
    "block_extract",
    "library_available",
    "local_attention",
    "resolve_impl",
    "status",
]
