"""Tests of gfla_tf.losses against independent numpy computations."""

import math

import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import losses


def _np_gaussian_resample(source, flow, sigma=2.0):
    """Loop-per-pixel 4x4 Gaussian window resampler (taps floor-1 .. floor+2, clamped)."""
    b, hs, ws, c = source.shape
    _, h, w, _ = flow.shape
    out = np.zeros((b, h, w, c))
    for n in range(b):
        for y in range(h):
            for x in range(w):
                px = x + flow[n, y, x, 0]
                py = y + flow[n, y, x, 1]
                fx, fy = math.floor(px), math.floor(py)
                acc = np.zeros(c)
                total = 0.0
                for ty in range(fy - 1, fy + 3):
                    for tx in range(fx - 1, fx + 3):
                        d2 = (px - tx) ** 2 + (py - ty) ** 2
                        weight = math.exp(-d2 / (2 * sigma * sigma))
                        acc += weight * source[n, min(max(ty, 0), hs - 1), min(max(tx, 0), ws - 1)]
                        total += weight
                out[n, y, x] = acc / total
    return out


def _np_correctness(source, target, flow):
    b, h, w, c = source.shape
    s = source.reshape(b, -1, c)
    t = target.reshape(b, -1, c)
    sn = s / (np.linalg.norm(s, axis=-1, keepdims=True) + 1e-8)
    tn = t / (np.linalg.norm(t, axis=-1, keepdims=True) + 1e-8)
    mu = np.einsum("bsc,btc->bst", sn, tn).max(axis=1)  # max over source positions
    warped = _np_gaussian_resample(source, flow).reshape(b, -1, c)
    cos = (warped * t).sum(-1) / np.maximum(
        np.linalg.norm(warped, axis=-1) * np.linalg.norm(t, axis=-1), 1e-8
    )
    return np.exp(-cos / (mu + 1e-8)).mean(axis=1) - math.exp(-1)


def _np_affine(flow, k):
    b, h, w, _ = flow.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = flow + np.stack([xx, yy], axis=-1)
    ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    design = np.stack([ii.ravel(), jj.ravel(), np.ones(k * k)], axis=1)
    out = np.zeros(b)
    for n in range(b):
        for coord in range(2):
            total = 0.0
            for y in range(h - k + 1):
                for x in range(w - k + 1):
                    patch = grid[n, y : y + k, x : x + k, coord].ravel()
                    coef, *_ = np.linalg.lstsq(design, patch, rcond=None)
                    total += ((design @ coef - patch) ** 2).sum()
            out[n] += total / ((h - k + 1) * (w - k + 1))
    return out


def test_gaussian_resample_matches_numpy():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2, 5, 6, 3))
    flow = rng.normal(scale=2.5, size=(2, 4, 5, 2))
    flow[0, 0, 0] = [-9.0, 30.0]  # far outside: every tap clamps
    got = losses.gaussian_resample(tf.constant(source), tf.constant(flow)).numpy()
    np.testing.assert_allclose(got, _np_gaussian_resample(source, flow), rtol=1e-6, atol=1e-8)


def test_gaussian_resample_rejects_bad_flow():
    with pytest.raises(ValueError, match="flow"):
        losses.gaussian_resample(tf.zeros([1, 4, 4, 3]), tf.zeros([1, 4, 4, 3]))


def test_correctness_loss_matches_numpy_and_chunking():
    rng = np.random.default_rng(1)
    source = np.abs(rng.normal(size=(2, 6, 5, 4)))
    target = np.abs(rng.normal(size=(2, 6, 5, 4)))
    target[1, 2, 3] = 0.0  # an all-zero ReLU vector must not give NaN
    flow = rng.normal(scale=1.5, size=(2, 6, 5, 2))
    expected = _np_correctness(source, target, flow)
    for chunk in (0, 7, 1024):
        got = losses.sampling_correctness_loss(
            tf.constant(source, tf.float32),
            tf.constant(target, tf.float32),
            tf.constant(flow, tf.float32),
            chunk_size=chunk,
        ).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    flow_t = tf.Variable(flow, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(
            losses.sampling_correctness_loss(
                tf.constant(source, tf.float32), tf.constant(target, tf.float32), flow_t
            )
        )
    grad = tape.gradient(loss, flow_t)
    assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).sum() > 0


def test_max_cosine_similarity_chunked_equals_full():
    rng = np.random.default_rng(2)
    a = tf.constant(rng.normal(size=(3, 7, 9, 5)), tf.float32)
    b = tf.constant(rng.normal(size=(3, 7, 9, 5)), tf.float32)
    full = losses.max_cosine_similarity(a, b, chunk_size=0)
    chunked = losses.max_cosine_similarity(a, b, chunk_size=10)
    np.testing.assert_allclose(chunked.numpy(), full.numpy(), rtol=1e-6)
    assert full.shape == (3, 63)


