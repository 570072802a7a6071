"""``gfla generate``: every model format, the resize path, flow and mask pictures."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from gfla_tf import export
from gfla_tf.cli import generate as generate_cli
from gfla_tf.export import testing

PHOTO_SIZE = (48, 40)  # (height, width): not the model's 32x32, so the resize path runs


def _write_pose(path, keypoints):
    path.write_text(json.dumps(np.asarray(keypoints).tolist()))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    generator = testing.tiny_generator(seed=6)
    keras_path = str(root / "generator.keras")
    generator.save(keras_path)
    base = str(root / "saved")
    saved = export.export_saved_model(generator, base)
    tflite = export.export_tflite(saved, str(root / "gfla.tflite"))
    photo, source, target = testing.random_request(1, PHOTO_SIZE, seed=7)
    photo_path = str(root / "photo.png")
    Image.fromarray(photo[0]).save(photo_path)
    return {
        "root": root,
        "formats": {"keras": keras_path, "saved_model": base, "tflite": tflite},
        "photo": photo_path,
        "source_pose": _write_pose(root / "source.json", source[0]),
        "target_pose": _write_pose(root / "target.json", target[0]),
    }


def _generate(models, model_path, out, *extra):
    """Runs ``gfla generate`` on the fixture's photo and poses; returns the exit status."""
    return generate_cli.main(
        [
            "gfla generate",
            "--model",
            model_path,
            "--source",
            models["photo"],
            "--source-pose",
            models["source_pose"],
            "--target-pose",
            models["target_pose"],
            "--out",
            str(out),
            *extra,
        ]
    )


def test_each_format(models, tmp_path):
    results = {}
    for name, path in models["formats"].items():
        out = tmp_path / f"{name}.png"
        flow_out = tmp_path / f"{name}_flow.png"
        mask_out = tmp_path / f"{name}_mask.png"
        status = _generate(
            models, path, out, "--flow-out", str(flow_out), "--mask-out", str(mask_out)
        )
        assert status == 0, name
        image = np.asarray(Image.open(out))
        assert image.shape == PHOTO_SIZE + (3,), name
        height, width = PHOTO_SIZE
        # One panel per attention scale (1/8 and 1/4), each at the photo's size.
        assert np.asarray(Image.open(flow_out)).shape == (height, 2 * width, 3)
        assert np.asarray(Image.open(mask_out)).shape == (height, 2 * width, 3)
        results[name] = image.astype(int)
    assert results["keras"].std() > 5, "random weights should give a varied image"
    for name in ("saved_model", "tflite"):
        # Same graph; uint8 rounding then the bicubic resize can move a level or two.
        assert np.max(np.abs(results[name] - results["keras"])) <= 3, name


class _RecordingPredictor:
    """Stands in for a predictor: records its inputs, answers a fixed image."""

    image_size = (32, 32)

    def predict(self, source_image, source_keypoints, target_keypoints):
        self.inputs = (source_image, source_keypoints, target_keypoints)
        batch = source_image.shape[0]
        image = np.zeros((batch, 32, 32, 3), np.uint8)
        image[:, :, 16:] = 255
        return {
            "image": image,
            "flows": [
                np.ones((batch, 4, 4, 2), np.float32),
                np.zeros((batch, 8, 8, 2), np.float32),
            ],
            "masks": [np.full((batch, 4, 4, 1), 0.5, np.float32)] * 2,
        }


def test_resize_path_scales_keypoints():
    predictor = _RecordingPredictor()
    photo = np.full((64, 128, 3), 200, np.uint8)
    source = np.full((18, 2), 10.0, np.float32)
    source[3] = -1.0
    target = np.tile(np.array([[64.0, 32.0]], np.float32), (18, 1))
    result = generate_cli.generate(predictor, photo, source, target)
    image, sent_source, sent_target = predictor.inputs
    assert image.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(sent_source[0, 0], [10.0 * 32 / 128, 10.0 * 32 / 64])
    np.testing.assert_array_equal(sent_source[0, 3], [-1.0, -1.0])
    np.testing.assert_allclose(sent_target[0, 0], [16.0, 16.0])
    assert result["image"].shape == (64, 128, 3)
    assert result["image"][:, :60].max() < 30 and result["image"][:, 68:].min() > 225
    # Poses given in another frame (e.g. the 256x176 DeepFashion annotations).
    generate_cli.generate(predictor, photo, source, target, pose_frame=(256, 176))
    np.testing.assert_allclose(predictor.inputs[1][0, 0], [10.0 * 32 / 176, 10.0 * 32 / 256])


def test_pictures():
    flows = [np.ones((4, 4, 2), np.float32), np.zeros((8, 8, 2), np.float32)]
    panels = generate_cli.flow_panels(flows, (16, 12))
    assert panels.shape == (16, 24, 3) and panels.dtype == np.uint8
    assert (panels[:, 12:] == 255).all(), "zero flow is white"
    masks = [np.zeros((4, 4, 1), np.float32), np.ones((8, 8, 1), np.float32)]
    panels = generate_cli.mask_panels(masks, (16, 12))
    assert panels[:, :12].max() == 0 and panels[:, 12:].min() == 255


def test_missing_model(models, tmp_path, capsys):
    status = _generate(models, str(tmp_path / "nope.keras"), tmp_path / "out.png")
    assert status == 1
    assert "model not found" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_output_permissions_follow_umask(models, tmp_path):
    out = tmp_path / "out.png"
    assert _generate(models, models["formats"]["saved_model"], out) == 0
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~_umask()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")] == []


