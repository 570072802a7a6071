"""Tests of gfla_tf.layers: shared Keras checks plus NumPy oracles of the PyTorch semantics."""

import keras
import layer_test_utils as ltu
import numpy as np
import pytest

from gfla_tf import layers, ops

RNG = np.random.default_rng(0)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype("float32")


def randomize(layer, scale=0.3, seed=1):
    """Replaces every weight with random values (gamma around 1) so checks are not trivial."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if w.path.endswith(("vector_u", "vector_v")):
            continue
        value = rng.standard_normal(w.shape) * scale
        if w.path.endswith("gamma"):
            value = value + 1.0
        w.assign(value.astype("float32"))
    return layer


def built(layer, *inputs):
    layer(*inputs)
    return randomize(layer)


# --- InstanceNormalization ----------------------------------------------------------------


def test_instance_norm_keras_checks(tmp_path):
    ltu.check_layer(layers.InstanceNormalization, [rand(2, 5, 6, 3)], tmp_path)


def test_instance_norm_matches_torch_semantics():
    x = rand(2, 5, 6, 3, scale=3.0) + 2.0
    layer = built(layers.InstanceNormalization(), x)
    gamma, beta = (np.asarray(w) for w in layer.weights)
    want = ltu.np_instance_norm(ltu.nchw(x), gamma, beta)
    np.testing.assert_allclose(np.asarray(layer(x)), ltu.nhwc(want), atol=1e-5)


def test_instance_norm_statistics_in_float32_under_mixed_precision():
    # Squares of values ~300 overflow float16 (max 65504): fp16 statistics would give inf/NaN.
    x = rand(1, 8, 8, 2, scale=300.0)
    layer = layers.InstanceNormalization(dtype="mixed_float16")
    out = layer(x)
    assert (
        keras.backend.standardize_dtype(out.dtype) == "float16" and layer.gamma.dtype == "float32"
    )
    x16 = x.astype(np.float16).astype(np.float64)  # Keras casts the input to fp16 first
    want = ltu.np_instance_norm(ltu.nchw(x16))
    np.testing.assert_allclose(np.asarray(out, np.float32), ltu.nhwc(want), atol=1e-2)


def test_instance_norm_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank 4"):
        layers.InstanceNormalization()(np.zeros((2, 3, 4), "float32"))


# --- EncoderBlock / ResBlock / ResBlockDecoder / Jump / OutputBlock ------------------------


def test_encoder_block_keras_checks(tmp_path):
    ltu.check_layer(lambda: layers.EncoderBlock(6), [rand(2, 8, 8, 3)], tmp_path)


def test_encoder_block_matches_torch_semantics():
    x = rand(2, 8, 8, 3)
    layer = built(layers.EncoderBlock(6), x)
    h = ltu.np_leaky_relu(
        ltu.np_instance_norm(
            ltu.nchw(x), np.asarray(layer.norm1.gamma), np.asarray(layer.norm1.beta)
        )
    )
    h = ltu.np_conv2d(
        h, ltu.torch_conv_weight(layer.conv1.kernel), np.asarray(layer.conv1.bias), 2, 1
    )
    h = ltu.np_leaky_relu(
        ltu.np_instance_norm(h, np.asarray(layer.norm2.gamma), np.asarray(layer.norm2.beta))
    )
    h = ltu.np_conv2d(
        h, ltu.torch_conv_weight(layer.conv2.kernel), np.asarray(layer.conv2.bias), 1, 1
    )
    np.testing.assert_allclose(np.asarray(layer(x)), ltu.nhwc(h), atol=1e-4)


def test_res_block_keras_checks(tmp_path):
    ltu.check_layer(lambda: layers.ResBlock(hidden_filters=3), [rand(2, 6, 6, 4)], tmp_path)


def test_res_block_matches_torch_semantics():
    x = rand(2, 6, 6, 4)
    layer = built(layers.ResBlock(hidden_filters=3), x)
    h = ltu.np_leaky_relu(
        ltu.np_instance_norm(
            ltu.nchw(x), np.asarray(layer.norm1.gamma), np.asarray(layer.norm1.beta)
        )
    )
    h = ltu.np_conv2d(
        h, ltu.torch_conv_weight(layer.conv1.kernel), np.asarray(layer.conv1.bias), 1, 1
    )
    h = ltu.np_leaky_relu(
        ltu.np_instance_norm(h, np.asarray(layer.norm2.gamma), np.asarray(layer.norm2.beta))
    )
    h = ltu.np_conv2d(
        h, ltu.torch_conv_weight(layer.conv2.kernel), np.asarray(layer.conv2.bias), 1, 1
    )
    np.testing.assert_allclose(np.asarray(layer(x)), ltu.nhwc(ltu.nchw(x) + h), atol=1e-4)


def test_res_block_decoder_keras_checks(tmp_path):
    ltu.check_layer(
        lambda: layers.ResBlockDecoder(3, hidden_filters=5), [rand(2, 4, 4, 4)], tmp_path
    )


def test_res_block_decoder_matches_torch_conv_transpose():
    x = rand(2, 4, 5, 4)
    layer = built(layers.ResBlockDecoder(3, hidden_filters=5), x)
    xc = ltu.nchw(x)
    h = ltu.np_leaky_relu(
        ltu.np_instance_norm(xc, np.asarray(layer.norm1.gamma), np.asarray(layer.norm1.beta))
    )
    h = ltu.np_conv2d(
        h, ltu.torch_conv_weight(layer.conv1.kernel), np.asarray(layer.conv1.bias), 1, 1
    )
    h = ltu.np_leaky_relu(
        ltu.np_instance_norm(h, np.asarray(layer.norm2.gamma), np.asarray(layer.norm2.beta))
    )
    # PyTorch ConvTranspose2d(3, stride=2, padding=1, output_padding=1).
    main = ltu.np_conv_transpose2d(
        h, ltu.torch_deconv_weight(layer.deconv.kernel), np.asarray(layer.deconv.bias), 2, 1, 1
    )
    short = ltu.np_conv_transpose2d(
        xc, ltu.torch_deconv_weight(layer.shortcut.kernel), np.asarray(layer.shortcut.bias), 2, 1, 1
    )
    got = np.asarray(layer(x))
    assert got.shape == (2, 8, 10, 3)
    np.testing.assert_allclose(got, ltu.nhwc(main + short), atol=1e-4)


def test_jump_keras_checks(tmp_path):
    ltu.check_layer(lambda: layers.Jump(4), [rand(2, 6, 6, 4)], tmp_path)


def test_jump_and_output_match_torch_semantics():
    x = rand(2, 6, 7, 4)
    jump = built(layers.Jump(5), x)
    h = ltu.np_reflection_pad(ltu.np_leaky_relu(ltu.nchw(x)), 1)
    want = ltu.np_conv2d(h, ltu.torch_conv_weight(jump.conv.kernel), np.asarray(jump.conv.bias))
    np.testing.assert_allclose(np.asarray(jump(x)), ltu.nhwc(want), atol=1e-4)
    out = built(layers.OutputBlock(3), x)
    want = np.tanh(
        ltu.np_conv2d(h, ltu.torch_conv_weight(out.conv.kernel), np.asarray(out.conv.bias))
    )
    np.testing.assert_allclose(np.asarray(out(x)), ltu.nhwc(want), atol=1e-4)


def test_output_block_keras_checks(tmp_path):
    ltu.check_layer(lambda: layers.OutputBlock(3), [rand(2, 6, 6, 4)], tmp_path)


# --- LocalAttention ------------------------------------------------------------------------


def _attention_inputs(h=6, w=6, c=4):
    return [rand(2, h, w, c), rand(2, h, w, c), rand(2, h, w, 2, scale=2.0)]


def test_local_attention_keras_checks(tmp_path):
    ltu.check_layer(
        lambda: layers.LocalAttention(3, hidden=8, impl="reference"), _attention_inputs(), tmp_path
    )


@pytest.mark.parametrize("k", [3, 5])
def test_local_attention_matches_reference_extractor_attn(k):
    source, target, flow = _attention_inputs(5, 7, 3)
    layer = built(layers.LocalAttention(k, hidden=8, impl="reference"), source, target, flow)
    kk, c = k * k, source.shape[-1]
    w0 = np.asarray(layer.hidden_dense.kernel).reshape(k, k, 2 * c, 8).transpose(3, 2, 0, 1)
    w2 = np.asarray(layer.logits_dense.kernel).T.reshape(kk, 8, 1, 1)
    want = ltu.np_extractor_attn(
        ltu.nchw(source),
        ltu.nchw(target),
        ltu.nchw(flow),
        k,
        w0,
        np.asarray(layer.hidden_dense.bias),
        w2,
        np.asarray(layer.logits_dense.bias),
    )
    np.testing.assert_allclose(np.asarray(layer(source, target, flow)), ltu.nhwc(want), atol=1e-4)


@pytest.mark.skipif(not ops.library_available(), reason="custom op library not built")
def test_local_attention_custom_matches_reference():
    inputs = _attention_inputs()
    ref = built(layers.LocalAttention(3, hidden=8, impl="reference"), *inputs)
    custom = layers.LocalAttention(3, hidden=8, impl="custom")
    custom(*inputs)
    custom.set_weights(ref.get_weights())
    assert not custom.supports_jit and ref.supports_jit
    np.testing.assert_allclose(np.asarray(custom(*inputs)), np.asarray(ref(*inputs)), atol=1e-5)


def test_local_attention_supports_jit_follows_impl():
    assert layers.LocalAttention(3, impl="reference").supports_jit
    assert not layers.LocalAttention(3, impl="custom").supports_jit
    assert layers.LocalAttention(3, impl="auto").supports_jit == (not ops.library_available())


def test_local_attention_mixed_precision_runs_op_in_float32():
    inputs = _attention_inputs()
    ref = built(layers.LocalAttention(3, hidden=8, impl="reference"), *inputs)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        mixed = layers.LocalAttention(3, hidden=8, impl="reference", dtype=policy)
        out = mixed(*inputs)
        mixed.set_weights(ref.get_weights())
        out = mixed(*inputs)
        assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
        assert all(w.dtype == "float32" for w in mixed.weights)
        np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref(*inputs)), atol=5e-2)


def test_local_attention_bad_inputs():
    with pytest.raises(ValueError, match="kernel_size"):
        layers.LocalAttention(0)
    with pytest.raises(ValueError, match="impl"):
        layers.LocalAttention(3, impl="cuda")
    source, target, _ = _attention_inputs()
    with pytest.raises(ValueError, match="flow must have 2 channels"):
        layers.LocalAttention(3, hidden=4)(source, target, rand(2, 6, 6, 3))


# --- SpectralNormalization / ResBlockEncoder -----------------------------------------------


def test_spectral_norm_keras_checks(tmp_path):
    ltu.check_layer(
        lambda: layers.SpectralNormalization(keras.layers.Conv2D(4, 3, padding="same")),
        [rand(2, 6, 6, 3)],
        tmp_path,
    )


def test_spectral_norm_matches_torch_power_iteration():
    x = rand(2, 6, 6, 3)
    np.random.seed(0)  # the initial u, v; random u, v can make sigma tiny
    layer = layers.SpectralNormalization(keras.layers.Conv2D(4, 3, padding="same"))
    layer(x)
    randomize(layer)
    kernel = np.asarray(layer.layer.kernel, np.float64)
    w_orig = ltu.torch_conv_weight(kernel)
    u = np.asarray(layer.vector_u, np.float64)
    # Keras orders v like the kernel rows (kh, kw, in); PyTorch (in, kh, kw).
    v = np.asarray(layer.vector_v, np.float64).reshape(3, 3, 3).transpose(2, 0, 1).reshape(-1)
    bias = np.asarray(layer.layer.bias)

    # Inference: stored u, v, no update.
    weight, _, _ = ltu.np_spectral_norm(w_orig, u, v, training=False)
    np.testing.assert_allclose(
        np.asarray(layer(x, training=False)),
        ltu.nhwc(ltu.np_conv2d(ltu.nchw(x), weight, bias, 1, 1)),
        atol=1e-4,
        rtol=1e-4,
    )
    np.testing.assert_allclose(np.asarray(layer.vector_u), u, atol=0)
    # Training: one power iteration, u and v stored.
    for _ in range(2):
        weight, u, v = ltu.np_spectral_norm(w_orig, u, v, training=True)
        got = np.asarray(layer(x, training=True))
        np.testing.assert_allclose(
            got, ltu.nhwc(ltu.np_conv2d(ltu.nchw(x), weight, bias, 1, 1)), atol=1e-4, rtol=1e-4
        )
        np.testing.assert_allclose(np.asarray(layer.vector_u), u, atol=1e-5)
        v_keras = v.reshape(3, 3, 3).transpose(1, 2, 0).reshape(-1)
        np.testing.assert_allclose(np.asarray(layer.vector_v), v_keras, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.layer.kernel), kernel, atol=0)


def test_spectral_norm_rejects_other_layers():
    with pytest.raises(ValueError, match="Conv2D or Dense"):
        layers.SpectralNormalization(keras.layers.Conv2DTranspose(2, 3))


def test_res_block_encoder_keras_checks(tmp_path):
    ltu.check_layer(
        lambda: layers.ResBlockEncoder(6, hidden_filters=4), [rand(2, 8, 8, 3)], tmp_path
    )


def test_res_block_encoder_matches_torch_semantics():
    x = rand(2, 8, 6, 3)
    layer = built(layers.ResBlockEncoder(5, hidden_filters=4), x)

    def sn_conv(wrapper, h, stride=1, padding=0):
        kernel = ltu.torch_conv_weight(wrapper.layer.kernel)
        kh, kw, cin = wrapper.layer.kernel.shape[:3]
        v = np.asarray(wrapper.vector_v, np.float64).reshape(kh, kw, cin).transpose(2, 0, 1)
        weight, _, _ = ltu.np_spectral_norm(
            kernel, np.asarray(wrapper.vector_u, np.float64), v.reshape(-1), training=False
        )
        return ltu.np_conv2d(h, weight, np.asarray(wrapper.layer.bias), stride, padding)

    xc = ltu.nchw(x)
    h = sn_conv(layer.conv1, ltu.np_leaky_relu(xc), 1, 1)
    h = sn_conv(layer.conv2, ltu.np_leaky_relu(h), 2, 1)
    want = h + sn_conv(layer.bypass, ltu.np_avg_pool2(xc))
    np.testing.assert_allclose(np.asarray(layer(x)), ltu.nhwc(want), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: layers.EncoderBlock(0),
        lambda: layers.ResBlockDecoder(-1),
        lambda: layers.Jump(4, kernel_size=2),
        lambda: layers.OutputBlock(3, kernel_size=4),
        lambda: layers.InstanceNormalization(epsilon=0),
    ],
)
def test_bad_constructor_arguments(factory):
    with pytest.raises(ValueError):
        factory()
