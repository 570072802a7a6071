"""Tests of ``gfla quickstart``: its tiny ``--fast`` mode end to end, help, export reuse."""

import os

import numpy as np
import pytest

from gfla_tf import training
from gfla_tf.cli import quickstart


@pytest.mark.slow
def test_quickstart_fast_runs_end_to_end(tmp_path, capsys):
    workdir = str(tmp_path / "qs")
    status = quickstart.main(["gfla quickstart", "--fast", "--workdir", workdir, "--no-export"])
    out = capsys.readouterr().out
    assert status == 0
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in out
    assert "SSIM" in out and "copy the source" in out and "zero flow" in out
    # The appearance measures with both baseline rows, and EPE with unit and scale.
    for text in ("identity SSIM", "person MAE", "source dependence", "ground-truth flow"):
        assert text in out
    assert "flow EPE, px at full resolution" in out
    # The verdict names every target it misses (all of them at --fast).
    for target in ("source dependence >= 0.20", "person MAE <= 0.12", "identity SSIM >= 0.90"):
        assert target in out
    assert os.path.isfile(os.path.join(workdir, "samples.png"))
    assert os.path.isfile(os.path.join(workdir, "stage2", "generator.weights.h5"))
    # Stage 2 started its flow estimator from stage 1.
    assert os.path.isdir(os.path.join(workdir, "stage1", "checkpoints"))
    assert os.path.isdir(os.path.join(workdir, "data", "masks", "test"))


def test_quickstart_rejects_unknown_option(capsys):
    with pytest.raises(SystemExit):
        quickstart.main(["gfla quickstart", "--no-such-option"])


def test_help_has_no_raw_markup(capsys):
    with pytest.raises(SystemExit) as exit_info:
        quickstart.main(["gfla quickstart", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "source dependence" in text


def _tiny_generator():
    from gfla_tf import models
    from gfla_tf.configs import synthetic

    config = synthetic.get_config("test")
    generator = models.build_generator(config.model)
    h, w = config.model.image_height, config.model.image_width
    zeros = np.zeros((1, h, w, 18), np.float32)
    generator(
        {
            "source_image": np.zeros((1, h, w, 3), np.float32),
            "source_pose": zeros,
            "target_pose": zeros,
        }
    )
    return generator, config


def test_rerun_reuses_the_export(tmp_path):
    generator, _ = _tiny_generator()
    first, reused = quickstart._export(generator, str(tmp_path), 6.0)
    assert not reused and os.path.basename(first) == "1"
    again, reused = quickstart._export(generator, str(tmp_path), 6.0)
    assert reused and again == first
    assert sorted(os.listdir(tmp_path / "export")) == ["1"]
    # Other weights (a longer run in the same workdir) get a new version.
    variable = generator.weights[0]
    variable.assign(variable + 1.0)
    third, reused = quickstart._export(generator, str(tmp_path), 6.0)
    assert not reused and os.path.basename(third) == "2"


def test_sample_grid_has_an_identity_column():
    generator, config = _tiny_generator()
    rng = np.random.default_rng(0)
    h, w = config.model.image_height, config.model.image_width
    batch = {
        "source_image": rng.uniform(-1, 1, (2, h, w, 3)).astype(np.float32),
        "target_image": rng.uniform(-1, 1, (2, h, w, 3)).astype(np.float32),
        "source_pose": rng.uniform(0, 1, (2, h, w, 18)).astype(np.float32),
        "target_pose": rng.uniform(0, 1, (2, h, w, 18)).astype(np.float32),
    }
    grid = training.sample_grid(generator, batch, identity=True)
    assert grid.shape == (2 * h, 7 * w, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(
        grid[:h, :w], ((batch["source_image"][0] + 1) / 2 * 255 + 0.5).astype(np.uint8)
    )
