"""Tests of the local-attention op family: compiled kernels, reference and their agreement.

Custom-path tests skip (with the reason) when the op library is not built.
"""

import importlib.util
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import ops
from gfla_tf.ops import _loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STATUS = ops.status()
needs_lib = pytest.mark.skipif(
    not _STATUS["loaded"], reason=f"custom op library not built: {_STATUS['reason']}"
)


def np_block_extract(source, flow, k):
    """Independent NumPy forward: explicit loops over the taps, float64."""
    source = np.asarray(source, np.float64)
    flow = np.asarray(flow, np.float64)
    b_, h_, w_, _ = flow.shape
    hs, ws = source.shape[1:3]
    out = np.zeros((b_, h_, w_, k * k, source.shape[3]))
    ys, xs = np.meshgrid(np.arange(h_), np.arange(w_), indexing="ij")
    for b in range(b_):
        for i in range(k):
            for j in range(k):
                cy = np.clip(ys + flow[b, ..., 1] + (i - k // 2), -1, hs)
                cx = np.clip(xs + flow[b, ..., 0] + (j - k // 2), -1, ws)
                with np.errstate(invalid="ignore"):
                    fy, fx = np.floor(cy), np.floor(cx)
                    iy = np.nan_to_num(fy).astype(int)
                    ix = np.nan_to_num(fx).astype(int)
                wy, wx = (cy - fy)[..., None], (cx - fx)[..., None]
                y0, y1 = np.clip(iy, 0, hs - 1), np.clip(iy + 1, 0, hs - 1)
                x0, x1 = np.clip(ix, 0, ws - 1), np.clip(ix + 1, 0, ws - 1)
                s = source[b]
                val = (1 - wy) * ((1 - wx) * s[y0, x0] + wx * s[y0, x1]) + wy * (
                    (1 - wx) * s[y1, x0] + wx * s[y1, x1]
                )
                out[b, :, :, i * k + j] = val
    return out


def np_local_attention(source, flow, attention, k):
    block = np_block_extract(source, flow, k)
    return np.einsum("bhwnc,bhwn->bhwc", block, np.asarray(attention, np.float64)) / (k * k)


def _inputs(rng, batch, h, w, hs, ws, c, k, scale=3.0, dtype=np.float32):
    source = rng.normal(size=(batch, hs, ws, c)).astype(dtype)
    flow = (rng.normal(size=(batch, h, w, 2)) * scale).astype(dtype)
    attention = rng.random((batch, h, w, k * k)).astype(dtype)
    return source, flow, attention


IMPLS_UNDER_TEST = [
    pytest.param("custom", marks=needs_lib),
    "reference",
]


@pytest.mark.parametrize("impl", IMPLS_UNDER_TEST)
@pytest.mark.parametrize(
    "k,shape",
    [
        (1, (2, 3, 4, 5, 6, 3)),
        (2, (1, 4, 3, 4, 3, 1)),
        (3, (2, 5, 7, 6, 4, 3)),
        (4, (1, 3, 5, 5, 3, 2)),
        (7, (1, 4, 4, 3, 5, 2)),
    ],
)
def test_forward_matches_numpy(impl, k, shape):
    batch, h, w, hs, ws, c = shape
    source, flow, attention = _inputs(
        np.random.default_rng(k), batch, h, w, hs, ws, c, k, dtype=np.float64
    )
    block = ops.block_extract(source, flow, k, impl=impl)
    np.testing.assert_allclose(block, np_block_extract(source, flow, k), rtol=1e-12, atol=1e-12)
    out = ops.local_attention(source, flow, attention, k, impl=impl)
    np.testing.assert_allclose(
        out, np_local_attention(source, flow, attention, k), rtol=1e-12, atol=1e-12
    )


def test_zero_flow_is_edge_padded_unfold():
    """With zero flow the block is the k x k neighbourhood with replicated borders."""
    source = np.arange(12, dtype=np.float64).reshape(1, 3, 4, 1)
    flow = np.zeros((1, 3, 4, 2))
    block = ops.block_extract(source, flow, 3, impl="reference").numpy()
    padded = np.pad(source[0, ..., 0], 1, mode="edge")
    np.testing.assert_array_equal(block[0, 0, 0, :, 0], padded[0:3, 0:3].ravel())
    np.testing.assert_array_equal(block[0, 2, 3, :, 0], padded[2:5, 3:6].ravel())


@needs_lib
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7])
def test_custom_matches_reference_random(k):
    rng = np.random.default_rng(100 + k)
    # Non-square maps, a source of another size, C = 1 on odd k, flows of +-100 px.
    c = 1 if k % 2 else 5
    source, flow, attention = _inputs(rng, 2, 5, 3 + k, 4 + k, 6, c, k, scale=1.0)
    flow[0, :2] *= 100.0
    got = ops.local_attention(source, flow, attention, k, impl="custom")
    want = ops.local_attention(source, flow, attention, k, impl="reference")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        ops.block_extract(source, flow, k, impl="custom"),
        ops.block_extract(source, flow, k, impl="reference"),
        rtol=1e-6,
        atol=1e-6,
    )
    # Gradients of a non-linear loss agree as well.
    s, f, a = (tf.constant(x) for x in (source, flow, attention))

    def grads(impl):
        with tf.GradientTape() as tape:
            tape.watch([s, f, a])
            out = ops.local_attention(s, f, a, k, impl=impl)
            loss = tf.reduce_sum(tf.sin(3.0 * out))
        return tape.gradient(loss, [s, f, a])

    for got_g, want_g in zip(grads("custom"), grads("reference")):
        np.testing.assert_allclose(got_g, want_g, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS_UNDER_TEST)
def test_empty_inputs(impl):
    for batch, h, w, src_h in [(0, 4, 4, 5), (2, 0, 3, 5), (1, 3, 0, 5), (0, 4, 4, 0)]:
        source = tf.zeros([batch, src_h, 5, 3])
        flow = tf.zeros([batch, h, w, 2])
        attention = tf.zeros([batch, h, w, 9])
        with tf.GradientTape() as tape:
            tape.watch([source, flow, attention])
            out = ops.local_attention(source, flow, attention, 3, impl=impl)
            loss = tf.reduce_sum(out)
        assert out.shape == (batch, h, w, 3)
        gs, gf, ga = tape.gradient(loss, [source, flow, attention])
        assert gs.shape == source.shape and not np.any(gs)
        assert gf.shape == flow.shape and ga.shape == attention.shape
        assert ops.block_extract(source, flow, 3, impl=impl).shape == (batch, h, w, 9, 3)


def _fractional_flow(rng, shape):
    """Flows whose fractional parts stay in [0.25, 0.75]: finite differences never cross a
    floor() jump."""
    whole = rng.integers(-2, 3, size=shape)
    return whole + rng.uniform(0.25, 0.75, size=shape)


@needs_lib
@pytest.mark.parametrize("k", [2, 3])
def test_gradients_numeric_float64(k):
    rng = np.random.default_rng(7 + k)
    source = rng.normal(size=(2, 4, 5, 3))
    flow = _fractional_flow(rng, (2, 3, 4, 2))
    attention = rng.random((2, 3, 4, k * k))
    inputs = [tf.constant(x) for x in (source, flow, attention)]
    theoretical, numerical = tf.test.compute_gradient(
        lambda s, f, a: ops.local_attention(s, f, a, k, impl="custom"), inputs, delta=1e-3
    )
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6)
    theoretical, numerical = tf.test.compute_gradient(
        lambda s, f: ops.block_extract(s, f, k, impl="custom"), inputs[:2], delta=1e-3
    )
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6)


