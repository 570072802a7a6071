"""``gfla evaluate`` end to end on a tiny synthetic dataset with a tiny random generator."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from gfla_tf.cli import main as cli
from gfla_tf.configs import synthetic
from gfla_tf.evaluation import LPIPS
from gfla_tf.evaluation import fid as fid_lib

NUM_TEST_PAIRS = 5


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 32x32 synthetic dataset, a random generator (.keras) and random LPIPS weights."""
    from gfla_tf.data.synthetic import generate_dataset
    from gfla_tf.models import build_generator

    root = tmp_path_factory.mktemp("evaluate")
    config = synthetic.get_config("test")
    size = config.model.image_height
    data = generate_dataset(str(root / "data"), 6, num_test_pairs=NUM_TEST_PAIRS, size=size, seed=0)
    keras.utils.set_random_seed(0)
    model = str(root / "generator.keras")
    build_generator(config.model).save(model)
    lpips = str(root / "lpips.weights.h5")
    LPIPS().save_weights(lpips)
    return {"root": root, "data": data, "model": model, "lpips": lpips}


@pytest.fixture(scope="module")
def tiny_inception_module():
    """Replaces InceptionV3 with a small random network (the FID plumbing is what is tested)."""

    def build(weights="default", input_size=299, protocol="gfla"):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((input_size, input_size, 3))
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(6)(x))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fid_lib, "build_inception", build)
        yield


def _evaluate(workspace, out, *extra):
    argv = ["gfla", "evaluate", "--model", workspace["model"], "--data", workspace["data"]]
    return cli.main(argv + ["--out", str(out), *extra])


def _per_pair(out):
    with open(os.path.join(out, "per_pair.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_writes_metrics_and_report(default_run):
    status, out = default_run
    assert status == 0
    with open(out / "metrics.json") as f:
        result = json.load(f)
    metrics = result["metrics"]
    assert result["num_pairs"] == NUM_TEST_PAIRS
    assert {"ssim", "psnr", "lpips", "fid", "epe", "warp_ssim"} <= set(metrics)
    assert -1 <= metrics["ssim"] <= 1 and metrics["lpips"] >= 0 and np.isfinite(metrics["fid"])
    assert 0 <= metrics["lpips_masked"] and "person mask" in result["protocol"]["lpips"]
    # Flow EPE like the quickstart's: full-resolution px per scale, zero flow beside it.
    assert set(metrics["epe"]) == {"unit", "resolution", "1/8", "1/4", "zero_flow"}
    assert metrics["epe"]["unit"] == "px" and metrics["epe"]["resolution"] == "32x32 (full)"
    for scale in ("1/8", "1/4", "zero_flow"):
        assert set(metrics["epe"][scale]) == {"all", "visible", "moving"}
    assert "ssim_gaussian_dynamic" in metrics and "ssim_uniform51" not in metrics
    assert -1 <= metrics["ssim_gaussian_dynamic"] <= 1
    assert set(result["protocol"]["paper_ssim"]) == {"ssim_gaussian_dynamic"}
    assert "keras.applications.InceptionV3" in result["protocol"]["fid_features"]
    assert {"1/8", "1/4", "ground_truth"} == set(metrics["warp_ssim"])
    protocol = result["protocol"]
    assert protocol["resolution"] == [32, 32] and protocol["num_pairs"] == NUM_TEST_PAIRS
    for key in ("resize_filter", "generated_format", "fid_reference", "ssim", "lpips"):
        assert protocol[key] and protocol[key] != "not computed"
    assert os.path.exists(out / "fid_reference_stats.npz")
    rows = _per_pair(out)
    assert len(rows) == NUM_TEST_PAIRS and {"source", "target", "ssim", "lpips"} <= set(rows[0])
    page = (out / "report.html").read_text()
    assert "Best pairs by lpips" in page and "Worst pairs by lpips" in page
    images = sorted(os.listdir(out / "report"))
    strips = ["best_00.png", "best_01.png", "worst_00.png", "worst_01.png"]
    # The flow panels' colour wheel (gfla_tf.data.visualize.flow_legend) is shown once.
    assert images == sorted(strips + ["flow_legend.png"])
    assert all(f'src="report/{name}"' in page for name in images)


@pytest.fixture(scope="module")
def default_run(workspace, tiny_inception_module):
    """One full evaluation (every metric, default strategy), shared by the tests."""
    out = workspace["root"] / "out"
    status = _evaluate(
        workspace,
        out,
        "--metrics", "ssim,psnr,lpips,lpips_masked,fid,epe",
        "--lpips-weights", workspace["lpips"],
        "--inception-weights", "random",
        "--fid-protocol", "keras",
        "--fid-input-size", "16",
        "--batch-size", "4",
        "--num-examples", "2",
    )  # fmt: skip
    return status, out


def test_evaluate_mirrored_matches_default(workspace, default_run):
    """Two logical CPUs (conftest): replicated generation gives the same per-pair SSIM."""
    out = workspace["root"] / "out-mirrored"
    extra = ("--metrics", "ssim", "--batch-size", "4", "--strategy", "mirrored")
    assert _evaluate(workspace, out, *extra) == 0
    default, mirrored = _per_pair(default_run[1]), _per_pair(out)
    assert [r["source"] for r in default] == [r["source"] for r in mirrored]
    np.testing.assert_allclose(
        [float(r["ssim"]) for r in default], [float(r["ssim"]) for r in mirrored], atol=2e-3
    )


def test_missing_weights_fail_before_generating(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    missing = str(tmp_path / "nope.npz")
    assert _evaluate(workspace, out, "--metrics", "ssim,lpips", "--lpips-weights", missing) == 2
    assert "--lpips-weights" in capsys.readouterr().err
    assert not os.path.exists(out / "metrics.json")
    assert _evaluate(workspace, out, "--metrics", "ssim,bogus") == 2
    assert "bogus" in capsys.readouterr().err


def test_gfla_fid_needs_a_whole_batch_of_64(workspace, tiny_inception_module, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ("--metrics", "fid", "--inception-weights", "random", "--fid-protocol", "gfla")
    assert _evaluate(workspace, out, *extra) == 2
    error = capsys.readouterr().err
    assert "whole batches of 64" in error and "--fid-protocol keras" in error
    assert not os.path.exists(out / "metrics.json")
