"""Tests of the keypoint utilities: heatmaps, scaling, format readers, pictures."""

import json

import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import data
from gfla_tf.data import keypoints as kp
from gfla_tf.data import visualize


def _random_keypoints(rng, shape, height, width, missing=0.2):
    points = np.stack(
        [rng.uniform(0, width - 1, shape + (18,)), rng.uniform(0, height - 1, shape + (18,))],
        axis=-1,
    )
    points[rng.random(shape + (18,)) < missing] = -1
    return points.astype(np.float32)


def test_keypoint_names_order():
    assert len(data.KEYPOINT_NAMES) == 18
    assert data.KEYPOINT_NAMES[:3] == ("nose", "neck", "Rsho")
    assert data.KEYPOINT_NAMES[-4:] == ("Leye", "Reye", "Lear", "Rear")


def test_heatmaps_match_numpy_formula():
    rng = np.random.default_rng(0)
    points = _random_keypoints(rng, (2, 3), 24, 20)
    got = data.keypoints_to_heatmaps(points, 24, 20, sigma=3.0).numpy()
    assert got.shape == (2, 3, 24, 20, 18) and got.dtype == np.float32
    np.testing.assert_allclose(got, kp.heatmaps_numpy(points, 24, 20, 3.0), atol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 3.0, 6.0])
def test_heatmaps_to_keypoints_inverts_heatmaps(sigma):
    rng = np.random.default_rng(1)
    points = _random_keypoints(rng, (3,), 24, 20)
    points[0, :4] = ((0, 0), (19, 23), (0, 12.25), (7.5, 23))  # corners and edges
    got = data.heatmaps_to_keypoints(data.keypoints_to_heatmaps(points, 24, 20, sigma)).numpy()
    assert got.shape == (3, 18, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, points, atol=2e-3)
    assert np.all(got[points[..., 0] < 0] == -1)


def test_heatmaps_to_keypoints_in_tf_function_and_bad_sizes():
    points = np.array([[[4.3, 2.6]] * 18], np.float32)
    maps = data.keypoints_to_heatmaps(points, 8, 6, 2.0)
    got = tf.function(data.heatmaps_to_keypoints)(maps).numpy()
    np.testing.assert_allclose(got, points, atol=1e-3)
    with pytest.raises(ValueError, match="at least 3x3"):
        data.heatmaps_to_keypoints(tf.zeros((1, 2, 8, 18)))


def test_heatmap_values_at_and_near_keypoint():
    points = np.full((18, 2), -1.0, np.float32)
    points[0] = (5.0, 7.0)  # x, y
    points[1] = (10.5, 3.0)
    maps = data.keypoints_to_heatmaps(points, 16, 16, sigma=6.0).numpy()
    assert maps[7, 5, 0] == pytest.approx(1.0)
    assert maps[7, 6, 0] == pytest.approx(np.exp(-1 / 72), rel=1e-6)
    assert maps[9, 5, 0] == pytest.approx(np.exp(-4 / 72), rel=1e-6)
    assert maps[3, 10, 1] == pytest.approx(np.exp(-0.25 / 72), rel=1e-6)
    # Missing keypoints (either coordinate negative) give all-zero channels.
    assert np.all(maps[..., 2:] == 0)
    points[0] = (5.0, -1.0)
    assert np.all(data.keypoints_to_heatmaps(points, 16, 16).numpy()[..., 0] == 0)


def test_heatmaps_in_tf_function_and_bad_args():
    fn = tf.function(
        lambda k: data.keypoints_to_heatmaps(k, 8, 6, 2.0),
        input_signature=[tf.TensorSpec([None, 18, 2], tf.float32)],
    )
    out = fn(tf.zeros([3, 18, 2]))
    assert out.shape == (3, 8, 6, 18)
    with pytest.raises(ValueError, match="keypoints"):
        data.keypoints_to_heatmaps(np.zeros((18, 3)), 8, 8)
    with pytest.raises(ValueError, match="sigma"):
        data.keypoints_to_heatmaps(np.zeros((18, 2)), 8, 8, sigma=0)


def test_scale_keypoints_between_frames():
    points = np.array([[88.0, 128.0], [-1.0, -1.0]] + [[0.0, 0.0]] * 16, np.float32)
    scaled = data.scale_keypoints(points, (256, 176), (256, 256))
    np.testing.assert_allclose(scaled[0], [128.0, 128.0])
    np.testing.assert_array_equal(scaled[1], [-1, -1])
    tensor = data.scale_keypoints(tf.constant(points), (256, 176), (128, 128))
    np.testing.assert_allclose(tensor.numpy()[0], [64.0, 64.0])
    # Heatmaps of scaled keypoints peak where the scaled coordinates are.
    maps = data.keypoints_to_heatmaps(scaled, 256, 256).numpy()
    assert np.unravel_index(maps[..., 0].argmax(), (256, 256)) == (128, 128)


def _write_csv(path, rows):
    path.write_text("name:keypoints_y:keypoints_x\n" + "\n".join(rows) + "\n")
    return path


