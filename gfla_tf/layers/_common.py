"""Helpers shared by the GFLA layers: initialisers, activations, padding, shape checks."""

import keras
from keras import ops

# The GFLA reference initialises every conv/linear weight orthogonally with gain 0.02 and
# every bias with zero, so the initial flow is ~0 and the initial mask ~0.5.
DEFAULT_GAIN = 0.02
NEGATIVE_SLOPE = 0.1


def default_kernel_initializer():
    """Returns the reference's weight initialiser (orthogonal, gain 0.02)."""
    return keras.initializers.Orthogonal(gain=DEFAULT_GAIN)


def get_kernel_initializer(initializer):
    """Resolves ``None`` to the reference initialiser, anything else with keras."""
    if initializer is None:
        return default_kernel_initializer()
    return keras.initializers.get(initializer)


def statistics_dtype(compute_dtype):
    """float32 for half-precision compute dtypes (statistics, sampling), else unchanged."""
    return "float32" if compute_dtype in ("float16", "bfloat16") else compute_dtype


def leaky_relu(x, negative_slope):
    return ops.leaky_relu(x, negative_slope=negative_slope)


def reflect_pad(x, pad):
    """Reflection padding of the two spatial axes of an NHWC tensor (PyTorch ReflectionPad2d)."""
    return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="reflect")


def zero_pad(x, pad):
    """Zero padding of the two spatial axes of an NHWC tensor (PyTorch Conv2d padding)."""
    return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])


def edge_pad(x, kernel_size):
    """Pads an NHWC tensor by replicating its border: k//2 before and k-1-k//2 after.

    Gathers of clamped indices rather than ``tf.pad``, which has no edge mode, so the graph
    stays within TFLite builtin ops.
    """
    k = kernel_size
    half = k // 2
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    rows = ops.clip(ops.arange(-half, height + k - 1 - half), 0, height - 1)
    cols = ops.clip(ops.arange(-half, width + k - 1 - half), 0, width - 1)
    return ops.take(ops.take(x, rows, axis=1), cols, axis=2)


def check_rank4(shape, name, layer_name, channels=None):
    """Raises ValueError unless ``shape`` is [batch, height, width, channels]."""
    if len(shape) != 4:
        raise ValueError(
            f"{layer_name}: {name} must have rank 4 [batch, height, width, channels], "
            f"got shape {tuple(shape)}"
        )
    if channels is not None and shape[-1] is not None and shape[-1] != channels:
        raise ValueError(
            f"{layer_name}: {name} must have {channels} channels, got shape {tuple(shape)}"
        )
    if shape[-1] is None:
        raise ValueError(
            f"{layer_name}: the channel dimension of {name} must be known, got {tuple(shape)}"
        )


def conv_kwargs(layer):
    """Keyword arguments shared by every conv a GFLA block creates."""
    return dict(
        kernel_initializer=layer.kernel_initializer,
        bias_initializer="zeros",
        dtype=layer.dtype_policy,
    )
