"""Mathematics of the evaluation metrics: SSIM, PSNR, LPIPS, FID, flow EPE and warping."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import correlate1d

from gfla_tf.evaluation import (
    FID,
    LPIPS,
    FeatureStatistics,
    WeightsUnavailableError,
    build_alexnet_features,
    downsample_ground_truth,
    endpoint_error,
    frechet_distance,
    psnr,
    ssim,
    ssim_map,
    warp,
    warped_ssim,
)
from gfla_tf.evaluation import lpips as lpips_lib


def _random_uint8(seed, shape=(2, 24, 24, 3)):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def _noisy(images, seed, amplitude=40):
    noise = np.random.RandomState(seed).randint(-amplitude, amplitude, images.shape)
    return np.clip(images.astype(int) + noise, 0, 255).astype(np.uint8)


def _numpy_ssim(a, b, data_range=255.0):
    """skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=-1) written out for one [H, W, C] image."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    offsets = np.arange(11) - 5
    window = np.exp(-(offsets**2) / (2 * 1.5**2))
    window /= window.sum()

    def blur(x):
        x = correlate1d(correlate1d(x, window, axis=0, mode="reflect"), window, axis=1)
        return x[5:-5, 5:-5]

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for c in range(a.shape[-1]):
        x, y = a[..., c], b[..., c]
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(s.mean())
    return float(np.mean(values))


def test_ssim_identical_images_is_one():
    images = _random_uint8(0)
    np.testing.assert_allclose(ssim(images, images).numpy(), 1.0, atol=1e-6)


def test_ssim_matches_numpy_reference_for_uint8_and_signed_float():
    a, b = _random_uint8(1), None
    b = _noisy(a, 2)
    expected = [_numpy_ssim(a[i], b[i]) for i in range(len(a))]
    np.testing.assert_allclose(ssim(a, b).numpy(), expected, atol=1e-5)
    signed = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
    np.testing.assert_allclose(ssim(signed(a), signed(b)).numpy(), expected, atol=1e-5)


def test_ssim_dynamic_range_uses_generated_spread():
    a = (_random_uint8(3).astype(np.float64) * 0.5 + 40).astype(np.uint8)  # range < 255
    b = _noisy(a, 4, 10)
    expected = [_numpy_ssim(a[i], b[i], float(a[i].max()) - a[i].min()) for i in range(len(a))]
    np.testing.assert_allclose(ssim(a, b, max_val="dynamic").numpy(), expected, atol=1e-5)


def test_ssim_mask_and_errors():
    a = _random_uint8(5)
    b = _noisy(a, 6)
    full = np.ones(a.shape[:3] + (1,), np.float32)
    np.testing.assert_allclose(ssim(a, b, mask=full).numpy(), ssim(a, b).numpy(), atol=1e-6)
    empty = np.zeros_like(full)
    assert np.isnan(ssim(a, b, mask=empty).numpy()).all()
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, b[:, :20])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[:, :8, :8], b[:, :8, :8])
    with pytest.raises(ValueError, match="max_val"):
        ssim(a, b, max_val="wide")


def test_psnr_known_value():
    a = np.zeros((1, 8, 8, 3), np.float32)
    b = np.full((1, 8, 8, 3), 0.2, np.float32)  # MSE 0.04 on a range of 2
    np.testing.assert_allclose(psnr(a, b).numpy(), [10 * np.log10(4 / 0.04)], rtol=1e-5)
    u8 = np.full((1, 8, 8, 3), 10, np.uint8)
    np.testing.assert_allclose(psnr(u8, u8 + 5).numpy(), [10 * np.log10(255**2 / 25.0)], rtol=1e-5)
    assert np.isinf(psnr(a, a).numpy()).all()


def test_alexnet_features_torchvision_layout():
    model = build_alexnet_features()
    assert model.count_params() == 2_469_696  # torchvision alexnet().features
    shapes = [tuple(f.shape[1:]) for f in model(np.zeros((1, 64, 64, 3), np.float32))]
    assert shapes == [(15, 15, 64), (7, 7, 192), (3, 3, 384), (3, 3, 256), (3, 3, 256)]


@pytest.fixture(scope="module")
def lpips_model():
    keras.utils.set_random_seed(0)
    return LPIPS()


