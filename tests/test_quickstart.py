"""Smoke test of ``gfla quickstart`` in its tiny ``--fast`` mode."""

import os

import pytest

from gfla_tf.cli import quickstart

pytestmark = pytest.mark.slow


def test_quickstart_fast_runs_end_to_end(tmp_path, capsys):
    workdir = str(tmp_path / "qs")
    status = quickstart.main(["gfla quickstart", "--fast", "--workdir", workdir, "--no-export"])
    out = capsys.readouterr().out
    assert status == 0
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in out
    assert "SSIM" in out and "copy the source" in out and "zero flow" in out
    assert os.path.isfile(os.path.join(workdir, "samples.png"))
    assert os.path.isfile(os.path.join(workdir, "stage2", "generator.weights.h5"))
    # Stage 2 started its flow estimator from stage 1.
    assert os.path.isdir(os.path.join(workdir, "stage1", "checkpoints"))


def test_quickstart_rejects_unknown_option(capsys):
    with pytest.raises(SystemExit):
        quickstart.main(["gfla quickstart", "--no-such-option"])
