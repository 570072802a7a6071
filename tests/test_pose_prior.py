"""Tests of the pose prior: ``layers.PosePriorFlow`` and F / G with ``pose_prior``."""

import os

import keras
import layer_test_utils as ltu
import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import data, layers, models
from gfla_tf.configs import deepfashion, synthetic
from gfla_tf.data import synthetic_render
from gfla_tf.layers.pose_prior_flow import PRIOR_BONES

RNG = np.random.default_rng(0)


def heatmaps(points, size):
    return data.keypoints_to_heatmaps(np.asarray(points, np.float32), size, size, 6.0)


def random_pose(rng, size, missing=0.0):
    points = rng.uniform(2, size - 3, (18, 2))
    points[rng.random(18) < missing] = -1
    return points.astype(np.float32)


def prior_numpy(source, target, size, blend_width=1 / 64, reach=3.0):
    """The prior's formula, one pixel and one bone at a time."""
    w = blend_width * size
    flow = np.zeros((size, size, 2))
    for y in range(size):
        for x in range(size):
            z = np.array([x, y], float)
            logits, moves = [-0.5 * reach**2], [np.zeros(2)]
            for a, b in PRIOR_BONES:
                if min(source[a].min(), source[b].min(), target[a].min(), target[b].min()) < 0:
                    continue
                t_axis, s_axis = target[b] - target[a], source[b] - source[a]
                t_len, s_len = np.linalg.norm(t_axis), np.linalg.norm(s_axis)
                along = (z - target[a]) @ t_axis / t_len**2
                across = (z - target[a]) @ np.array([-t_axis[1], t_axis[0]]) / t_len
                point = (
                    source[a] + along * s_axis + across * np.array([-s_axis[1], s_axis[0]]) / s_len
                )
                nearest = target[a] + np.clip(along, 0, 1) * t_axis
                logits.append(-np.sum((z - nearest) ** 2) / (2 * w**2))
                moves.append(point - z)
            weights = np.exp(np.array(logits) - max(logits))
            flow[y, x] = (weights[:, None] * np.array(moves)).sum(0) / weights.sum()
    return flow


def test_pose_prior_keras_checks(tmp_path):
    source = np.stack([random_pose(RNG, 16), random_pose(RNG, 16, missing=0.3)])
    target = np.stack([random_pose(RNG, 16), random_pose(RNG, 16)])
    ltu.check_layer(
        lambda: layers.PosePriorFlow(blend_width=0.1),
        [np.asarray(heatmaps(source, 16)), np.asarray(heatmaps(target, 16))],
        tmp_path,
    )


def test_pose_prior_matches_numpy():
    source, target = random_pose(RNG, 20, missing=0.2), random_pose(RNG, 20, missing=0.2)
    got = layers.PosePriorFlow(blend_width=0.08)(
        heatmaps(source[None], 20), heatmaps(target[None], 20)
    )
    assert got.shape == (1, 20, 20, 2) and got.dtype == tf.float32
    np.testing.assert_allclose(got[0], prior_numpy(source, target, 20, 0.08), atol=2e-3)


def test_pose_prior_same_pose_missing_poses_and_far_pixels_are_zero():
    layer = layers.PosePriorFlow()
    pose = heatmaps(random_pose(RNG, 32)[None], 32)
    np.testing.assert_allclose(layer(pose, pose), 0.0, atol=1e-3)
    nobody = heatmaps(np.full((1, 18, 2), -1.0), 32)
    assert np.all(layer(pose, nobody).numpy() == 0) and np.all(layer(nobody, pose).numpy() == 0)
    # One bone (neck -> right shoulder) moved 5 px right; the rest missing.
    source = np.full((1, 18, 2), -1.0)
    source[0, 1], source[0, 2] = (10, 10), (10, 20)
    target = source + np.array([5.0, 0.0]) * (source >= 0)
    flow = layer(heatmaps(source, 32), heatmaps(target, 32)).numpy()[0]
    # On the bone: the bone's flow against the background's weight exp(-reach**2 / 2).
    np.testing.assert_allclose(flow[15, 15], (-5 / (1 + np.exp(-4.5)), 0), atol=1e-4)
    assert np.abs(flow[15, 25]).max() < 1e-3  # 10 px away


def test_pose_prior_bad_arguments():
    with pytest.raises(ValueError, match="blend_width"):
        layers.PosePriorFlow(blend_width=0)
    with pytest.raises(ValueError, match="reach"):
        layers.PosePriorFlow(reach=-1)
    with pytest.raises(ValueError, match="18 COCO-18 heatmaps"):
        layers.PosePriorFlow()(tf.zeros((1, 8, 8, 17)), tf.zeros((1, 8, 8, 17)))


def test_pose_prior_is_close_to_the_synthetic_ground_truth():
    errors, zero = [], []
    for seed in range(6):
        pair = synthetic_render.render_pair(seed, 64)
        source, target = (np.rint(k) * (k >= 0) - (k < 0) for k in pair["keypoints"])
        gt, visible = pair["flows"][(0, 1)], pair["visibility"][(0, 1)].reshape(64, 64) > 0
        moving = visible & (np.abs(gt).max(-1) > 0.5)
        flow = layers.PosePriorFlow()(heatmaps(source[None], 64), heatmaps(target[None], 64))
        errors.append(np.linalg.norm(flow[0] - gt, axis=-1)[moving].mean())
        zero.append(np.linalg.norm(gt, axis=-1)[moving].mean())
    assert np.mean(errors) < 0.35 * np.mean(zero), (errors, zero)


def make_inputs(cfg, batch=2):
    h, w = cfg.image_height, cfg.image_width
    source, target = (np.stack([random_pose(RNG, h) for _ in range(batch)]) for _ in range(2))
    return {
        "source_image": RNG.uniform(-1, 1, (batch, h, w, 3)).astype("float32"),
        "source_pose": heatmaps(source, h),
        "target_pose": heatmaps(target, h),
    }


def test_generator_with_pose_prior(tmp_path):
    cfg = synthetic.get_config("test").model
    assert cfg.flow_pose_prior and not deepfashion.get_config().model.flow_pose_prior
    generator = models.build_generator(cfg, impl="reference")
    with cfg.unlocked():
        cfg.flow_pose_prior = False
    plain = models.build_generator(cfg, impl="reference")
    # Two more input channels of F's first block: its input norm and its 4x4 conv.
    extra = 2 * 2 + 2 * 16 * cfg.flow_ngf
    assert models.count_params(generator) - models.count_params(plain) == extra
    inputs = make_inputs(cfg)
    out = generator(inputs)
    prior = layers.PosePriorFlow()(inputs["source_pose"], inputs["target_pose"])
    for scale, flow in zip(generator.attention_scales, out["flows"]):
        expected = tf.nn.avg_pool2d(prior, scale, scale, "VALID") / scale
        # The flow heads start near 0, so F starts at the prior.
        np.testing.assert_allclose(flow, expected, atol=2e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(generator(inputs, training=True)["image"]))
    grads = tape.gradient(loss, generator.trainable_weights)
    assert all(g is not None for g in grads)
    path = os.path.join(str(tmp_path), "g.keras")
    generator.save(path)
    reloaded = keras.models.load_model(path)
    assert reloaded.get_config()["flow_pose_prior"]
    np.testing.assert_array_equal(reloaded(inputs)["image"], out["image"])