@needs_lib
def test_gradients_match_numpy_backward():
    """The NumPy backward used by the GPU harness agrees with the CPU kernels."""
    spec = importlib.util.spec_from_file_location(
        "numpy_reference", os.path.join(ROOT, "benchmarks", "gpu", "numpy_reference.py")
    )
    nref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nref)
    rng = np.random.default_rng(3)
    k = 3
    source, flow, attention = _inputs(rng, 2, 4, 6, 5, 4, 3, k, dtype=np.float64)
    flow[1, 0] = 50.0  # clamped taps: zero flow gradient there
    grad = rng.normal(size=(2, 4, 6, 3))
    s, f, a = (tf.constant(x) for x in (source, flow, attention))
    with tf.GradientTape() as tape:
        tape.watch([s, f, a])
        loss = tf.reduce_sum(grad * ops.local_attention(s, f, a, k, impl="custom"))
    got = tape.gradient(loss, [s, f, a])
    for g, w in zip(got, nref.local_attention_backward(grad, source, flow, attention, k)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)
    assert not np.any(got[1].numpy()[1, 0])
    block_grad = rng.normal(size=(2, 4, 6, 9, 3))
    with tf.GradientTape() as tape:
        tape.watch([s, f])
        loss = tf.reduce_sum(block_grad * ops.block_extract(s, f, k, impl="custom"))
    got = tape.gradient(loss, [s, f])
    for g, w in zip(got, nref.block_extract_backward(block_grad, source, flow, k)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)


