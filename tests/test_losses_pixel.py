"""The quickstart's pixel-space losses (gfla_tf.losses.pixel) and their trainer wiring."""

import numpy as np
import pytest
import tensorflow as tf

from gfla_tf.losses import pixel


def _pair(size=16):
    rng = np.random.default_rng(0)
    source = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    gt_flow = np.zeros((2, size, size, 2), np.float32)
    gt_flow[:, 4:12, 4:12, 0] = 2.0  # the person moved 2 px; the background is static
    target = source.copy()
    target[:, 4:12, 4:12] = source[:, 4:12, 6:14]
    visibility = np.ones((2, size, size, 1), np.float32)
    return source, target, gt_flow, visibility


def test_person_region_is_where_the_ground_truth_moves():
    _, _, gt_flow, _ = _pair()
    region = pixel.person_region(gt_flow).numpy()
    assert region.sum() == 2 * 64 and region[:, 4:12, 4:12].all()


def test_warp_correctness_is_zero_for_the_true_flow_only():
    source, target, gt_flow, visibility = _pair()
    right = pixel.warp_correctness_loss(source, target, gt_flow, gt_flow, visibility, 1)
    zero = pixel.warp_correctness_loss(
        source, target, np.zeros_like(gt_flow), gt_flow, visibility, 1
    )
    np.testing.assert_allclose(right.numpy(), 0.0, atol=1e-6)
    assert np.all(zero.numpy() > 0.1)
    # It has a gradient with respect to the flow (it trains the flow estimator).
    flow = tf.Variable(np.zeros((2, 8, 8, 2), np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(
            pixel.warp_correctness_loss(source, target, flow, gt_flow, visibility, 2)
        )
    assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, flow)))) > 0


def test_person_l1_ignores_the_background():
    source, target, gt_flow, _ = _pair()
    generated = target.copy()
    generated[:, :2] = 1.0  # wrong background only
    np.testing.assert_allclose(pixel.person_l1_loss(generated, target, gt_flow).numpy(), 0.0)
    generated[:, 4:12, 4:12] += 0.5
    assert np.all(pixel.person_l1_loss(generated, target, gt_flow).numpy() > 0.4)


def test_mask_visibility_is_one_sided():
    visibility = np.zeros((1, 8, 8, 1), np.float32)
    visibility[:, :4] = 1.0
    ones = pixel.mask_visibility_loss(np.ones((1, 4, 4, 1), np.float32), visibility, 2)
    half = pixel.mask_visibility_loss(np.full((1, 4, 4, 1), 0.5, np.float32), visibility, 2)
    np.testing.assert_allclose(ones.numpy(), 0.0, atol=1e-6)
    assert float(half[0]) == pytest.approx(np.log(2.0) * 8 / 9, rel=1e-5)
    # Occluded pixels are not pushed anywhere.
    mask = np.ones((1, 4, 4, 1), np.float32)
    mask[:, 2:] = 0.01
    np.testing.assert_allclose(
        pixel.mask_visibility_loss(mask, visibility, 2).numpy(), 0.0, atol=1e-6
    )


def _random_batch(config, n, seed, ground_truth):
    """A random training batch at the config's size, with or without ground-truth flow."""
    h, w = config.model.image_height, config.model.image_width
    rng = np.random.default_rng(seed)
    batch = {
        "source_image": rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32),
        "target_image": rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32),
        "source_pose": rng.uniform(0, 1, (n, h, w, 18)).astype(np.float32),
        "target_pose": rng.uniform(0, 1, (n, h, w, 18)).astype(np.float32),
    }
    if ground_truth:
        batch["flow"] = rng.uniform(-2, 2, (n, h, w, 2)).astype(np.float32)
        batch["visibility"] = np.ones((n, h, w, 1), np.float32)
    return batch


def test_trainer_reports_the_pixel_losses():
    from gfla_tf import training
    from gfla_tf.configs import synthetic

    config = synthetic.get_config("test")
    batch = _random_batch(config, 2, seed=1, ground_truth=True)
    weights = {
        1: dict(flow_supervision=1.0, warp_correctness=1.0, mask_visibility=1.0),
        2: dict(l1=1.0, adversarial=0.1, warp_correctness=1.0, person_l1=1.0, mask_visibility=1.0),
    }
    for stage in (1, 2):
        config.train.stage = stage
        config.loss[f"stage{stage}"] = weights[stage]
        trainer = training.build_trainer(config)
        logs = trainer.train_step({k: tf.constant(v) for k, v in batch.items()})
        for name in weights[stage]:
            assert np.isfinite(float(logs[name])), name


@pytest.mark.parametrize(
    "stage, name",
    [(1, "warp_correctness"), (1, "mask_visibility"), (2, "person_l1"), (1, "flow_supervision")],
)
def test_ground_truth_losses_name_themselves_without_ground_truth(stage, name):
    from gfla_tf import training
    from gfla_tf.configs import synthetic

    config = synthetic.get_config("test")
    batch = _random_batch(config, 1, seed=2, ground_truth=False)
    config.train.stage = stage
    config.loss[f"stage{stage}"] = {"l1": 1.0, name: 1.0} if stage == 2 else {name: 1.0}
    trainer = training.build_trainer(config)
    with pytest.raises(ValueError, match=f"loss weight {name} needs 'flow' and 'visibility'"):
        trainer.train_step({k: tf.constant(v) for k, v in batch.items()})
