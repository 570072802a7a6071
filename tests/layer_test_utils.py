"""Shared checks that every Keras layer of gfla-tf goes through the same way.

``check_layer(make_layer, inputs)`` runs, on tiny inputs: an eager call, a symbolic call
(functional model), one ``fit`` step, the config round trip, ``.keras`` save and reload,
SavedModel parity (``tf.saved_model.save`` of a ``tf.function`` wrapper, then reload)
and TFLite parity (``TFLiteConverter.from_saved_model`` run with ai-edge-litert).
"""

import copy
import os

import keras
import numpy as np
import tensorflow as tf

ATOL = 1e-5


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def functional_model(layer, inputs, **call_kwargs):
    """Wraps ``layer`` in a functional model taking ``inputs`` (a list of arrays)."""
    symbolic = [
        keras.Input(shape=x.shape[1:], batch_size=x.shape[0], dtype="float32", name=f"in{i}")
        for i, x in enumerate(inputs)
    ]
    outputs = layer(*symbolic, **call_kwargs)
    return keras.Model(symbolic, outputs)


def check_config_round_trip(layer):
    """``from_config(get_config())`` gives the same config."""
    config = layer.get_config()
    # Some from_config implementations (keras.layers.Wrapper) pop keys: pass a copy.
    clone = layer.__class__.from_config(copy.deepcopy(config))
    assert clone.get_config() == config, (clone.get_config(), config)
    return clone