def test_annotation_csv_roundtrip_and_malformed_rows(tmp_path):
    ys = list(range(18))
    xs = [-1] + list(range(100, 117))
    good = f"a.jpg:{json.dumps(ys)}:{json.dumps(xs)}"
    path = _write_csv(
        tmp_path / "ann.csv",
        [
            good,
            f"b.jpg:{json.dumps(ys[:17])}:{json.dumps(xs)}",  # 17 values
            f"c.jpg:[1, 2, x]:{json.dumps(xs)}",  # not a number
            "d.jpg:[1]",  # missing column
        ],
    )
    points, problems = data.read_annotation_csv(path, strict=False)
    assert list(points) == ["a.jpg"]
    np.testing.assert_array_equal(points["a.jpg"][0], [-1, -1])
    np.testing.assert_array_equal(points["a.jpg"][1], [100, 1])
    assert len(problems) == 3
    assert all("ann.csv, row" in p for p in problems)
    assert "17 values" in problems[0]
    assert "not a list of numbers" in problems[1]
    assert "3 ':'-separated fields" in problems[2]
    with pytest.raises(data.KeypointFormatError, match="ann.csv, row 3"):
        data.read_annotation_csv(path, strict=True)
    out = tmp_path / "out.csv"
    data.write_annotation_csv(out, points)
    again, _ = data.read_annotation_csv(out)
    np.testing.assert_array_equal(again["a.jpg"], points["a.jpg"])


def test_annotation_csv_bad_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name,x,y\n")
    with pytest.raises(data.KeypointFormatError, match="bad.csv"):
        data.read_annotation_csv(path)


def test_openpose_coco18_and_body25(tmp_path):
    rng = np.random.default_rng(1)
    pts18 = rng.uniform(1, 50, (18, 2))
    flat18 = np.concatenate([pts18, np.ones((18, 1))], 1)
    flat18[3, 2] = 0.0  # undetected
    small = np.concatenate([pts18[:1], np.zeros((17, 2))]).tolist()
    path = tmp_path / "op18.json"
    path.write_text(
        json.dumps(
            {
                "people": [
                    {"pose_keypoints_2d": [v for p in small for v in (*p, 0.9)]},
                    {"pose_keypoints_2d": flat18.ravel().tolist()},
                ]
            }
        )
    )
    got = data.read_keypoints(path)
    expected = pts18.copy()
    expected[3] = -1
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # the most complete person

    pts25 = rng.uniform(1, 50, (25, 2))
    flat25 = np.concatenate([pts25, np.ones((25, 1))], 1).ravel().tolist()
    path25 = tmp_path / "op25.json"
    path25.write_text(json.dumps({"people": [{"pose_keypoints_2d": flat25}]}))
    got25 = data.read_openpose_json(path25)
    np.testing.assert_allclose(got25[:8], pts25[:8], rtol=1e-6)
    np.testing.assert_allclose(got25[8], pts25[9], rtol=1e-6)  # RHip skips MidHip
    np.testing.assert_allclose(got25[17], pts25[18], rtol=1e-6)


def test_coco17_neck_from_shoulders(tmp_path):
    pts = np.arange(34, dtype=np.float64).reshape(17, 2) + 1
    triples = np.concatenate([pts, np.full((17, 1), 2)], 1)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"keypoints": triples.ravel().tolist()}))
    got = data.read_keypoints(path)
    np.testing.assert_allclose(got[1], (pts[5] + pts[6]) / 2)
    np.testing.assert_allclose(got[2], pts[6])  # right shoulder
    np.testing.assert_allclose(got[14], pts[2])  # right eye at OpenPose index 14
    triples[5, 2] = 0  # left shoulder not labelled -> no neck
    path.write_text(json.dumps({"annotations": [{"keypoints": triples.ravel().tolist()}]}))
    got = data.read_keypoints(path)
    assert np.all(got[1] == -1) and np.all(got[5] == -1)


def test_simple_list_and_errors_name_the_file(tmp_path):
    pts = np.arange(36, dtype=np.float64).reshape(18, 2) + 1
    path = tmp_path / "list.json"
    path.write_text(json.dumps(pts.tolist()))
    np.testing.assert_allclose(data.read_keypoints(path), pts)
    cases = {
        "short.json": json.dumps(pts[:10].tolist()),
        "words.json": json.dumps([["a", "b"]] * 18),
        "nobody.json": json.dumps({"people": []}),
        "broken.json": "{not json",
        "other.json": json.dumps({"hello": 1}),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(data.KeypointFormatError, match=name):
            data.read_keypoints(tmp_path / name)
    csv_path = _write_csv(
        tmp_path / "one.csv", [f"x.jpg:{json.dumps(list(range(18)))}:{json.dumps([3] * 18)}"]
    )
    assert data.read_keypoints(csv_path)[5].tolist() == [3, 5]
    with pytest.raises(FileNotFoundError):
        data.read_keypoints(tmp_path / "missing.json")


def test_flow_to_color_and_skeleton():
    flow = np.zeros((4, 4, 2))
    flow[0, 0] = (3, 0)
    flow[0, 1] = (-3, 0)
    colours = data.flow_to_color(flow)
    assert colours.shape == (4, 4, 3) and colours.dtype == np.uint8
    assert np.all(colours[1, 1] == 255)  # zero flow is white
    assert not np.array_equal(colours[0, 0], colours[0, 1])
    points = np.full((18, 2), -1.0)
    points[1], points[2] = (16, 10), (8, 12)  # neck, right shoulder
    picture = data.draw_skeleton(points, size=(32, 32))
    assert picture.shape == (32, 32, 3) and picture.sum() > 0
    assert picture[11, 12, 0] > picture[11, 12, 2]  # right-side limb is warm
    assert visualize.limb_colour(1)[2] > visualize.limb_colour(1)[0]  # left side is cool
