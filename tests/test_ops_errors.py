"""Error handling of the local-attention ops: every bad argument gets a specific message,
the same exception type and message whichever implementation runs, and no argument can
abort the process.

The rule (gfla_tf/ops/_validation.py): ``ValueError`` when the static shapes or dtypes show
the problem (always in eager mode, at trace time in a ``tf.function``),
``tf.errors.InvalidArgumentError`` when only the run time does (unknown dimensions). The
compiled kernels and shape functions keep their own checks as the last line of defence.
"""

import os
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from gfla_tf import layers, ops
from gfla_tf.ops import _loader

_STATUS = ops.status()
needs_lib = pytest.mark.skipif(
    not _STATUS["loaded"], reason=f"custom op library not built: {_STATUS['reason']}"
)
IMPLS = [pytest.param("custom", marks=needs_lib), "reference"]

K = 3
BIG_K = 2**31 - 1
GOOD = {"source": (2, 5, 5, 3), "flow": (2, 4, 4, 2), "attention": (2, 4, 4, 9)}

# (name, overrides of GOOD, kernel_size, message regex). The regexes hold for the static
# messages, the run-time assertions and the kernels' OP_REQUIRES alike.
CASES = [
    ("source_rank", {"source": (5, 5, 3)}, K, r"source must have rank 4"),
    ("flow_rank", {"flow": (2, 4, 4)}, K, r"flow must have rank 4"),
    ("flow_channels", {"flow": (2, 4, 4, 3)}, K, r"flow must have 2 channels"),
    ("batch", {"source": (3, 5, 5, 3)}, K, r"batch mismatch: source has batch"),
    ("attention_rank", {"attention": (2, 4, 4)}, K, r"attention must have rank 4"),
    ("attention_channels", {"attention": (2, 4, 4, 8)}, K, r"kernel_size\*\*2 = 9 channels"),
    ("attention_batch", {"attention": (1, 4, 4, 9)}, K, r"batch mismatch: attention has shape"),
    ("attention_height", {"attention": (2, 3, 4, 9)}, K, r"height mismatch: attention"),
    ("attention_width", {"attention": (2, 4, 5, 9)}, K, r"width mismatch: attention"),
    ("empty_source", {"source": (2, 0, 5, 3)}, K, r"source must have height and width >= 1"),
    ("empty_source_width", {"source": (2, 5, 0, 3)}, K, r"source must have height and width"),
]
IDS = [c[0] for c in CASES]
# Decided from the attribute alone (no run-time form).
KERNEL_SIZE_CASES = [
    (0, r"kernel_size must be an integer >= 1, got 0"),
    (-1, r"kernel_size must be an integer >= 1, got -1"),
    (2.5, r"kernel_size must be an integer >= 1, got 2.5"),
    (True, r"kernel_size must be an integer >= 1, got True"),
    ("3", r"kernel_size must be an integer >= 1, got '3'"),
    (2**31, r"kernel_size must be at most 2147483647, got 2147483648"),
]


def _tensors(overrides, dtype=tf.float32):
    shapes = dict(GOOD, **overrides)
    return [tf.ones(shapes[name], dtype) for name in ("source", "flow", "attention")]


def _call(impl, source, flow, attention, k):
    if attention is None:
        return ops.block_extract(source, flow, k, impl=impl)
    return ops.local_attention(source, flow, attention, k, impl=impl)


def _error(fn):
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the test compares what was raised
        return err
    raise AssertionError("no exception raised")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_static_shape_errors(impl, name, overrides, k, message):
    """Eager calls: ValueError, for both ops where the op takes the argument."""
    source, flow, attention = _tensors(overrides)
    with pytest.raises(ValueError, match=message):
        _call(impl, source, flow, attention, k)
    if "attention" not in overrides:
        with pytest.raises(ValueError, match=message):
            _call(impl, source, flow, None, k)


@needs_lib
@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_static_messages_identical_across_impls(name, overrides, k, message):
    source, flow, attention = _tensors(overrides)
    custom = _error(lambda: _call("custom", source, flow, attention, k))
    reference = _error(lambda: _call("reference", source, flow, attention, k))
    auto = _error(lambda: _call("auto", source, flow, attention, k))
    assert type(custom) is type(reference) is type(auto) is ValueError
    assert str(custom) == str(reference) == str(auto)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_errors_while_tracing_with_static_shapes(impl, name, overrides, k, message):
    source, flow, attention = _tensors(overrides)
    fn = tf.function(lambda s, f, a: _call(impl, s, f, a, k))
    with pytest.raises(ValueError, match=message):
        fn(source, flow, attention)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_runtime_errors_with_unknown_shapes(impl, name, overrides, k, message):
    """Shapes unknown when tracing: run-time assertions, InvalidArgumentError for both impls
    (the reference used to fail inside Gather/AddV2 or broadcast silently)."""
    source, flow, attention = _tensors(overrides)
    spec = tf.TensorSpec(None, tf.float32)
    fn = tf.function(lambda s, f, a: _call(impl, s, f, a, k), input_signature=[spec, spec, spec])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fn(source, flow, attention)
    if "attention" not in overrides:
        fn = tf.function(lambda s, f: _call(impl, s, f, None, k), input_signature=[spec, spec])
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(source, flow)


