"""The pretrained networks of the GFLA recipe against their PyTorch originals.

Parity tests build torchvision's ``vgg19`` / ``inception_v3`` and the ``lpips`` package's
``LPIPS(net="alex")`` with random weights, move the weights through this project's
loaders (``.pth`` files read without PyTorch), and compare outputs within 1e-4 relative.
torch, torchvision and lpips are optional test extras: without them those tests skip.
"""

import os
import pickle
import sys
import types
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from gfla_tf import losses
from gfla_tf.evaluation import FID, LPIPS, image_metrics
from gfla_tf.evaluation.fid import FeatureAccumulator
from gfla_tf.pretrained import WeightsUnavailableError, read_state_dict
from gfla_tf.pretrained import inception_v3 as inception_lib
from gfla_tf.pretrained import vgg19 as vgg_lib

# torchvision ``features`` index of each ReLU the losses can read (ALL_LAYERS order).
VGG_RELU_INDICES = (1, 3, 6, 8, 11, 13, 15, 17, 20, 22, 24, 26, 29, 31, 33, 35)
TORCH_REASON = "optional test extra (CPU build: pip install torch==2.13.0)"


def _torch():
    return pytest.importorskip("torch", reason=TORCH_REASON)


def _torchvision():
    """Imports torchvision, or skips.

    PyPI's torchvision wheels are CUDA builds: beside a CPU-only torch their compiled
    operators cannot load and ``import torchvision`` fails registering fake kernels for
    them ("operator torchvision::nms does not exist"). The models used here are plain
    Python modules that never call those operators, so the registrations are skipped.
    """
    _torch()
    try:
        import torchvision
    except ImportError:
        pytest.skip(f"torchvision: {TORCH_REASON}")
    except RuntimeError:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType(
            "torchvision._meta_registrations"
        )
        import torchvision
    return torchvision