def _lpips_numpy(model, a, b):
    shift = np.array(lpips_lib.SHIFT, np.float32)
    scale = np.array(lpips_lib.SCALE, np.float32)
    fa = model.features((a - shift) / scale)
    fb = model.features((b - shift) / scale)
    total = 0.0
    for x, y, lin in zip(fa, fb, model.linear):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        x = x / (np.sqrt((x**2).sum(-1, keepdims=True)) + 1e-10)
        y = y / (np.sqrt((y**2).sum(-1, keepdims=True)) + 1e-10)
        weight = np.asarray(lin.get_weights()[0]).reshape(-1)
        total = total + (((x - y) ** 2) @ weight).mean(axis=(1, 2))
    return total


def test_lpips_identity_symmetry_positivity_and_formula(lpips_model):
    rng = np.random.RandomState(0)
    a = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(lpips_model((a, a)).numpy(), 0.0, atol=1e-7)
    ab = lpips_model((a, b)).numpy()
    np.testing.assert_allclose(ab, lpips_model((b, a)).numpy(), rtol=1e-6)
    assert (ab > 0).all()
    np.testing.assert_allclose(ab, _lpips_numpy(lpips_model, a, b), rtol=1e-4)
    assert all((w.numpy() >= 0).all() for lin in lpips_model.linear for w in lin.weights)


def test_lpips_loads_pytorch_named_npz(lpips_model, tmp_path):
    tensors = {}
    for n, index in enumerate((0, 3, 6, 8, 10)):
        kernel, bias = lpips_model.features.get_layer(f"conv{n + 1}").get_weights()
        tensors[f"features.{index}.weight"] = np.transpose(kernel, (3, 2, 0, 1))  # OIHW
        tensors[f"features.{index}.bias"] = bias
    for n, lin in enumerate(lpips_model.linear):
        tensors[f"lin{n}.model.1.weight"] = lin.get_weights()[0].reshape(1, -1, 1, 1)
    path = lpips_lib.save_npz(tensors, str(tmp_path / "lpips.npz"))
    loaded = LPIPS(weights=path)
    a = np.random.RandomState(1).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    b = np.zeros_like(a)
    np.testing.assert_allclose(loaded((a, b)).numpy(), lpips_model((a, b)).numpy(), rtol=1e-5)
    del tensors["lin4.model.1.weight"]
    incomplete = lpips_lib.save_npz(tensors, str(tmp_path / "incomplete.npz"))
    with pytest.raises(WeightsUnavailableError, match="lin4"):
        LPIPS(weights=incomplete)


