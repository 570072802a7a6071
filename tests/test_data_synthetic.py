"""Tests of the synthetic person dataset: exact flow, determinism, atomic writes, CLI."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from gfla_tf import data
from gfla_tf.cli import data as data_cli
from gfla_tf.configs import synthetic as synthetic_config
from gfla_tf.data import synthetic


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    return synthetic.generate_dataset(root, 12, num_test_pairs=2, size=64, seed=3)


def _load(root, split, source, target):
    images = [
        np.asarray(Image.open(os.path.join(root, split, n)), np.float64) / 255.0
        for n in (source, target)
    ]
    flow, visibility = data.read_flow(synthetic.flow_path(root, split, source, target))
    return images, flow, visibility[..., 0] > 0


def test_layout_and_manifest(synth_root):
    manifest = synthetic.read_manifest(synth_root)
    assert manifest["size"] == 64 and manifest["num_pairs"] == 12
    report = data.scan_dataset(synth_root, "synthetic", "train")
    assert not report.problems and len(report.pairs) == 12
    assert len(data.scan_dataset(synth_root, "synthetic", "test").pairs) == 2
    for source, target in report.pairs:
        assert source != target and source.split("_")[1] == target.split("_")[1]


def test_flow_warps_source_onto_target(synth_root):
    """Bilinear warping of the source by the GT flow reproduces the target where visible."""
    report = data.scan_dataset(synth_root, "synthetic", "train")
    warp_errors, still_errors, occluded = [], [], 0
    for source, target in report.pairs:
        (src, tgt), flow, visible = _load(synth_root, "train", source, target)
        warped = data.warp_numpy(src, flow)
        moving = visible & (np.hypot(flow[..., 0], flow[..., 1]) > 0.5)
        assert moving.sum() > 20
        warp_errors.append(np.abs(warped - tgt)[moving].mean())
        still_errors.append(np.abs(src - tgt)[moving].mean())
        occluded += int((~visible).sum())
    # PNG rounding is 0.002 and bilinear interpolation of the textures adds a little.
    assert np.mean(warp_errors) < 0.02, warp_errors
    assert max(warp_errors) < 0.04, warp_errors
    assert np.mean(warp_errors) < 0.2 * np.mean(still_errors)
    assert occluded > 0  # pose changes occlude parts of the body


def _assert_flow_is_exact(sample):
    flow, visible = sample["flows"][(0, 1)], sample["visibility"][(0, 1)]
    ids = sample["part_ids"]
    yy, xx = np.mgrid[:64, :64]
    sx = np.rint(xx + flow[..., 0]).astype(int).clip(0, 63)
    sy = np.rint(yy + flow[..., 1]).astype(int).clip(0, 63)
    # Visible target pixels land on the same body part in the source.
    np.testing.assert_array_equal(ids[0][sy, sx][visible], ids[1][visible])
    assert np.all(flow[ids[1] == 0] == 0)  # static background


def test_render_pair_flow_is_exact_for_part_coordinates():
    _assert_flow_is_exact(synthetic.render_pair([5, 0, 1], 64))


def test_person_masks_match_part_ids(synth_root):
    """masks/<split>/<image>: 8-bit PNG, 0 = background, else the part id of the render."""
    manifest = synthetic.read_manifest(synth_root)
    assert manifest["version"] == synthetic.FORMAT_VERSION >= 3
    for split in ("train", "test"):
        names = sorted(os.listdir(os.path.join(synth_root, split)))
        assert sorted(os.listdir(os.path.join(synth_root, "masks", split))) == names
    with Image.open(synthetic.mask_path(synth_root, "train", "train_000001_0.png")) as mask:
        assert mask.mode == "L" and mask.size == (64, 64)
        ids = np.asarray(mask)
    sample = synthetic.render_pair([3, 0, 1], 64)
    np.testing.assert_array_equal(ids, sample["part_ids"][0])
    person = synthetic.read_mask(synth_root, "train", "train_000001_0.png")
    assert 0.05 < person.mean() < 0.5
    # The background is static: the person mask is where the ground-truth flow is non-zero.
    (_, _), flow, _ = _load(synth_root, "train", "train_000001_1.png", "train_000001_0.png")
    moving = np.abs(flow).max(axis=-1) > 0
    assert not moving[~person].any()


def test_identity_pairs(tmp_path):
    root = synthetic.generate_dataset(
        tmp_path / "ds", 4, num_test_pairs=2, size=32, identity_pairs=2
    )
    assert synthetic.read_manifest(root)["identity_pairs"] == 2
    pairs = data.scan_dataset(root, "synthetic", "train").pairs
    assert len(pairs) == 6 and pairs[4][0] == pairs[4][1] and pairs[5][0] == pairs[5][1]
    flow, visibility = data.read_flow(synthetic.flow_path(root, "train", *pairs[4]))
    assert not flow.any() and visibility.all()
    assert len(data.scan_dataset(root, "synthetic", "test").pairs) == 2  # train split only


def test_deterministic_for_a_seed(tmp_path):
    a = synthetic.generate_dataset(tmp_path / "a", 3, num_test_pairs=1, size=32, seed=9)
    b = synthetic.generate_dataset(tmp_path / "b", 3, num_test_pairs=1, size=32, seed=9)
    c = synthetic.generate_dataset(tmp_path / "c", 3, num_test_pairs=1, size=32, seed=10)
    files = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    assert len(files) > 10
    for name in files:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), name
    image = os.path.join("train", "train_000000_0.png")
    with open(os.path.join(a, image), "rb") as fa, open(os.path.join(c, image), "rb") as fc:
        assert fa.read() != fc.read()


def test_atomic_write_and_reuse(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate_dataset(out, 4, num_test_pairs=2, size=32, _interrupt_after="train")
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no partial folder left behind
    synthetic.generate_dataset(out, 4, num_test_pairs=2, size=32)
    stamp = os.path.getmtime(out / synthetic.MANIFEST)
    synthetic.generate_dataset(out, 4, num_test_pairs=2, size=32)  # reused
    assert os.path.getmtime(out / synthetic.MANIFEST) == stamp
    with pytest.raises(FileExistsError):
        synthetic.generate_dataset(out, 5, num_test_pairs=2, size=32)
    synthetic.generate_dataset(out, 5, num_test_pairs=2, size=32, overwrite=True)
    assert synthetic.read_manifest(out)["num_pairs"] == 5
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    # A dataset written by an older generator version is never silently reused.
    manifest = json.loads((out / synthetic.MANIFEST).read_text())
    manifest["version"] = synthetic.FORMAT_VERSION - 1
    (out / synthetic.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FileExistsError, match="not the requested synthetic dataset"):
        synthetic.generate_dataset(out, 5, num_test_pairs=2, size=32)
    # ...unless the caller owns the folder; other content is still never replaced.
    data_config = synthetic_config.get_config("test").data
    data_config.update(dict(synthetic_pairs=5, synthetic_test_pairs=2, synthetic_size=32))
    synthetic.generate_from_config(data_config, out, 0, replace_synthetic=True)
    assert synthetic.read_manifest(out)["version"] == synthetic.FORMAT_VERSION
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        synthetic.generate_from_config(data_config, tmp_path / "other", 0, replace_synthetic=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="size"):
        synthetic.generate_dataset(tmp_path / "x", 4, size=8)


def test_resize_flow():
    flow = np.zeros((1, 8, 8, 2), np.float32)
    yy, xx = np.mgrid[:8, :8]
    flow[0, ..., 0] = 0.5 * xx + 2.0  # an affine flow
    flow[0, ..., 1] = -4.0
    visibility = np.ones((1, 8, 8, 1), np.float32)
    visibility[0, :4, :4] = 0
    visibility[0, 4, 4] = 0
    small, vis = data.resize_flow(flow, visibility, 4)
    assert small.shape == (1, 2, 2, 2) and vis.shape == (1, 2, 2, 1)
    centres = np.array([1.5, 5.5])
    # Mean over each fully visible block: the flow at the block centre, in 1/4 pixels.
    np.testing.assert_allclose(small[0, 0, 1, 0], (0.5 * centres[1] + 2.0) / 4, atol=1e-5)
    np.testing.assert_allclose(small[0, ..., 1], -1.0, atol=1e-6)
    np.testing.assert_array_equal(vis[0, ..., 0], [[0, 1], [1, 1]])
    single, _ = data.resize_flow(flow[0], visibility[0, ..., 0], 2)
    assert single.shape == (4, 4, 2)
    with pytest.raises(ValueError, match="factor"):
        data.resize_flow(flow, visibility, 3)


def test_pipeline_generates_and_reads_flow(tmp_path):
    config = synthetic_config.get_config("test")
    config.data.root = str(tmp_path / "auto")
    config.data.synthetic_pairs, config.data.synthetic_test_pairs = 4, 2
    ds = data.build_dataset(config.data, "test", 2, (32, 32), with_names=True)
    batch = next(iter(ds))
    assert batch["flow"].shape == (2, 32, 32, 2) and batch["visibility"].shape == (2, 32, 32, 1)
    source, target = (batch[k][0].numpy().decode() for k in ("source_name", "target_name"))
    flow, visibility = data.read_flow(synthetic.flow_path(config.data.root, "test", source, target))
    np.testing.assert_allclose(batch["flow"][0], flow)
    np.testing.assert_array_equal(batch["visibility"][0], visibility)
    # Loading at half size scales the flow with the image.
    half = next(iter(data.build_dataset(config.data, "test", 2, (16, 16))))
    assert half["flow"].shape == (2, 16, 16, 2)
    assert np.abs(half["flow"]).max() <= np.abs(batch["flow"]).max() / 2 + 0.5


def test_cli_synth_and_sheet(tmp_path, capsys):
    out, sheet = tmp_path / "ds", tmp_path / "sheet.png"
    args = ["gfla data", "synth", "--out", str(out), "--pairs", "3", "--test-pairs", "1"]
    assert data_cli.main(args + ["--size", "32", "--sheet", str(sheet)]) == 0
    assert synthetic.read_manifest(out) is not None
    picture = np.asarray(Image.open(sheet))
    assert picture.shape[1] == 7 * picture.shape[0] // 3  # 3 rows of 7 square cells
    second = tmp_path / "sheet2.png"
    assert data_cli.main(["gfla data", "sheet", str(out), "--out", str(second)]) == 0
    assert second.exists()
    assert data_cli.main(["gfla data", "check", str(out)]) == 0
    assert data_cli.main(args + ["--size", "48"]) == 2  # exists with other parameters
    assert "exists" in capsys.readouterr().err


def test_pose_change_moves_the_target_part_of_the_way():
    independent = synthetic.render_pair([7, 0, 1], 64)
    assert synthetic.render_pair([7, 0, 1], 64, pose_change=1.0)["images"][1].tobytes() == (
        independent["images"][1].tobytes()
    )

    def joint_motion(sample):
        a, b = (np.asarray(k) for k in sample["keypoints"])
        seen = (a >= 0).all(axis=1) & (b >= 0).all(axis=1)
        return np.linalg.norm(a[seen] - b[seen], axis=1).mean()

    seeds = [[s, 0, 1] for s in range(12)]
    near = [joint_motion(synthetic.render_pair(s, 64, pose_change=0.3)) for s in seeds]
    far = [joint_motion(synthetic.render_pair(s, 64)) for s in seeds]
    assert np.mean(near) < 0.5 * np.mean(far)
    # The flow stays exact for the nearby pose.
    _assert_flow_is_exact(synthetic.render_pair([5, 0, 1], 64, pose_change=0.3))


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, float("nan")])
def test_pose_change_out_of_range(tmp_path, value):
    with pytest.raises(ValueError, match="pose_change must be in"):
        synthetic.generate_dataset(tmp_path / "ds", 2, num_test_pairs=0, size=32, pose_change=value)