def _assert_close(actual, expected, rtol=1e-4):
    """Equal within ``rtol`` relative to the largest magnitude of ``expected``."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-12)
    assert float(np.abs(actual - expected).max()) <= rtol * scale, (
        np.abs(actual - expected).max(),
        scale,
    )


# -- reading .pth files ------------------------------------------------------------------


def test_read_state_dict_both_torch_formats(tmp_path):
    torch = _torch()
    state = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "strided": torch.arange(12, dtype=torch.float64).reshape(3, 4).t(),
        "count": torch.tensor(7),
        "half": torch.randn(5).half(),
        "mask": torch.tensor([True, False]),
    }
    expected = {key: value.numpy() for key, value in state.items()}
    for name, zip_format in (("zip.pth", True), ("legacy.pth", False)):
        path = str(tmp_path / name)
        torch.save(state, path, _use_new_zipfile_serialization=zip_format)
        read = read_state_dict(path)
        assert set(read) == set(expected)
        for key, value in expected.items():
            assert read[key].dtype == value.dtype and read[key].shape == value.shape, key
            np.testing.assert_array_equal(read[key], value)
        assert set(read_state_dict(path, keep=lambda k: k != "half")) == set(expected) - {"half"}
    torch.save({"state_dict": state}, str(tmp_path / "wrapped.pth"))
    assert set(read_state_dict(str(tmp_path / "wrapped.pth"))) == set(expected)


def test_read_state_dict_refuses_code_and_bad_files(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"x": Exploit()}))
    with pytest.raises(WeightsUnavailableError, match="not a plain state dict"):
        read_state_dict(str(path))
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(WeightsUnavailableError, match="not a PyTorch file"):
        read_state_dict(str(tmp_path / "text.pth"))
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        read_state_dict(str(tmp_path / "missing.pth"))


# -- VGG19 of the losses -----------------------------------------------------------------


def _random_vgg_npz(path, seed=0):
    rng = np.random.RandomState(seed)
    tensors, channels = {}, 3
    for layer, index in vgg_lib.CONV_INDICES.items():
        filters = {1: 64, 2: 128, 3: 256}.get(int(layer[5]), 512)
        scale = np.sqrt(2.0 / (9 * channels))
        tensors[f"features.{index}.weight"] = rng.normal(0, scale, (filters, channels, 3, 3))
        tensors[f"features.{index}.bias"] = rng.normal(0, 0.1, filters)
        channels = filters
    np.savez(path, **{k: v.astype(np.float32) for k, v in tensors.items()})
    return tensors


def test_vgg19_torchvision_npz_layout_and_missing_file(tmp_path, monkeypatch):
    path = str(tmp_path / "vgg19.npz")
    tensors = _random_vgg_npz(path)
    vgg = losses.build_vgg_extractor(path, layers=("relu1_1", "relu3_1"))
    kernel, bias = vgg.get_layer("block3_conv1").get_weights()
    np.testing.assert_allclose(kernel, np.transpose(tensors["features.10.weight"], (2, 3, 1, 0)))
    np.testing.assert_allclose(bias, tensors["features.10.bias"], rtol=1e-6)
    # The paper's convention: [-1, 1] RGB straight in, no preprocessing layer.
    assert losses.vgg.input_convention(path) == "torchvision"
    assert vgg.input.shape[-1] == 3 and len(vgg.layers) < 12
    for missing in (str(tmp_path / "vgg19.pth"), "torchvision"):
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        monkeypatch.delenv(vgg_lib.ENV_VAR, raising=False)
        with pytest.raises(WeightsUnavailableError, match=r"vgg19\(weights='IMAGENET1K_V1'\)"):
            losses.build_vgg_extractor(missing)
    monkeypatch.setenv(vgg_lib.ENV_VAR, path)
    assert vgg_lib.default_weights_path() == path
    assert losses.build_vgg_extractor("torchvision", layers=("relu1_1",)) is not None


def test_vgg19_keras_weights_fed_bgr_caffe_input(tmp_path):
    keras.utils.set_random_seed(0)
    reference = keras.applications.VGG19(include_top=False, weights=None)
    path = str(tmp_path / "keras_vgg19.weights.h5")
    reference.save_weights(path)
    assert losses.vgg.input_convention(path) == "caffe"
    assert losses.vgg.input_convention("imagenet") == "caffe"
    vgg = losses.build_vgg_extractor(path, layers=("relu2_1",))
    images = np.random.RandomState(1).uniform(-1, 1, (2, 24, 20, 3)).astype(np.float32)
    caffe = keras.applications.vgg19.preprocess_input((images + 1.0) * 127.5)
    expected = keras.Model(reference.input, reference.get_layer("block2_conv1").output)(caffe)
    _assert_close(vgg(images)["relu2_1"], expected, rtol=1e-5)


def test_vgg19_matches_torchvision_at_every_layer(tmp_path):
    torch = _torch()
    torchvision = _torchvision()
    torch.manual_seed(0)
    model = torchvision.models.vgg19(weights=None).eval()
    path = str(tmp_path / "vgg19.pth")
    torch.save(model.state_dict(), path)
    vgg = losses.build_vgg_extractor(path)
    images = np.random.RandomState(0).uniform(-1, 1, (2, 48, 40, 3)).astype(np.float32)
    outputs = vgg(images)
    expected = {}
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        for index, layer in enumerate(model.features[: max(VGG_RELU_INDICES) + 1]):
            x = layer(x)
            if index in VGG_RELU_INDICES:
                name = losses.ALL_LAYERS[VGG_RELU_INDICES.index(index)]
                expected[name] = x.permute(0, 2, 3, 1).numpy()
    for name in losses.ALL_LAYERS:
        assert float(np.abs(expected[name]).max()) > 0, name
        _assert_close(outputs[name], expected[name])


# -- Inception-v3 of FID -----------------------------------------------------------------


def test_fid_gfla_protocol_drops_the_partial_batch_of_64():
    accumulator = FeatureAccumulator(64)
    rng = np.random.RandomState(0)
    rows = rng.normal(size=(130, 3))
    for start in range(0, 130, 7):
        accumulator.update(rows[start : start + 7])
    assert accumulator.statistics.count == 128 and accumulator.dropped == 2
    np.testing.assert_allclose(accumulator.statistics.mean, rows[:128].mean(axis=0))
    fid = FID(feature_extractor=keras.Sequential([keras.layers.Flatten()]), input_size=2)
    assert fid.usable_count(8570) == 8512 and fid.accumulator().chunk == 64


def test_fid_gfla_protocol_weights_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(inception_lib.ENV_VAR, raising=False)
    for weights in ("default", str(tmp_path / "missing.pth"), "imagenet"):
        with pytest.raises(WeightsUnavailableError, match="inception_v3.*--inception-weights"):
            FID(weights=weights, protocol="gfla")
    with pytest.raises(ValueError, match="fid protocol|FID protocol"):
        FID(weights=None, protocol="ttur")


def test_inception_v3_npz_loader_checks_names_and_shapes(tmp_path):
    model = inception_lib.build_inception_v3(None, input_size=75)
    assert model.output_shape == (None, inception_lib.FEATURE_DIM)
    # 94 BasicConv2d modules, each a conv and a 4-tensor batch norm.
    assert len(model.torch_modules) == 94
    tensors = {}
    for prefix, (conv, _) in model.torch_modules.items():
        kernel = conv.get_weights()[0]
        tensors[f"{prefix}.conv.weight"] = np.transpose(kernel, (3, 2, 0, 1)) + 1.0
        size = kernel.shape[-1]
        for name in ("weight", "bias", "running_mean", "running_var"):
            tensors[f"{prefix}.bn.{name}"] = np.full(size, 0.5, np.float32)
    path = str(tmp_path / "inception.npz")
    np.savez(path, **tensors)
    inception_lib.load_torch_weights(model, path)
    conv, norm = model.torch_modules["Mixed_7c.branch_pool"]
    np.testing.assert_allclose(
        conv.get_weights()[0],
        np.transpose(tensors["Mixed_7c.branch_pool.conv.weight"], (2, 3, 1, 0)),
    )
    del tensors["Mixed_6b.branch7x7_2.bn.running_var"]
    with pytest.raises(WeightsUnavailableError, match="1 tensors missing"):
        inception_lib.load_torch_weights(model, tensors)


def test_inception_v3_and_gfla_fid_input_match_torchvision(tmp_path):
    torch = _torch()
    torchvision = _torchvision()
    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    path = str(tmp_path / "inception_v3.pth")
    torch.save(model.state_dict(), path)
    fid = FID(weights=path, protocol="gfla")
    images = np.random.RandomState(0).randint(0, 256, (2, 64, 44, 3)).astype(np.uint8)
    features = fid.features(images)
    # The authors' script/inception.py: [0, 1] images, bilinear resize to 299 without
    # align_corners, transform_input's per-channel map, then the blocks one by one.
    with torch.no_grad():
        x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        x = torch.nn.functional.interpolate(
            x, size=(299, 299), mode="bilinear", align_corners=False
        )
        x = torch.cat(
            [
                x[:, c : c + 1] * (std / 0.5) + (mean - 0.5) / 0.5
                for c, (mean, std) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
            ],
            dim=1,
        )
        for name in (
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
            "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
            "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
            "avgpool",
        ):  # fmt: skip
            x = getattr(model, name)(x)
        expected = torch.flatten(x, 1).numpy()
    assert features.shape == (2, 2048) and float(np.abs(expected).max()) > 0
    _assert_close(features, expected)


# -- LPIPS -------------------------------------------------------------------------------


def test_lpips_matches_the_lpips_package(tmp_path):
    torch = _torch()
    _torchvision()
    lpips = pytest.importorskip("lpips", reason="optional test extra (pip install lpips)")
    torch.manual_seed(0)
    reference = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if ".lin" in f".{name}" and name.startswith("lin"):
                param.uniform_(0.0, 0.1)  # calibration weights are non-negative
    path = str(tmp_path / "lpips_alex.pth")
    torch.save(reference.state_dict(), path)
    metric = LPIPS(weights=path)
    rng = np.random.RandomState(0)
    first = rng.uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    second = np.clip(first + rng.normal(0, 0.3, first.shape), -1, 1).astype(np.float32)
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(first).permute(0, 3, 1, 2),
            torch.from_numpy(second).permute(0, 3, 1, 2),
        ).reshape(-1)
    _assert_close(metric((first, second)), expected.numpy())


# -- SSIM variants -----------------------------------------------------------------------


def test_paper_ssim_variants_are_scikit_image_with_the_authors_options():
    skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image")
    rng = np.random.RandomState(0)
    target = rng.randint(0, 256, (3, 64, 56, 3)).astype(np.uint8)
    noise = rng.randint(-40, 40, target.shape)
    generated = np.clip(target.astype(int) + noise, 0, 255).astype(np.uint8)
    generated[2] = np.clip(generated[2], 30, 200)  # a narrower dynamic range
    uniform = image_metrics.paper_ssim(generated, target, "ssim_uniform51")
    gaussian = image_metrics.paper_ssim(generated, target, "ssim_gaussian_dynamic")
    for i in range(3):
        expected_uniform = skimage_metrics.structural_similarity(
            target[i].astype(np.float64) / 255.0,
            generated[i].astype(np.float64) / 255.0,
            win_size=51,
            data_range=1.0,
            channel_axis=-1,
        )
        expected_gaussian = skimage_metrics.structural_similarity(
            target[i],
            generated[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=-1,
            data_range=int(generated[i].max()) - int(generated[i].min()),
        )
        np.testing.assert_allclose(uniform[i], expected_uniform, rtol=1e-4)
        np.testing.assert_allclose(gaussian[i], expected_gaussian, rtol=1e-4)
    # The project's own SSIM with the dynamic range is the same Gaussian variant.
    _assert_close(image_metrics.ssim(generated, target, max_val="dynamic"), gaussian)
    assert np.isnan(
        image_metrics.paper_ssim(target[:, :40], target[:, :40], "ssim_uniform51")
    ).all()
    np.testing.assert_allclose(image_metrics.paper_ssim(target, target, "ssim_uniform51"), 1.0)
    with pytest.raises(ValueError, match="variant"):
        image_metrics.paper_ssim(target, target, "ssim")
    assert tf.is_tensor(image_metrics.ssim(target, target))
