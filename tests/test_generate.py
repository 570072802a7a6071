"""``gfla generate``: every model format, the resize path, flow and mask pictures."""

import json

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