def test_lpips_default_weights_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv("GFLA_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(lpips_lib, "convert_from_installed_packages", _no_conversion)
    with pytest.raises(WeightsUnavailableError, match="--lpips-weights"):
        LPIPS(weights="default")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        LPIPS(weights=str(tmp_path / "missing.npz"))


def _no_conversion(output):
    raise RuntimeError("no network in tests")


def test_frechet_distance_of_diagonal_gaussians_closed_form():
    rng = np.random.RandomState(0)
    mu1, mu2 = rng.randn(6), rng.randn(6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Scaled copies of one covariance: tr(S + c^2 S - 2 c S) = (1 - c)^2 tr(S).
    a = rng.randn(6, 6)
    cov = a @ a.T + np.eye(6)
    np.testing.assert_allclose(frechet_distance(mu1, cov, mu1, 4 * cov), np.trace(cov), rtol=1e-6)
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu1, cov, mu2, np.eye(5))


def test_frechet_distance_singular_covariances_stay_finite():
    rng = np.random.RandomState(1)
    low_rank = rng.randn(3, 8)  # 3 samples in 8 dimensions
    stats = FeatureStatistics()
    stats.update(low_rank)
    other = FeatureStatistics()
    other.update(rng.randn(3, 8))
    value = frechet_distance(stats.mean, stats.covariance, other.mean, other.covariance)
    assert np.isfinite(value) and value > 0


def test_feature_statistics_match_numpy_and_round_trip(tmp_path):
    rng = np.random.RandomState(2)
    features = rng.randn(50, 5)
    stats = FeatureStatistics()
    for chunk in np.array_split(features, 4):
        stats.update(chunk)
    np.testing.assert_allclose(stats.mean, features.mean(0), atol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(features, rowvar=False), atol=1e-12)
    loaded = FeatureStatistics.load(stats.save(str(tmp_path / "stats.npz")))
    assert loaded.count == 50
    np.testing.assert_allclose(loaded.covariance, stats.covariance)
    np.savez(tmp_path / "bad.npz", mean=features.mean(0))
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        FeatureStatistics.load(str(tmp_path / "bad.npz"))


def tiny_extractor(size=16, dim=8):
    """A small random stand-in for InceptionV3: [B, size, size, 3] -> [B, dim]."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(12, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(dim)(x))


def test_fid_of_identical_sets_is_zero_and_differs_otherwise():
    fid = FID(feature_extractor=tiny_extractor(), input_size=16, protocol="keras")
    rng = np.random.RandomState(3)
    real = [rng.uniform(-1, 1, (10, 20, 20, 3)).astype(np.float32) for _ in range(3)]
    fake = [np.clip(x * 0.3 + 0.5, -1, 1) for x in real]
    real_stats, same_stats = fid.statistics(real), fid.statistics(real)
    assert real_stats.count == 30
    assert abs(fid.distance(real_stats, same_stats)) < 1e-6
    assert fid.distance(fid.statistics(fake), real_stats) > 1e-3


def test_fid_missing_inception_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="--inception-weights"):
        FID(weights=str(tmp_path / "missing.h5"))


def test_endpoint_error_known_values():
    flow = np.zeros((1, 4, 4, 2), np.float32)
    gt = np.ones_like(flow) * np.array([3.0, 4.0], np.float32)
    assert float(endpoint_error(flow, gt)) == pytest.approx(5.0)
    mask = np.zeros((1, 4, 4, 1), np.float32)
    mask[0, 0, 0] = 1
    gt[0, 0, 0] = [0.0, 1.0]
    assert float(endpoint_error(flow, gt, mask)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="gt_flow"):
        endpoint_error(flow, gt[..., :1])


def test_warp_zero_and_integer_flow():
    image = np.random.RandomState(4).uniform(-1, 1, (1, 6, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(warp(image, np.zeros((1, 6, 7, 2))).numpy(), image, atol=1e-6)
    shift = np.zeros((1, 6, 7, 2), np.float32)
    shift[..., 0] = 1.0  # target (x, y) reads source (x + 1, y); the last column clamps
    expected = np.concatenate([image[:, :, 1:], image[:, :, -1:]], axis=2)
    np.testing.assert_allclose(warp(image, shift).numpy(), expected, atol=1e-6)


def test_warped_ssim_with_true_flow_is_one_on_visible_pixels():
    image = _random_uint8(7, (1, 32, 32, 3))
    shifted = np.concatenate([image[:, :, 2:], image[:, :, -1:], image[:, :, -1:]], axis=2)
    flow = np.zeros((1, 8, 8, 2), np.float32)
    flow[..., 0] = 0.5  # 2 pixels at full resolution, given at 1/4 scale
    visible = np.ones((1, 32, 32, 1), np.float32)
    np.testing.assert_allclose(warped_ssim(image, shifted, flow, visible).numpy(), 1.0, atol=1e-5)


def test_downsample_ground_truth_scales_flow():
    flow = tf.fill([1, 16, 16, 2], 8.0)
    visible = tf.ones([1, 16, 16, 1])
    small, vis = downsample_ground_truth(flow, visible, 4)
    assert small.shape == (1, 4, 4, 2) and vis.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(small.numpy(), 2.0)
    np.testing.assert_allclose(vis.numpy(), 1.0)


def test_person_mask_discs_limbs_and_missing_keypoints():
    pytest.importorskip("skimage", reason="scikit-image draws the mask")
    from gfla_tf.evaluation.person_mask import keypoint_mask

    points = np.full((18, 2), -1.0)
    points[0] = (20, 30)  # nose alone: skimage's radius-4 disc (distance < 4), closed 5x5
    single = keypoint_mask(points, (64, 48))
    assert single[30, 20] and single[30, 23] and single[27, 20] and not single[30, 24]
    assert single.sum() == 45
    points[1] = (20, 50)  # neck: the (2, 1) limb joins them with a band of half-width 4
    joined = keypoint_mask(points, (64, 48))
    assert joined[40, 16:25].all() and not joined[40, 25] and not joined[40, 15]
    assert not joined[:, :10].any()
    assert not keypoint_mask(np.full((18, 2), -1.0), (64, 48)).any()


def test_ssim_equals_tf_image_ssim():
    """The module's SSIM is tf.image.ssim on [0, 255] (range scaling for "dynamic")."""
    a = _random_uint8(7, (2, 32, 28, 3))
    b = _noisy(a, 8)
    expected = tf.image.ssim(
        tf.cast(a, tf.float32), tf.cast(b, tf.float32), max_val=255.0, return_index_map=True
    )
    np.testing.assert_allclose(ssim_map(a, b).numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(ssim(a, b).numpy(), tf.image.ssim(a, b, 255).numpy(), atol=1e-5)
