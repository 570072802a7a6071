"""Small models and requests for the export, serving and generate tests."""

from __future__ import annotations

from typing import Any

import numpy as np


def randomize_weights(model: Any, seed: int = 0, gain: float = 1.5) -> None:
    """Overwrites every weight with He-scaled normal noise.

    A freshly initialised GFLA generator (orthogonal init, gain 0.02) outputs an almost
    constant image and zero flow, which would make format comparisons vacuous; random
    weights give varied images and flows of a few pixels.

    Args:
      model: a built Keras model.
      seed: numpy seed.
      gain: multiplies the standard deviation.
    """
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.get_weights():
        if weight.ndim >= 2:
            fan_in = int(np.prod(weight.shape[:-1]))
            std = gain * np.sqrt(2.0 / max(fan_in, 1))
        else:
            std = gain * 0.1
        values.append(rng.normal(0.0, std, weight.shape).astype(weight.dtype))
    model.set_weights(values)


def tiny_generator(seed: int = 0, variant: str = "test") -> Any:
    """Builds the DeepFashion ``variant`` generator (32x32 for "test") with random weights."""
    from gfla_tf.configs import deepfashion
    from gfla_tf.models import build_generator

    generator = build_generator(deepfashion.get_config(variant).model)
    randomize_weights(generator, seed)
    return generator


def random_request(
    batch: int,
    image_size: tuple[int, int],
    seed: int = 0,
    num_keypoints: int = 18,
    missing: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (uint8 images [B, H, W, 3], source and target keypoints [B, K, 2]).

    ``missing`` keypoints per pose are set to -1.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    poses = []
    for _ in range(2):
        points = np.stack(
            [
                rng.uniform(0, width - 1, (batch, num_keypoints)),
                rng.uniform(0, height - 1, (batch, num_keypoints)),
            ],
            axis=-1,
        ).astype(np.float32)
        for b in range(batch):
            points[b, rng.choice(num_keypoints, missing, replace=False)] = -1.0
        poses.append(points)
    return images, poses[0], poses[1]