@needs_lib
def test_tf_function_dynamic_shapes_and_eager_agree():
    rng = np.random.default_rng(11)
    source, flow, attention = _inputs(rng, 2, 4, 5, 6, 6, 4, 3)
    spec = tf.TensorSpec([None, None, None, None], tf.float32)

    @tf.function(input_signature=[spec, spec, spec])
    def step(s, f, a):
        with tf.GradientTape() as tape:
            tape.watch([s, f, a])
            out = ops.local_attention(s, f, a, 3, impl="custom")
            loss = tf.reduce_sum(out * out)
        return out, tape.gradient(loss, [s, f, a])

    out, grads = step(source, flow, attention)
    s, f, a = (tf.constant(x) for x in (source, flow, attention))
    with tf.GradientTape() as tape:
        tape.watch([s, f, a])
        eager_out = ops.local_attention(s, f, a, 3, impl="custom")
        loss = tf.reduce_sum(eager_out * eager_out)
    np.testing.assert_allclose(out, eager_out, rtol=1e-6, atol=1e-6)
    for g, e in zip(grads, tape.gradient(loss, [s, f, a])):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    # The static shape function gives the output shape in a graph.
    fn = tf.function(lambda s, f, a: ops.local_attention(s, f, a, 3, impl="custom"))
    graph = fn.get_concrete_function(
        tf.TensorSpec([2, 6, 6, 4]), tf.TensorSpec([None, 4, 5, 2]), tf.TensorSpec([2, 4, 5, 9])
    )
    assert graph.structured_outputs.shape.as_list() == [2, 4, 5, 4]


@needs_lib
def test_mirrored_strategy_two_cpus():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs the two logical CPU devices configured by conftest.py")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    rng = np.random.default_rng(5)
    source, flow, attention = _inputs(rng, 4, 4, 4, 4, 4, 3, 3)
    with strategy.scope():
        weight = tf.Variable(tf.ones([3]))

    def replica_step(s, f, a):
        with tf.GradientTape() as tape:
            out = ops.local_attention(s * weight, f, a, 3, impl="custom")
            loss = tf.reduce_sum(out)
        return tape.gradient(loss, weight)

    dataset = tf.data.Dataset.from_tensor_slices((source, flow, attention)).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    per_replica = strategy.run(tf.function(replica_step), args=batch)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(
            ops.local_attention(source * weight, flow, attention, 3, impl="reference")
        )
    np.testing.assert_allclose(total, tape.gradient(loss, weight), rtol=1e-5)


@needs_lib
def test_extreme_flows_stay_in_bounds():
    rng = np.random.default_rng(9)
    source = rng.normal(size=(1, 4, 5, 2)).astype(np.float32)
    flow = np.zeros((1, 2, 3, 2), np.float32)
    flow[0, 0, 0] = [1e6, -1e6]
    flow[0, 0, 1] = [np.inf, np.inf]
    flow[0, 0, 2] = [-np.inf, 3.5]
    flow[0, 1, 0] = [np.nan, 0.0]
    flow[0, 1, 1] = [0.0, np.nan]
    flow[0, 1, 2] = [3.4e38, -3.4e38]
    attention = np.ones((1, 2, 3, 9), np.float32)
    out = ops.local_attention(source, flow, attention, 3, impl="custom").numpy()
    # Beyond the border every tap reads the corner/edge pixel.
    np.testing.assert_allclose(out[0, 0, 0], source[0, 0, 4], rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 1], source[0, 3, 4], rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, 2], source[0, 0, 4], rtol=1e-6)
    assert np.all(np.isnan(out[0, 1, :2]))
    assert np.all(np.isfinite(out[0, 0])) and np.all(np.isfinite(out[0, 1, 2]))
    want = ops.local_attention(source, flow, attention, 3, impl="reference").numpy()
    np.testing.assert_allclose(out, want, rtol=1e-5)  # NaNs compare equal
    block = ops.block_extract(source, flow, 3, impl="custom").numpy()
    assert np.all(np.isnan(block[0, 1, :2])) and np.all(np.isfinite(block[0, 0]))
    # Gradients at the huge and infinite (not NaN) flows are finite; every tap of the
    # positions beyond the border is clamped, so they get no flow gradient.
    s, f, a = (tf.constant(x) for x in (source, flow[:, :1], attention[:, :1]))
    with tf.GradientTape() as tape:
        tape.watch([s, f, a])
        loss = tf.reduce_sum(ops.local_attention(s, f, a, 3, impl="custom"))
    gs, gf, ga = tape.gradient(loss, [s, f, a])
    assert np.all(np.isfinite(gs)) and np.all(np.isfinite(ga))
    np.testing.assert_array_equal(gf.numpy()[0, 0, :2], 0.0)
    # 3 positions x 2 channels, each spreading its mean attention of 1: mass is conserved.
    np.testing.assert_allclose(np.sum(gs), 6.0, rtol=1e-6)


