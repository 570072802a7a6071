"""SSIM and PSNR as the pose-transfer literature computes them.

Conventions (stated here once, and recorded in every ``metrics.json`` protocol):

* Images are ``[B, H, W, 3]``. Float images are taken to be in [-1, 1] (the model's range);
  ``uint8`` images are mapped to [-1, 1] with ``x / 127.5 - 1`` first. ``max_val`` is
  therefore always the data range on the [-1, 1] scale: ``2.0`` is the full range and is
  the same as ``data_range=255`` on [0, 255] images (SSIM and PSNR are invariant to a
  common rescaling of the images and the data range).
* SSIM is computed on [0, 255] values: float images are shifted and scaled with
  ``(x + 1) * 127.5`` first and the data range with it (``max_val * 127.5``). The shift
  matters: SSIM's luminance term is not shift-invariant, so SSIM of [-1, 1] images (e.g.
  ``tf.image.ssim`` called on them) differs from the published convention.
* SSIM: Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample)
  covariances, SSIM map over the "valid" window positions only (no padding), mean over
  positions then over channels. This equals ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)``,
  which is what the PG2/PATN/GFLA evaluation scripts call, and ``tf.image.ssim`` (which
  computes it here; see ``ssim_map`` for the frame and range handling around it).
* ``max_val="dynamic"`` reproduces those scripts' data range exactly: per image,
  ``generated.max() - generated.min()`` (the first argument), instead of the fixed range.
* PSNR: ``10 log10(max_val**2 / MSE)`` per image, MSE over all pixels and channels
  (``tf.image.psnr``).
"""

