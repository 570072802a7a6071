"""LSGAN losses (least squares GAN) as GFLA uses them.

Reference: Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017;
Ren et al., CVPR 2020 (adversarial term).
"""

import tensorflow as tf


def _per_example_mean(x):
    x = tf.cast(x, tf.float32)
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=-1)


def lsgan_discriminator_loss(real_logits, fake_logits):
    """Per-example ``0.5 * [mean((D(real) - 1)^2) + mean(D(fake)^2)]``.

    Args:
      real_logits: [B, h, w, 1] discriminator output on real images.
      fake_logits: [B, h, w, 1] discriminator output on generated images.

    Returns:
      [B] float32 tensor.
    """
    real = _per_example_mean(tf.square(tf.cast(real_logits, tf.float32) - 1.0))
    fake = _per_example_mean(tf.square(tf.cast(fake_logits, tf.float32)))
    return 0.5 * (real + fake)


def lsgan_generator_loss(fake_logits):
    """Per-example ``mean((D(fake) - 1)^2)``.

    Args:
      fake_logits: [B, h, w, 1] discriminator output on generated images.

    Returns:
      [B] float32 tensor.
    """
    return _per_example_mean(tf.square(tf.cast(fake_logits, tf.float32) - 1.0))