def test_vgg_layer_for_scale():
    assert losses.vgg_layer_for_scale(8) == "relu4_1"
    assert losses.vgg_layer_for_scale(4) == "relu3_1"
    with pytest.raises(ValueError, match="scale"):
        losses.vgg_layer_for_scale(3)


@pytest.mark.parametrize("k", [3, 5])
def test_affine_regularization_matches_numpy(k):
    rng = np.random.default_rng(k)
    flow = rng.normal(size=(2, 7, 8, 2))
    got = losses.affine_regularization_loss(tf.constant(flow, tf.float32), k).numpy()
    np.testing.assert_allclose(got, _np_affine(flow, k), rtol=1e-4, atol=1e-5)


def test_affine_regularization_is_zero_for_affine_flow():
    yy, xx = np.meshgrid(np.arange(9.0), np.arange(10.0), indexing="ij")
    flow = np.stack([0.3 * xx - 1.2 * yy + 4.0, -0.7 * xx + 0.1 * yy - 2.0], axis=-1)[None]
    got = losses.affine_regularization_loss(tf.constant(flow, tf.float32), 5).numpy()
    np.testing.assert_allclose(got, [0.0], atol=1e-6)
    with pytest.raises(ValueError, match="kernel_size"):
        losses.affine_regularization_loss(tf.constant(flow, tf.float32), 1)


def test_l1_content_style_match_numpy():
    rng = np.random.default_rng(3)
    feats_a = {name: rng.normal(size=(2, 4, 3, 5)) for name in losses.ALL_LAYERS}
    feats_b = {name: rng.normal(size=(2, 4, 3, 5)) for name in losses.ALL_LAYERS}
    tf_a = {k: tf.constant(v, tf.float32) for k, v in feats_a.items()}
    tf_b = {k: tf.constant(v, tf.float32) for k, v in feats_b.items()}
    np.testing.assert_allclose(
        losses.l1_loss(tf_a["relu1_1"], tf_b["relu1_1"]).numpy(),
        np.abs(feats_a["relu1_1"] - feats_b["relu1_1"]).mean(axis=(1, 2, 3)),
        rtol=1e-5,
    )
    content = sum(
        np.abs(feats_a[n] - feats_b[n]).mean(axis=(1, 2, 3)) for n in losses.CONTENT_LAYERS
    )
    np.testing.assert_allclose(losses.content_loss(tf_a, tf_b).numpy(), content, rtol=1e-5)

    def gram(f):
        b, h, w, c = f.shape
        flat = f.reshape(b, h * w, c)
        return np.einsum("bnc,bnd->bcd", flat, flat) / (c * h * w)

    style = sum(
        np.abs(gram(feats_a[n]) - gram(feats_b[n])).mean(axis=(1, 2)) for n in losses.STYLE_LAYERS
    )
    np.testing.assert_allclose(losses.style_loss(tf_a, tf_b).numpy(), style, rtol=1e-5)


def test_lsgan_losses_match_numpy():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(3, 4, 4, 1))
    fake = rng.normal(size=(3, 4, 4, 1))
    d = losses.lsgan_discriminator_loss(tf.constant(real), tf.constant(fake)).numpy()
    g = losses.lsgan_generator_loss(tf.constant(fake)).numpy()
    np.testing.assert_allclose(
        d,
        0.5 * (((real - 1) ** 2).mean(axis=(1, 2, 3)) + (fake**2).mean(axis=(1, 2, 3))),
        rtol=1e-5,
    )
    np.testing.assert_allclose(g, ((fake - 1) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)


def test_vgg_extractor_random_weights(tmp_path):
    vgg = losses.build_vgg_extractor("random", layers=("relu1_1", "relu3_1", "relu4_1"))
    assert not vgg.trainable and not vgg.trainable_weights
    out = vgg(tf.zeros([1, 32, 32, 3]))
    assert out["relu1_1"].shape == (1, 32, 32, 64)
    assert out["relu3_1"].shape == (1, 8, 8, 256)
    assert out["relu4_1"].shape == (1, 4, 4, 512)
    # Only the layers up to relu4_1 are part of the graph.
    assert all(not layer.name.startswith("block5") for layer in vgg.layers)
    with pytest.raises(ValueError, match="weights"):
        losses.build_vgg_extractor(str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="relu9_1"):
        losses.build_vgg_extractor("random", layers=("relu9_1",))