import numpy as np
import tensorflow as tf

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def to_signed_unit(images):
    """Converts images to float32 in [-1, 1].

    Args:
      images: array or tensor; ``uint8`` values in [0, 255] or floats already in [-1, 1].

    Returns:
      A float32 tensor of the same shape.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 127.5 - 1.0
    return tf.cast(images, tf.float32)


def _check_pair(a, b, name_a, name_b):
    if a.shape.rank != 4:
        raise ValueError(f"{name_a} must be [B, H, W, C], got shape {a.shape}")
    if not a.shape.is_compatible_with(b.shape):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}"
        )


def _data_range(generated, max_val):
    if isinstance(max_val, str):
        if max_val != "dynamic":
            raise ValueError(f"max_val must be a positive number or 'dynamic', got {max_val!r}")
        spread = tf.reduce_max(generated, axis=[1, 2, 3]) - tf.reduce_min(generated, axis=[1, 2, 3])
        # A constant image has no range; keep the constants finite rather than divide by 0.
        return tf.maximum(spread, 1e-6)
    if not max_val > 0:
        raise ValueError(f"max_val must be a positive number or 'dynamic', got {max_val!r}")
    return tf.fill(tf.shape(generated)[:1], tf.constant(float(max_val), tf.float32))


def ssim_map(generated, target, max_val=2.0):
    """Per-position SSIM (mean over channels) over the valid 11x11 window positions.

    ``tf.image.ssim`` computes it (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03,
    population covariances, valid window positions): what this module adds is the
    published frame. The images are put on [0, 255] (the luminance term is not
    shift-invariant) and then divided by their data range, with ``max_val=1``: SSIM is
    invariant to one common scale of the images and the range, and ``tf.image.ssim``
    takes one range for the whole batch while "dynamic" needs one per image.

    Args:
      generated: [B, H, W, C] images (uint8, or float in [-1, 1]); H, W >= 11.
      target: images of the same shape.
      max_val: data range on the [-1, 1] scale (2.0 = full range), or "dynamic".

    Returns:
      [B, H - 10, W - 10] float32; entry (i, j) belongs to the window centred on pixel
      (i + 5, j + 5).

    Raises:
      ValueError: shapes differ, are not rank 4, are smaller than the window, or
        ``max_val`` is invalid.
    """
    generated = to_signed_unit(generated)
    target = to_signed_unit(target)
    _check_pair(generated, target, "generated", "target")
    height, width = generated.shape[1], generated.shape[2]
    if (height is not None and height < SSIM_WINDOW) or (width is not None and width < SSIM_WINDOW):
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {height}x{width}"
        )
    data_range = _data_range(generated, max_val)[:, None, None, None] * 127.5
    return tf.image.ssim(
        (generated + 1.0) * 127.5 / data_range,
        (target + 1.0) * 127.5 / data_range,
        max_val=1.0,
        filter_size=SSIM_WINDOW,
        filter_sigma=SSIM_SIGMA,
        k1=SSIM_K1,
        k2=SSIM_K2,
        return_index_map=True,
    )


def ssim(generated, target, max_val=2.0, mask=None):
    """Structural similarity per image (see the module docstring for the convention).

    Args:
      generated: [B, H, W, C] images (uint8, or float in [-1, 1]); H, W >= 11.
      target: images of the same shape.
      max_val: data range on the [-1, 1] scale (2.0 = full range, the same as 255 on
        uint8), or "dynamic" for the per-image range of ``generated`` as the pose-transfer
        evaluation scripts use.
      mask: optional [B, H, W, 1] weights (e.g. visibility in {0, 1}); the SSIM map is
        averaged over the windows whose centre pixel is in the mask.

    Returns:
      [B] float32 SSIM values (1 for identical images). With a mask, an image whose mask
      is empty gets NaN.

    Raises:
      ValueError: bad shapes or ``max_val``.

    Example:
      >>> ssim(images, images).numpy()  # -> [1., 1., ...]
    """
    per_position = ssim_map(generated, target, max_val)
    if mask is None:
        return tf.reduce_mean(per_position, axis=[1, 2])
    mask = tf.cast(tf.convert_to_tensor(mask), tf.float32)
    if mask.shape.rank != 4 or mask.shape[-1] != 1:
        raise ValueError(f"mask must be [B, H, W, 1], got shape {mask.shape}")
    half = SSIM_WINDOW // 2
    mask = mask[:, half:-half, half:-half, 0]
    total = tf.reduce_sum(mask, axis=[1, 2])
    weighted = tf.reduce_sum(per_position * mask, axis=[1, 2])
    return tf.where(total > 0, weighted / tf.maximum(total, 1e-12), np.nan)


def psnr(generated, target, max_val=2.0):
    """Peak signal-to-noise ratio per image, in dB.

    Args:
      generated: [B, H, W, C] images (uint8, or float in [-1, 1]).
      target: images of the same shape.
      max_val: data range on the [-1, 1] scale (2.0 = full range, 255 on uint8).

    Returns:
      [B] float32; +inf for identical images.

    Raises:
      ValueError: bad shapes or ``max_val``.
    """
    generated = to_signed_unit(generated)
    target = to_signed_unit(target)
    _check_pair(generated, target, "generated", "target")
    if isinstance(max_val, str) or not max_val > 0:
        raise ValueError(f"max_val must be a positive number, got {max_val!r}")
    return tf.image.psnr(generated, target, max_val=float(max_val))


# The two SSIM variants of the GFLA authors' evaluation script, by scikit-image.
PAPER_SSIM_VARIANTS = {
    "ssim_uniform51": (
        "skimage.metrics.structural_similarity on RGB [0, 1] images: 51-px uniform window, "
        "data_range 1, sample covariance, K1 0.01, K2 0.03, mean over channels (GFLA "
        "script/metrics.py)"
    ),
    "ssim_gaussian_dynamic": (
        "skimage.metrics.structural_similarity on RGB [0, 255] images: Gaussian window "
        "sigma 1.5 (11 px), use_sample_covariance=False, data_range = the generated image's "
        "max - min (PG2/PATN/GFLA script/metrics.py)"
    ),
}


def paper_ssim(generated, target, variant):
    """Per-image SSIM of one of the authors' two variants, computed by scikit-image.

    Args:
      generated: [B, H, W, 3] uint8 images (as the authors read them from files).
      target: [B, H, W, 3] uint8 images.
      variant: "ssim_uniform51" or "ssim_gaussian_dynamic" (see PAPER_SSIM_VARIANTS).

    Returns:
      [B] float64 numpy array; NaN for "ssim_uniform51" on images smaller than 51 px.

    Raises:
      ValueError: unknown variant, shapes differ, or images are not uint8.
      ImportError: scikit-image is not installed.
    """
    from skimage.metrics import structural_similarity

    if variant not in PAPER_SSIM_VARIANTS:
        raise ValueError(f"unknown SSIM variant {variant!r}; one of {tuple(PAPER_SSIM_VARIANTS)}")
    generated = np.asarray(generated)
    target = np.asarray(target)
    if generated.dtype != np.uint8 or target.dtype != np.uint8:
        raise ValueError("paper SSIM variants take uint8 images")
    if generated.shape != target.shape or generated.ndim != 4:
        raise ValueError(
            f"images must be two [B, H, W, 3] arrays, got {generated.shape}, {target.shape}"
        )
    if variant == "ssim_uniform51" and min(generated.shape[1:3]) < 51:
        return np.full(len(generated), np.nan)
    values = []
    for fake, real in zip(generated, target):
        if variant == "ssim_uniform51":
            value = structural_similarity(
                fake / 255.0, real / 255.0, win_size=51, data_range=1.0, channel_axis=-1
            )
        else:
            # The authors pass uint8 arrays: the range is an integer, 0 for a flat image.
            value = structural_similarity(
                real.astype(np.float64),
                fake.astype(np.float64),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                channel_axis=-1,
                data_range=float(fake.max()) - float(fake.min()),
            )
        values.append(value)
    return np.asarray(values, np.float64)