@needs_lib
def test_half_and_bfloat16():
    rng = np.random.default_rng(2)
    source, flow, attention = _inputs(rng, 1, 3, 4, 4, 4, 8, 3)
    want = ops.local_attention(source, flow, attention, 3, impl="reference").numpy()
    for dtype, tol in ((tf.float16, 2e-2), (tf.bfloat16, 5e-2)):
        s = tf.cast(source, dtype)
        with tf.GradientTape() as tape:
            tape.watch(s)
            got = ops.local_attention(s, flow, attention, 3, impl="custom")
            loss = tf.reduce_sum(tf.cast(got, tf.float32))
        assert got.dtype == dtype
        np.testing.assert_allclose(tf.cast(got, tf.float32), want, atol=tol, rtol=tol)
        assert tape.gradient(loss, s).dtype == dtype
    got = ops.block_extract(tf.cast(source, tf.float16), flow, 3, impl="custom")
    np.testing.assert_allclose(
        tf.cast(got, tf.float32), np_block_extract(source, flow, 3), atol=2e-2, rtol=2e-2
    )


@needs_lib
def test_status_reports_library():
    status = ops.status()
    assert status["loaded"] and status["reason"] is None
    assert status["cpu_kernels"]
    assert status["built_for_tf"] == tf.__version__
    assert status["running_tf"] == tf.__version__
    assert status["library_path"].endswith(".so")


def test_doctor_prints_status(capsys):
    from gfla_tf.cli import doctor

    assert doctor.main(["gfla doctor"]) == 0
    text = capsys.readouterr().out
    assert "TensorFlow" in text and "custom op library" in text


def test_auto_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(_loader, "_result", (None, None, "simulated failure"))
    monkeypatch.setattr(_loader, "_warned", False)
    source = tf.ones([1, 3, 3, 2])
    flow = tf.zeros([1, 3, 3, 2])
    attention = tf.ones([1, 3, 3, 9])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ops.local_attention(source, flow, attention, 3, impl="auto")
        ops.block_extract(source, flow, 3, impl="auto")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "simulated failure" in messages[0]
    np.testing.assert_allclose(first, np.ones([1, 3, 3, 2]))
    with pytest.raises(RuntimeError, match="simulated failure"):
        ops.local_attention(source, flow, attention, 3, impl="custom")
    assert ops.status()["loaded"] is False


def test_bad_library_path_falls_back_in_subprocess(tmp_path):
    bogus = tmp_path / "_gfla_ops.so"
    bogus.write_bytes(b"not a shared library")
    code = (
        "import warnings, numpy as np\n"
        "from gfla_tf import ops\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(3):\n"
        "        ops.local_attention(np.ones((1,2,2,1),'f'), np.zeros((1,2,2,2),'f'),"
        " np.ones((1,2,2,1),'f'), 1)\n"
        "n = sum(issubclass(x.category, RuntimeWarning) for x in w)\n"
        "s = ops.status()\n"
        "print('RESULT', n, s['loaded'], 'loading' in s['reason'])\n"
    )
    env = dict(os.environ, GFLA_OPS_LIBRARY=str(bogus), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert "RESULT 1 False True" in proc.stdout, proc.stdout + proc.stderr


def test_loader_imports_nothing_of_the_package():
    """The _custom <-> _loader import cycle is gone: only _custom imports _loader, and the
    gradients are registered by importing gfla_tf.ops (which imports _custom)."""
    import ast
    import inspect

    from tensorflow.python.framework import ops as tf_ops

    tree = ast.parse(inspect.getsource(_loader))
    modules = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [m for m in modules if m and m.startswith("gfla_tf")], modules
    for op_name in ("GflaLocalAttention", "GflaBlockExtract"):
        assert tf_ops.gradient_registry.lookup(op_name) is not None


def _assert_ops(fn, *specs):
    graph = tf.function(fn).get_concrete_function(*specs).graph
    # tf.debugging.Assert puts its Assert op in a branch of a conditional.
    return [op for op in graph.get_operations() if op.type in ("Assert", "If", "StatelessIf")]


@pytest.mark.parametrize("impl", IMPLS_UNDER_TEST)
def test_run_time_checks_only_where_static_shapes_leave_them_open(impl):
    def call(s, f, a):
        return ops.local_attention(s, f, a, 3, impl=impl)

    static = [tf.TensorSpec(x) for x in ([2, 5, 5, 3], [2, 4, 4, 2], [2, 4, 4, 9])]
    assert _assert_ops(call, *static) == []
    # A Keras model's unknown batch: only the batch equalities are checked at run time.
    dynamic = [tf.TensorSpec([None] + s.shape.as_list()[1:]) for s in static]
    assert len(_assert_ops(call, *dynamic)) == 2
