"""Tests of the DeepFashion / Market input pipeline, its pre-flight check and augmentation."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gfla_tf import data
from gfla_tf.cli import data as data_cli
from gfla_tf.configs import deepfashion, market
from gfla_tf.data import augment

FRAME = (32, 22)  # annotation frame (height, width) of the fixture
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def _keypoints(i):
    points = np.stack([np.arange(18) % 20 + i, np.arange(18) + i], axis=-1).astype(int)
    points[17] = -1
    return points


def _write_layout(root, prefix="fashion", names=None, extra_rows=(), extra_pairs=()):
    """Writes a tiny dataset in the DeepFashion layout; returns the annotation dict."""
    names = names or [f"img{i}.png" for i in range(4)]
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        rows, pairs = [], []
        for i, name in enumerate(names):
            image = np.zeros(FRAME + (3,), np.uint8) + np.array(COLOURS[i % 4], np.uint8)
            Image.fromarray(image).save(root / split / name)
            pts = _keypoints(i)
            rows.append(f"{name}:{json.dumps(pts[:, 1].tolist())}:{json.dumps(pts[:, 0].tolist())}")
        for i in range(len(names)):
            pairs.append(f"{names[i]},{names[(i + 1) % len(names)]}")
        rows.extend(extra_rows)
        pairs.extend(extra_pairs)
        (root / f"{prefix}-annotation-{split}.csv").write_text(
            "name:keypoints_y:keypoints_x\n" + "\n".join(rows) + "\n"
        )
        (root / f"{prefix}-pairs-{split}.csv").write_text("from,to\n" + "\n".join(pairs) + "\n")
    return names


def _config(root, kind="deepfashion", **overrides):
    config = (deepfashion if kind == "deepfashion" else market).get_config("test").data
    config.root = str(root)
    config.annotation_height, config.annotation_width = FRAME
    config.augment = False
    for key, value in overrides.items():
        config[key] = value
    return config


def test_build_dataset_deepfashion_layout(tmp_path):
    _write_layout(tmp_path)
    # deterministic: the parallel decode may otherwise reorder pairs on a loaded machine.
    config = _config(tmp_path, deterministic=True)
    ds = data.build_dataset(config, "test", 2, (32, 32), with_names=True)
    batches = list(ds)
    assert len(batches) == 2
    batch = batches[0]
    assert batch["source_image"].shape == (2, 32, 32, 3)
    assert batch["target_pose"].shape == (2, 32, 32, 18)
    assert batch["source_keypoints"].shape == (2, 18, 2)
    assert set(batch) >= {"source_image", "target_image", "source_pose", "target_pose"}
    assert "flow" not in batch
    # img0 is red in [-1, 1], its target img1 green.
    np.testing.assert_allclose(batch["source_image"][0, 5, 5], [1, -1, -1], atol=1e-5)
    np.testing.assert_allclose(batch["target_image"][0, 5, 5], [-1, 1, -1], atol=1e-5)
    # Keypoints are scaled from the 32x22 annotation frame to 32x32.
    expected = data.scale_keypoints(_keypoints(0), FRAME, (32, 32))
    np.testing.assert_allclose(batch["source_keypoints"][0], expected, atol=1e-5)
    np.testing.assert_allclose(
        batch["source_pose"][0], data.keypoints_to_heatmaps(expected, 32, 32), atol=1e-6
    )
    assert np.all(batch["source_pose"][0, ..., 17].numpy() == 0)  # missing keypoint
    assert batch["source_name"][0].numpy() == b"img0.png"


def test_reference_spelling_and_market_prefix(tmp_path):
    _write_layout(tmp_path / "df", prefix="fasion")
    ds = data.build_dataset(_config(tmp_path / "df"), "train", 2, (16, 16), repeat=False)
    assert sum(1 for _ in ds) == 2
    _write_layout(tmp_path / "mk", prefix="market")
    ds = data.build_dataset(_config(tmp_path / "mk", "market"), "test", 4, (32, 16))
    assert next(iter(ds))["source_image"].shape == (4, 32, 16, 3)


def _bad_layout(root):
    names = _write_layout(
        root,
        extra_rows=["broken.png:[1, 2]:[3, 4]", "ghost.png:" + json.dumps([1] * 18) * 2],
        extra_pairs=["img0.png,unknown.png", "img1.png,ghost.png", "img2.png,bad.png"],
    )
    # ghost.png has a (malformed) row but no file; bad.png is truncated.
    with open(root / "test" / "img0.png", "rb") as f:
        payload = f.read()
    (root / "test" / "bad.png").write_bytes(payload[: len(payload) // 2])
    rows = (root / "fashion-annotation-test.csv").read_text()
    rows += "bad.png:" + json.dumps([1] * 18) + ":" + json.dumps([1] * 18) + "\n"
    rows += "ghost.png:" + json.dumps([1] * 18) + ":" + json.dumps([1] * 18) + "\n"
    (root / "fashion-annotation-test.csv").write_text(rows)
    return names


def test_bad_data_stop_reports_every_problem(tmp_path):
    _bad_layout(tmp_path)
    with pytest.raises(data.DataError) as info:
        data.build_dataset(_config(tmp_path), "test", 1, (16, 16))
    message = str(info.value)
    assert "row 6" in message  # broken.png: 2 values
    assert "row 7" in message  # the malformed ghost row
    assert "'unknown.png', which has no annotation" in message
    assert "ghost.png: image file missing" in message
    assert "bad.png: truncated PNG" in message
    assert "usable pairs:     4" in message


def test_bad_data_skip_drops_and_counts(tmp_path, caplog):
    _bad_layout(tmp_path)
    config = _config(tmp_path, on_bad_data="skip")
    ds = data.build_dataset(config, "test", 1, (16, 16), with_names=True)
    names = {(b["source_name"][0].numpy(), b["target_name"][0].numpy()) for b in ds}
    assert len(names) == 4
    assert "skipping 3 of 7 pairs" in caplog.text


def test_cli_check_exit_status(tmp_path, capsys):
    _write_layout(tmp_path / "good")
    assert data_cli.main(["gfla data", "check", str(tmp_path / "good")]) == 0
    assert "no problems found" in capsys.readouterr().out
    _bad_layout(tmp_path / "bad")
    assert data_cli.main(["gfla data", "check", str(tmp_path / "bad"), "--split", "test"]) == 1
    out = capsys.readouterr().out
    assert "bad.png: truncated PNG" in out and "problem(s) found" in out
    assert data_cli.main(["gfla data", "check", str(tmp_path / "nowhere")]) == 1


def test_sharding_and_determinism(tmp_path):
    names = _write_layout(tmp_path, names=[f"p{i}.png" for i in range(8)])
    config = _config(tmp_path, deterministic=True)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        ds = data.build_dataset(
            config, "test", 4, (8, 8), shuffle=True, input_context=context, with_names=True
        )
        batches = list(ds)
        assert all(b["source_image"].shape[0] == 2 for b in batches)  # per-replica batch
        seen.append([n.decode() for b in batches for n in b["source_name"].numpy()])
    assert sorted(seen[0] + seen[1]) == sorted(names)
    assert not set(seen[0]) & set(seen[1])

    def order():
        ds = data.build_dataset(config, "train", 3, (8, 8), with_names=True)
        return [n for b in ds.take(4) for n in b["source_name"].numpy()]

    assert order() == order()


def test_augmentation_moves_keypoints_with_the_image():
    height, width = 48, 32
    points = np.full((18, 2), -1.0, np.float32)
    points[0] = (11.0, 17.0)
    points[1] = (20.0, 30.0)
    yy, xx = np.mgrid[:height, :width]
    image = np.exp(-((yy - 17.0) ** 2 + (xx - 11.0) ** 2) / 2.0)[..., None].repeat(3, -1)
    image = tf.constant(image, tf.float32)
    for seed in range(4):
        src, tgt, src_kp, tgt_kp = augment.augment_pair(
            image,
            image,
            points,
            points,
            tf.constant([7, seed], tf.int64),
            max_angle=30.0,
            max_shift=5.0,
            scale_range=(0.9, 1.1),
        )
        for img, kps in ((src, src_kp), (tgt, tgt_kp)):
            img, kps = img.numpy()[..., 0], kps.numpy()
            assert np.all(kps[2:] == -1)  # missing keypoints stay missing
            # The bright spot's centroid follows the keypoint.
            weights = np.where(img > 0.3, img, 0)
            centroid = (np.sum(weights * xx) / weights.sum(), np.sum(weights * yy) / weights.sum())
            np.testing.assert_allclose(centroid, kps[0], atol=0.35)
            # So does the heatmap peak of the moved keypoint.
            maps = data.keypoints_to_heatmaps(kps, height, width, 2.0).numpy()[..., 0]
            peak = np.unravel_index(maps.argmax(), maps.shape)
            assert abs(peak[1] - kps[0][0]) <= 0.5 and abs(peak[0] - kps[0][1]) <= 0.5
        assert not np.allclose(src_kp, points)


def test_market_pipeline_augments_train_only(tmp_path):
    _write_layout(tmp_path, prefix="market")
    config = _config(tmp_path, "market", augment=True, deterministic=True, augment_angle=20.0)
    train = next(iter(data.build_dataset(config, "train", 4, (32, 22), shuffle=False)))
    test = next(iter(data.build_dataset(config, "test", 4, (32, 22))))
    expected = np.stack([_keypoints(i) for i in range(4)]).astype(np.float32)
    expected[:, 17] = -1
    np.testing.assert_allclose(test["source_keypoints"], expected)
    moved = train["source_keypoints"].numpy()
    assert not np.allclose(moved[:, :17], expected[:, :17], atol=0.5)
    assert np.all(moved[:, 17] == -1)


# --- issue 11: gfla data check on what users' files look like -------------------------


def test_malformed_row_is_one_problem_without_follow_ons(tmp_path):
    """A stray quote used to swallow every later row (csv quoting), and the pairs naming
    those images then gave a "no annotation" problem each."""
    names = _write_layout(tmp_path)
    path = tmp_path / "fashion-annotation-test.csv"
    lines = path.read_text().splitlines()
    lines[2] = 'img1.png:"[1, 2:[3, 4]'  # row 3: img1's row, an unbalanced quote
    path.write_text("\n".join(lines) + "\n")
    report = data.scan_dataset(tmp_path, "deepfashion", "test")
    assert len(report.problems) == 1, report.problems
    assert "row 3" in report.problems[0]
    assert sorted(report.keypoints) == sorted(set(names) - {"img1.png"})
    # The two pairs naming img1 are dropped, silently: the row was reported.
    assert report.pairs == [("img2.png", "img3.png"), ("img3.png", "img0.png")]
    assert report.num_images_checked == 3


def test_images_checked_counts_images_opened(tmp_path):
    _write_layout(
        tmp_path,
        extra_rows=["ghost.png:" + json.dumps([1] * 18) + ":" + json.dumps([1] * 18)],
        extra_pairs=["img0.png,unknown.png", "img1.png,ghost.png"],
    )
    report = data.scan_dataset(tmp_path, "deepfashion", "test")
    # unknown.png has no annotation and ghost.png no file: neither was opened.
    assert report.num_images_checked == 4
    assert "images checked:   4" in report.summary()
    assert data.scan_dataset(tmp_path, "deepfashion", "test", False).num_images_checked == 0


def test_csv_files_with_a_byte_order_mark(tmp_path, capsys):
    _write_layout(tmp_path)
    for name in ("fashion-annotation-test.csv", "fashion-pairs-test.csv"):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    report = data.scan_dataset(tmp_path, "deepfashion", "test")
    assert report.problems == [] and len(report.pairs) == 4
    assert data_cli.main(["gfla data", "check", str(tmp_path), "--split", "test"]) == 0
    assert "no problems found" in capsys.readouterr().out