def check_keras_round_trip(model, inputs, tmp_path, expected):
    """``.keras`` save and reload gives identical outputs."""
    path = os.path.join(str(tmp_path), "layer.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    got = _as_list(reloaded(inputs))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=ATOL, rtol=0)
    return reloaded


def export_saved_model(model, inputs, directory):
    """Saves a ``tf.function`` wrapper of ``model`` with a fixed input signature."""
    module = tf.Module()
    module.model = model
    signature = [tf.TensorSpec(x.shape, tf.float32, name=f"in{i}") for i, x in enumerate(inputs)]

    @tf.function(input_signature=signature)
    def serve(*args):
        outputs = _as_list(model(list(args), training=False))
        return {f"out{i}": o for i, o in enumerate(outputs)}

    module.serve = serve
    tf.saved_model.save(module, directory, signatures={"serving_default": serve})
    return directory


def check_saved_model(model, inputs, tmp_path, expected):
    """SavedModel reload gives the same outputs; returns the SavedModel directory."""
    directory = export_saved_model(model, inputs, os.path.join(str(tmp_path), "saved_model"))
    loaded = tf.saved_model.load(directory)
    got = loaded.signatures["serving_default"](
        **{f"in{i}": tf.constant(x) for i, x in enumerate(inputs)}
    )
    for i, e in enumerate(expected):
        np.testing.assert_allclose(got[f"out{i}"].numpy(), np.asarray(e), atol=ATOL, rtol=0)
    return directory


def run_tflite(tflite_model, inputs):
    """Runs a TFLite flatbuffer; returns the outputs sorted by output name."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_model)
    runner = interpreter.get_signature_runner("serving_default")
    got = runner(**{f"in{i}": x for i, x in enumerate(inputs)})
    return [got[f"out{i}"] for i in range(len(got))]


def check_tflite(saved_model_dir, inputs, expected, atol=1e-4):
    """TFLite conversion (builtin ops only) of the reloaded SavedModel gives the same outputs.

    ``TFLiteConverter.from_saved_model`` on a SavedModel holding Keras 3 variables keeps
    them as uninitialised TFLite resource variables (garbage outputs, no error; TF 2.21),
    so the reloaded serving signature is converted with ``from_concrete_functions``,
    which freezes the variables.
    """
    loaded = tf.saved_model.load(saved_model_dir)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [loaded.signatures["serving_default"]], loaded
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    got = run_tflite(converter.convert(), inputs)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, np.asarray(e), atol=atol, rtol=1e-4)


def check_fit_step(model, inputs):
    """One SGD step of ``fit`` runs, gives a finite loss and changes the weights.

    A layer without weights (``PosePriorFlow``) has nothing to fit: skipped.
    """
    if not model.trainable_weights:
        return
    expected = _as_list(model(inputs))
    targets = [np.zeros(np.asarray(e).shape, "float32") for e in expected]
    before = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(inputs, targets if len(targets) > 1 else targets[0], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after)), "no weight changed"


def check_layer(make_layer, inputs, tmp_path, call_kwargs=None, tflite=True, saved_model=True):
    """Runs every shared check on a fresh layer from ``make_layer()``.

    Args:
      make_layer: zero-argument callable returning the layer.
      inputs: list of float32 numpy arrays (the call's positional arguments).
      tmp_path: directory for the saved files.
      call_kwargs: extra keyword arguments of the symbolic call.
      tflite: run the TFLite parity check.
      saved_model: run the SavedModel parity check (needed by the TFLite check).

    Returns:
      The eager outputs (list of numpy arrays).
    """
    inputs = [np.asarray(x, "float32") for x in inputs]
    layer = make_layer()
    eager = [np.asarray(o) for o in _as_list(layer(*inputs))]
    check_config_round_trip(layer)

    model = functional_model(layer, inputs, **(call_kwargs or {}))
    symbolic = [np.asarray(o) for o in _as_list(model(inputs))]
    for s, e in zip(symbolic, eager):
        np.testing.assert_allclose(s, e, atol=ATOL, rtol=0)
    check_keras_round_trip(model, inputs, tmp_path, symbolic)
    if saved_model:
        directory = check_saved_model(model, inputs, tmp_path, symbolic)
        if tflite:
            check_tflite(directory, inputs, symbolic)
    check_fit_step(model, inputs)
    return eager


# --- NumPy implementations of the PyTorch layer semantics (NCHW, PyTorch layouts) --------
# These are the oracle for the Keras layers and the checkpoint converter: written from the
# PyTorch documentation of each op, independent of the Keras code under test.


def np_conv2d(x, weight, bias=None, stride=1, padding=0):
    """torch.nn.functional.conv2d: x (N, C, H, W), weight (O, C, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    _, _, h, w = x.shape
    out_c, in_c, kh, kw = weight.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = np.stack(
        [
            x[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=2,
    )
    out = np.einsum("nckhw,ock->nohw", cols, weight.reshape(out_c, in_c, kh * kw))
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def np_conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """torch.nn.functional.conv_transpose2d: x (N, Cin, H, W), weight (Cin, Cout, kh, kw)."""
    n, _, h, w = x.shape
    _, out_c, kh, kw = weight.shape
    full = np.zeros(
        (n, out_c, (h - 1) * stride + kh + output_padding, (w - 1) * stride + kw + output_padding)
    )
    for i in range(kh):
        for j in range(kw):
            full[:, :, i : i + stride * h : stride, j : j + stride * w : stride] += np.einsum(
                "nchw,co->nohw", x, weight[:, :, i, j]
            )
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (w - 1) * stride - 2 * padding + kw + output_padding
    out = full[:, :, padding : padding + ho, padding : padding + wo]
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def np_instance_norm(x, weight=None, bias=None, eps=1e-5):
    """torch.nn.InstanceNorm2d(affine=True) in training or eval (no running stats)."""
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight[None, :, None, None] + bias[None, :, None, None]
    return y


def np_leaky_relu(x, slope=0.1):
    return np.where(x >= 0, x, slope * x)


def np_reflection_pad(x, pad):
    """torch.nn.ReflectionPad2d."""
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")


def np_avg_pool2(x):
    """torch.nn.AvgPool2d(2, 2)."""
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def np_spectral_norm(weight_orig, u, v, training, power_iterations=1, eps=1e-12):
    """torch.nn.utils.spectral_norm's forward hook; returns (weight, u, v)."""

    def normalize(t):
        return t / max(np.linalg.norm(t), eps)

    matrix = weight_orig.reshape(weight_orig.shape[0], -1)
    if training:
        for _ in range(power_iterations):
            v = normalize(matrix.T @ u)
            u = normalize(matrix @ v)
    sigma = u @ (matrix @ v)
    return weight_orig / sigma, u, v


def np_block_extract(source, flow, k):
    """GFLA's BlockExtractor: (N, C, H, W), flow (N, 2, H, W) -> (N, C, k*k, H, W)."""
    n, c, h, w = source.shape
    half = k // 2
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros((n, c, k * k, h, w))
    for b in range(n):
        for i in range(k):
            for j in range(k):
                y = yy + flow[b, 1] + i - half
                x = xx + flow[b, 0] + j - half
                y0, x0 = np.floor(y), np.floor(x)
                wy, wx = y - y0, x - x0
                y0, x0 = y0.astype(int), x0.astype(int)
                y_lo, y_hi = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
                x_lo, x_hi = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
                s = source[b]
                val = (
                    s[:, y_lo, x_lo] * (1 - wy) * (1 - wx)
                    + s[:, y_lo, x_hi] * (1 - wy) * wx
                    + s[:, y_hi, x_lo] * wy * (1 - wx)
                    + s[:, y_hi, x_hi] * wy * wx
                )
                out[b, :, i * k + j] = val
    return out


def np_extractor_attn(source, target, flow, k, w0, b0, w2, b2, slope=0.1):
    """GFLA's ExtractorAttn forward (softmax attention) in NCHW with PyTorch weights.

    w0 (hidden, 2C, k, k) is the Conv(k, stride k) over the block layout, w2 (k*k, hidden,
    1, 1) the 1x1 conv.
    """
    block_source = np_block_extract(source, flow, k)
    block_target = np_block_extract(target, np.zeros_like(flow), k)
    pair = np.concatenate([block_target, block_source], axis=1)  # (N, 2C, kk, H, W)
    n, c2, kk, h, w = pair.shape
    hidden = np.einsum("nckhw,ock->nohw", pair, w0.reshape(w0.shape[0], c2, kk))
    hidden = np_leaky_relu(hidden + b0[None, :, None, None], slope)
    logits = np.einsum("nohw,ko->nkhw", hidden, w2[:, :, 0, 0]) + b2[None, :, None, None]
    logits = logits - logits.max(axis=1, keepdims=True)
    attn = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return (attn[:, None] * block_source).sum(axis=2) / kk


def nhwc(x):
    return np.transpose(np.asarray(x), (0, 2, 3, 1))


def nchw(x):
    return np.transpose(np.asarray(x, np.float64), (0, 3, 1, 2))


def torch_conv_weight(kernel):
    """Keras Conv2D kernel (kh, kw, in, out) -> PyTorch (out, in, kh, kw)."""
    return np.transpose(np.asarray(kernel, np.float64), (3, 2, 0, 1))


def torch_deconv_weight(kernel):
    """Keras Conv2DTranspose kernel (kh, kw, out, in) -> PyTorch (in, out, kh, kw)."""
    return np.transpose(np.asarray(kernel, np.float64), (3, 2, 0, 1))
