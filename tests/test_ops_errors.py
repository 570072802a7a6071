"""Error handling of the local-attention ops: every bad argument gets a specific message.

The custom path raises ``tf.errors.InvalidArgumentError`` both when the shapes are known
while building the op (Python checks) and when they are only known at run time (the
kernels' OP_REQUIRES); the reference raises ``ValueError``.
"""

import pytest
import tensorflow as tf

from gfla_tf import ops
from gfla_tf.ops import _loader

_STATUS = ops.status()
needs_lib = pytest.mark.skipif(
    not _STATUS["loaded"], reason=f"custom op library not built: {_STATUS['reason']}"
)

K = 3
GOOD = {"source": (2, 5, 5, 3), "flow": (2, 4, 4, 2), "attention": (2, 4, 4, 9)}

# (name, overrides of GOOD, kernel_size, message regex)
CASES = [
    ("source_rank", {"source": (5, 5, 3)}, K, r"source must have rank 4"),
    ("flow_rank", {"flow": (2, 4, 4)}, K, r"flow must have rank 4"),
    ("flow_channels", {"flow": (2, 4, 4, 3)}, K, r"flow must have 2 channels"),
    ("batch", {"source": (3, 5, 5, 3)}, K, r"batch mismatch: source has batch 3"),
    ("attention_rank", {"attention": (2, 4, 4)}, K, r"attention must have rank 4"),
    ("attention_channels", {"attention": (2, 4, 4, 8)}, K, r"kernel_size\*\*2 = 9 channels"),
    ("attention_batch", {"attention": (1, 4, 4, 9)}, K, r"batch mismatch: attention has shape"),
    ("attention_height", {"attention": (2, 3, 4, 9)}, K, r"height mismatch: attention"),
    ("attention_width", {"attention": (2, 4, 5, 9)}, K, r"width mismatch: attention"),
    ("kernel_size_zero", {"attention": (2, 4, 4, 0)}, 0, r"kernel_size must be an integer >= 1"),
]
IDS = [c[0] for c in CASES]


def _tensors(overrides):
    shapes = dict(GOOD, **overrides)
    return [tf.ones(shapes[name]) for name in ("source", "flow", "attention")]


def _call(impl, source, flow, attention, k):
    if attention is None:
        return ops.block_extract(source, flow, k, impl=impl)
    return ops.local_attention(source, flow, attention, k, impl=impl)


@needs_lib
@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_custom_eager_errors(name, overrides, k, message):
    source, flow, attention = _tensors(overrides)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _call("custom", source, flow, attention, k)


@needs_lib
@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_custom_runtime_errors_from_kernel(name, overrides, k, message):
    """Shapes unknown when tracing: the kernel's OP_REQUIRES reports them."""
    source, flow, attention = _tensors(overrides)
    lib = _loader.load_library()
    if k < 1:
        # In a graph the shape function rejects the attribute first; eager raw op calls
        # (no shape function) reach the kernel's own check.
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            lib.gfla_local_attention(source=source, flow=flow, attention=attention, kernel_size=k)
        return
    spec = tf.TensorSpec(None, tf.float32)
    fn = tf.function(
        lambda s, f, a: lib.gfla_local_attention(source=s, flow=f, attention=a, kernel_size=k),
        input_signature=[spec, spec, spec],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fn(source, flow, attention)


@needs_lib
@pytest.mark.parametrize("name,overrides,k,message", CASES[:4], ids=IDS[:4])
def test_custom_block_extract_errors(name, overrides, k, message):
    source, flow, _ = _tensors(overrides)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _call("custom", source, flow, None, k)
    spec = tf.TensorSpec(None, tf.float32)
    fn = tf.function(
        lambda s, f: ops.block_extract(s, f, k, impl="custom"), input_signature=[spec, spec]
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fn(source, flow)


@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_reference_raises_value_error(name, overrides, k, message):
    source, flow, attention = _tensors(overrides)
    with pytest.raises(ValueError):
        _call("reference", source, flow, attention, k)


@needs_lib
@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_custom_bad_kernel_size(k):
    source, flow, _ = _tensors({})
    with pytest.raises(tf.errors.InvalidArgumentError, match="kernel_size must be an integer"):
        ops.block_extract(source, flow, k, impl="custom")


@needs_lib
def test_custom_bad_dtypes():
    source, flow, attention = _tensors({})
    with pytest.raises(tf.errors.InvalidArgumentError, match="source must be a float16"):
        ops.local_attention(tf.cast(source, tf.int32), flow, attention, K, impl="custom")
    with pytest.raises(tf.errors.InvalidArgumentError, match="flow must be a floating-point"):
        ops.local_attention(source, tf.cast(flow, tf.int32), attention, K, impl="custom")


@needs_lib
def test_grad_ops_check_the_upstream_gradient():
    lib = _loader.load_library()
    source, flow, attention = _tensors({})
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"grad must have shape \[2,4,4,3\]"):
        lib.gfla_local_attention_grad(
            grad=tf.ones([2, 4, 4, 2]),
            source=source,
            flow=flow,
            attention=attention,
            kernel_size=K,
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"grad must have shape \[2,4,4,9,3\]"):
        lib.gfla_block_extract_grad(
            grad=tf.ones([2, 4, 4, 3]), source=source, flow=flow, kernel_size=K
        )


@needs_lib
def test_empty_source_image_is_rejected():
    with pytest.raises(tf.errors.InvalidArgumentError, match="height and width >= 1"):
        ops.block_extract(tf.ones([1, 0, 4, 2]), tf.zeros([1, 2, 2, 2]), K, impl="custom")


def test_bad_impl():
    source, flow, attention = _tensors({})
    with pytest.raises(ValueError, match="impl must be one of"):
        ops.local_attention(source, flow, attention, K, impl="cuda")


def test_shape_function_errors_in_graph():
    """Graph construction with a bad static shape fails before running (custom path)."""
    if not _STATUS["loaded"]:
        pytest.skip(f"custom op library not built: {_STATUS['reason']}")
    lib = _loader.load_library()
    with tf.Graph().as_default():
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="flow must have 2"):
            lib.gfla_block_extract(
                source=tf.zeros([1, 4, 4, 1]), flow=tf.zeros([1, 4, 4, 3]), kernel_size=3
            )