@pytest.mark.parametrize("impl", IMPLS)
def test_unknown_shapes_that_are_good_run(impl):
    source, flow, attention = _tensors({})
    spec = tf.TensorSpec(None, tf.float32)
    fn = tf.function(lambda s, f, a: _call(impl, s, f, a, K), input_signature=[spec, spec, spec])
    assert fn(source, flow, attention).shape == (2, 4, 4, 3)
    # An empty source image is fine when there is no position to sample.
    empty = tf.ones([0, 0, 5, 3]), tf.ones([0, 4, 4, 2]), tf.ones([0, 4, 4, 9])
    assert fn(*empty).shape == (0, 4, 4, 3)


@needs_lib
@pytest.mark.parametrize("name,overrides,k,message", CASES, ids=IDS)
def test_kernel_checks_are_the_last_line_of_defence(name, overrides, k, message):
    """The raw op with unknown shapes (no Python validation): the kernel's OP_REQUIRES."""
    source, flow, attention = _tensors(overrides)
    lib = _loader.load_library()
    spec = tf.TensorSpec(None, tf.float32)
    fn = tf.function(
        lambda s, f, a: lib.gfla_local_attention(source=s, flow=f, attention=a, kernel_size=k),
        input_signature=[spec, spec, spec],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fn(source, flow, attention)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k,message", KERNEL_SIZE_CASES)
def test_bad_kernel_size(impl, k, message):
    source, flow, attention = _tensors({})
    with pytest.raises(ValueError, match=message):
        ops.block_extract(source, flow, k, impl=impl)
    with pytest.raises(ValueError, match=message):
        ops.local_attention(source, flow, attention, k, impl=impl)


@pytest.mark.parametrize("k,message", KERNEL_SIZE_CASES)
def test_layer_uses_the_op_validation(k, message):
    with pytest.raises(ValueError, match=message):
        layers.LocalAttention(k)
    with pytest.raises(ValueError, match=r"impl must be one of"):
        layers.LocalAttention(3, impl="cuda")


def test_layer_reports_op_shape_errors_with_its_name():
    source, _, _ = _tensors({})
    layer = layers.LocalAttention(3, hidden=4, impl="reference", name="attn")
    with pytest.raises(ValueError, match=r"^attn: batch mismatch: source has batch 2"):
        layer(source, source, tf.zeros([3, 5, 5, 2]))
    with pytest.raises(ValueError, match=r"^attn: source must have height and width >= 1"):
        layer(tf.zeros([2, 0, 5, 3]), source, tf.zeros([2, 5, 5, 2]))


def test_layer_with_huge_kernel_size_and_unknown_batch():
    source, flow = keras.Input((4, 4, 3)), keras.Input((4, 4, 2))
    layer = layers.LocalAttention(BIG_K, hidden=4, impl="reference", name="attn")
    with pytest.raises(ValueError, match=r"^attn: hidden_dense kernel shape .* more than 2\*\*63"):
        layer(source, source, flow)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_dtypes(impl):
    """The reference used to accept an int32 flow and fail inside Gather on an int32 source."""
    source, flow, attention = _tensors({})
    as_int = lambda x: tf.cast(x, tf.int32)  # noqa: E731
    with pytest.raises(ValueError, match="source must be a float16, bfloat16, float32 or float64"):
        ops.local_attention(as_int(source), flow, attention, K, impl=impl)
    with pytest.raises(ValueError, match="source must be a float16"):
        ops.block_extract(as_int(source), flow, K, impl=impl)
    with pytest.raises(ValueError, match="flow must be a floating-point tensor, got int32"):
        ops.local_attention(source, as_int(flow), attention, K, impl=impl)
    with pytest.raises(ValueError, match="flow must be a floating-point tensor, got int32"):
        ops.block_extract(source, as_int(flow), K, impl=impl)
    with pytest.raises(ValueError, match="attention must be a floating-point tensor, got int32"):
        ops.local_attention(source, flow, as_int(attention), K, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_output_overflow_is_an_error(impl):
    """block_extract's [B, H, W, k*k, C] overflowed int64 and aborted the process (exit 134)."""
    source, flow = tf.zeros([1, 1, 1, 3]), tf.zeros([1, 1, 1, 2])
    message = (
        r"block_extract output shape \[1, 1, 1, 4611686014132420609, 3\] "
        r"has more than 2\*\*63 - 1 elements"
    )
    with pytest.raises(ValueError, match=message):
        ops.block_extract(source, flow, BIG_K, impl=impl)
    with pytest.raises(ValueError, match=message):
        tf.function(lambda s, f: ops.block_extract(s, f, BIG_K, impl=impl))(source, flow)
    with pytest.raises(ValueError, match=r"kernel_size\*\*2 = 4611686014132420609 channels"):
        ops.local_attention(source, flow, tf.zeros([1, 1, 1, 9]), BIG_K, impl=impl)


# Each probe feeds the compiled ops (raw, without the Python validation) an argument that
# used to abort or could overflow; the child prints the exception type of each.
_ABORT_PROBES = r"""
import tensorflow as tf
from gfla_tf import ops
from gfla_tf.ops import _loader

lib = _loader.load_library()
K = 2**31 - 1
s, f = tf.zeros([1, 1, 1, 3]), tf.zeros([1, 1, 1, 2])
unknown = tf.TensorSpec(None, tf.float32)
probes = {
    "forward": lambda: lib.gfla_block_extract(source=s, flow=f, kernel_size=K),
    "grad": lambda: lib.gfla_block_extract_grad(
        grad=tf.zeros([1, 1, 1, 1, 3]), source=s, flow=f, kernel_size=K),
    "attention": lambda: lib.gfla_local_attention(
        source=s, flow=f, attention=tf.zeros([1, 1, 1, 1]), kernel_size=K),
    "attention_grad": lambda: lib.gfla_local_attention_grad(
        grad=tf.zeros([1, 1, 1, 3]), source=s, flow=f, attention=tf.zeros([1, 1, 1, 1]),
        kernel_size=K),
    "kernel_size_0": lambda: lib.gfla_block_extract(source=s, flow=f, kernel_size=0),
    "kernel_size_negative": lambda: lib.gfla_block_extract_grad(
        grad=tf.zeros([1, 1, 1, 1, 3]), source=s, flow=f, kernel_size=-5),
    "shape_function": lambda: tf.function(
        lambda: lib.gfla_block_extract(source=s, flow=f, kernel_size=K))(),
    "unknown_shapes": lambda: tf.function(
        lambda a, b: ops.block_extract(a, b, K, impl="custom"),
        input_signature=[unknown, unknown])(s, f),
    "unknown_shapes_grad": lambda: tf.function(
        lambda g, a, b: lib.gfla_block_extract_grad(grad=g, source=a, flow=b, kernel_size=K),
        input_signature=[unknown] * 3)(tf.zeros([1, 1, 1, 1, 3]), s, f),
    "empty_batch_huge_k": lambda: lib.gfla_block_extract(
        source=tf.zeros([0, 1, 1, 3]), flow=tf.zeros([0, 1, 1, 2]), kernel_size=K),
}
for name, probe in probes.items():
    try:
        out = probe()
        print("PROBE", name, "ok", tuple(out.shape) if hasattr(out, "shape") else "")
    except Exception as err:
        print("PROBE", name, type(err).__name__, str(err).splitlines()[0][:200])
print("PROBES DONE")
"""


@needs_lib
def test_no_argument_aborts_the_compiled_ops():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", _ABORT_PROBES], env=env, capture_output=True, text=True, timeout=300
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PROBES DONE" in proc.stdout, output
    results = {
        line.split()[1]: line.split(None, 3)[2:]
        for line in proc.stdout.splitlines()
        if line.startswith("PROBE ")
    }
    overflow = "has more than 2**63 - 1 elements"
    for name in ("forward", "grad", "unknown_shapes", "unknown_shapes_grad"):
        kind, message = results[name]
        assert kind == "InvalidArgumentError" and overflow in message, (name, output)
    assert results["shape_function"][0] == "ValueError", output
    assert overflow in results["shape_function"][1], output
    for name in ("attention", "attention_grad"):
        assert results[name][0] == "InvalidArgumentError", output
        assert "kernel_size**2 = 4611686014132420609 channels" in results[name][1], output
    for name in ("kernel_size_0", "kernel_size_negative"):
        assert results[name][0] == "InvalidArgumentError", output
        assert "kernel_size must be an integer >= 1" in results[name][1], output
    assert results["empty_batch_huge_k"][0] == "ok", output


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


def test_bad_impl():
    source, flow, attention = _tensors({})
    with pytest.raises(ValueError, match="impl must be one of"):
        ops.local_attention(source, flow, attention, K, impl="cuda")
    with pytest.raises(ValueError, match="impl must be one of"):
        ops.block_extract(source, flow, K, impl=None)


@needs_lib
def test_shape_function_errors_in_graph():
    """Graph construction with a bad static shape fails before running (raw custom op)."""
    lib = _loader.load_library()
    with tf.Graph().as_default():
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="flow must have 2"):
            lib.gfla_block_extract(
                source=tf.zeros([1, 4, 4, 1]), flow=tf.zeros([1, 4, 4, 3]), kernel_size=3
            )
        with pytest.raises(ValueError, match="has more than 2"):
            lib.gfla_block_extract(
                source=tf.zeros([1, 4, 4, 3]), flow=tf.zeros([1, 4, 4, 2]), kernel_size=BIG_K
            )