def _csv_rows(tmp_path):
    """An annotation CSV with two different poses, rows "a.jpg" and "b.jpg"."""
    from gfla_tf.data.keypoints import write_annotation_csv

    rng = np.random.default_rng(3)
    rows = {name: rng.integers(0, 40, (18, 2)).astype(np.float32) for name in ("a.jpg", "b.jpg")}
    path = tmp_path / "annotations.csv"
    write_annotation_csv(str(path), rows)
    return str(path), rows


def test_source_and_target_rows_of_one_csv(models, tmp_path, monkeypatch):
    csv, rows = _csv_rows(tmp_path)
    predictor = _RecordingPredictor()
    monkeypatch.setattr(export, "load_predictor", lambda path: predictor)
    variants = {
        "file#name": ["--source-pose", f"{csv}#a.jpg", "--target-pose", f"{csv}#b.jpg"],
        "per-pose names": [
            "--source-pose",
            csv,
            "--target-pose",
            csv,
            "--source-pose-name",
            "a.jpg",
            "--target-pose-name",
            "b.jpg",
        ],
        "#name beats --pose-name": [
            "--source-pose",
            csv,
            "--target-pose",
            f"{csv}#b.jpg",
            "--pose-name",
            "a.jpg",
        ],
    }
    for name, pose_args in variants.items():
        status = generate_cli.main(
            [
                "gfla generate",
                "--model",
                "unused",
                "--source",
                models["photo"],
                *pose_args,
                "--pose-frame",
                "32x32",
                "--out",
                str(tmp_path / "out.png"),
            ]
        )
        assert status == 0, name
        _, source, target = predictor.inputs
        np.testing.assert_allclose(source[0], rows["a.jpg"], err_msg=name)
        np.testing.assert_allclose(target[0], rows["b.jpg"], err_msg=name)


def test_pose_reference():
    assert generate_cli.pose_reference("poses.csv#x.jpg") == ("poses.csv", "x.jpg")
    assert generate_cli.pose_reference("poses.csv", "y.jpg", "z.jpg") == ("poses.csv", "y.jpg")
    assert generate_cli.pose_reference("poses.csv", None, "z.jpg") == ("poses.csv", "z.jpg")
    with pytest.raises(ValueError, match="contradicts"):
        generate_cli.pose_reference("poses.csv#x.jpg", "y.jpg")


def _one_line_error(capsys, status):
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_one_line_errors(models, tmp_path, capsys):
    model = models["formats"]["keras"]
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(models["photo"], "rb").read()[:200])
    status = generate_cli.main(
        [
            "gfla generate",
            "--model",
            model,
            "--source",
            str(truncated),
            "--source-pose",
            models["source_pose"],
            "--target-pose",
            models["target_pose"],
            "--out",
            str(tmp_path / "a.png"),
        ]
    )
    assert "cannot read the photo" in _one_line_error(capsys, status)
    status = generate_cli.main(
        [
            "gfla generate",
            "--model",
            model,
            "--source",
            models["photo"],
            "--source-pose",
            str(tmp_path),
            "--target-pose",
            models["target_pose"],
            "--out",
            str(tmp_path / "a.png"),
        ]
    )
    assert "is a directory" in _one_line_error(capsys, status)
    out_dir = tmp_path / "out_dir"
    out_dir.mkdir()
    status = _generate(models, model, out_dir)
    assert "--out" in _one_line_error(capsys, status)
    nan_pose = tmp_path / "nan.json"
    nan_pose.write_text("[" + ", ".join(["[NaN, 3]"] + ["[4, 5]"] * 17) + "]")
    status = generate_cli.main(
        [
            "gfla generate",
            "--model",
            model,
            "--source",
            models["photo"],
            "--source-pose",
            str(nan_pose),
            "--target-pose",
            models["target_pose"],
            "--out",
            str(tmp_path / "a.png"),
        ]
    )
    assert "NaN or infinite values (first at point 0)" in _one_line_error(capsys, status)
    assert not (tmp_path / "a.png").exists()


def test_corrupt_models(models, tmp_path, capsys):
    saved = tmp_path / "saved"
    shutil.copytree(models["formats"]["saved_model"], saved)
    (saved / "1" / "saved_model.pb").write_bytes(os.urandom(300))
    keras_bytes = open(models["formats"]["keras"], "rb").read()
    random_keras = tmp_path / "random.keras"
    random_keras.write_bytes(os.urandom(3000))
    truncated_keras = tmp_path / "truncated.keras"
    truncated_keras.write_bytes(keras_bytes[: len(keras_bytes) // 2])
    for path, needle in (
        (saved, "cannot load the SavedModel"),
        (random_keras, "not a valid .keras file"),
        (truncated_keras, "not a valid .keras file"),
    ):
        status = _generate(models, str(path), tmp_path / "out.png")
        err = _one_line_error(capsys, status)
        assert needle in err and "File not found" not in err, err
    assert not (tmp_path / "out.png").exists()


def test_non_finite_keypoint_named():
    class Checked(export.Predictor):
        def _run(self, *inputs):
            raise AssertionError("a non-finite keypoint must be refused before the model")

    photo = np.zeros((64, 64, 3), np.uint8)
    source = np.full((18, 2), 5.0, np.float32)
    target = source.copy()
    target[9] = [np.inf, 1.0]
    with pytest.raises(ValueError, match=r"target_keypoints\[0, 9\] \(keypoint 9 \(Rkne\)\)"):
        generate_cli.generate(Checked((32, 32)), photo, source, target)
