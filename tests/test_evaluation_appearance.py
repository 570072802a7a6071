"""The appearance measures: identity SSIM, person MAE, source dependence and baselines."""

import numpy as np
import pytest

from gfla_tf.evaluation import appearance


def _batch(seed=0, n=6, size=16):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    targets = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    mask = np.zeros((n, size, size, 1), np.float32)
    mask[:, 4:12, 6:10] = 1.0
    flow = np.zeros((n, size, size, 2), np.float32)
    flow[..., 0] = 1.0  # the target pixel (x, y) is the source's (x + 1, y)
    targets = np.where(mask > 0, np.roll(images, -1, axis=2), targets)
    pose = rng.uniform(0, 1, (n, size, size, 2)).astype(np.float32)
    return {
        "source_image": images,
        "target_image": targets,
        "source_pose": pose,
        "target_pose": pose[::-1].copy(),
        "target_mask": mask,
        "flow": flow,
    }


def test_baselines_and_a_model_that_ignores_the_source():
    batch = _batch()
    results = appearance.appearance_scores(
        lambda inputs: np.zeros_like(inputs["source_image"]), [batch]
    )
    copy, warp, model = results["copy_source"], results["gt_warp"], results["model"]
    assert copy.identity_ssim == pytest.approx(1.0) and warp.identity_ssim == pytest.approx(1.0)
    # Warping with the true flow reproduces the target on the person pixels.
    assert warp.person_mae == pytest.approx(0.0, abs=1e-6)
    assert copy.person_mae > 0.2
    # A model whose output does not depend on the source: dependence 0.
    assert model.source_dependence == 0.0 and model.pairs == 6
    # Against a constant mid-grey output, [0, 1] units: the mean |0.5 - uniform[0, 1]|.
    assert model.person_mae == pytest.approx(0.25, abs=0.03)
    assert copy.source_dependence == pytest.approx(1 / 3, abs=0.05)  # E|U - U'| on [0, 1]
    assert not model.meets_targets()["source_dependence"]
    table = appearance.format_table(results)
    assert "copy the source" in table and "ground-truth flow" in table and "target" in table
    assert "| target | >= 0.90 | <= 0.12 | >= 0.20 |" in table
    checks = dict(model.target_checks())
    assert list(checks) == [
        "identity SSIM >= 0.90",
        "person MAE <= 0.12",
        "source dependence >= 0.20",
    ]
    assert not checks["source dependence >= 0.20"]


def test_copying_model_scores_like_the_copy_baseline_and_batches_are_pooled():
    batch = _batch(1, n=8)
    halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
    results = appearance.appearance_scores(lambda inputs: inputs["source_image"], halves)
    for field in ("identity_ssim", "person_mae", "source_dependence"):
        assert getattr(results["model"], field) == pytest.approx(
            getattr(results["copy_source"], field)
        )
    assert results["model"].pairs == 8
    limited = appearance.appearance_scores(None, halves, max_pairs=3)
    assert set(limited) == {"copy_source", "gt_warp"} and limited["copy_source"].pairs == 3


def test_needs_masks():
    batch = _batch()
    del batch["target_mask"]
    with pytest.raises(ValueError, match="target_mask"):
        appearance.appearance_scores(None, [batch])
