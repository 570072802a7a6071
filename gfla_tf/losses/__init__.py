"""GFLA's training losses, as per-example ([B]) functions, and the VGG19 feature extractor.

Every loss returns one value per example so that a distributed trainer can reduce it by
the global batch size (``tf.nn.compute_average_loss``).

Reference: Ren et al., "Deep Image Spatial Transformation for Person Image Generation",
CVPR 2020.
"""

from gfla_tf.losses.adversarial import lsgan_discriminator_loss, lsgan_generator_loss
from gfla_tf.losses.correctness import (
    gaussian_resample,
    max_cosine_similarity,
    sampling_correctness_loss,
    vgg_layer_for_scale,
)
from gfla_tf.losses.perceptual import (
    CONTENT_LAYERS,
    STYLE_LAYERS,
    content_loss,
    gram_matrix,
    l1_loss,
    style_loss,
)
from gfla_tf.losses.regularization import affine_regularization_loss, affine_residual_matrix
from gfla_tf.losses.vgg import ALL_LAYERS, build_vgg_extractor, keras_layer_name

__all__ = [
    "ALL_LAYERS",
    "CONTENT_LAYERS",
    "STYLE_LAYERS",
    "affine_regularization_loss",
    "affine_residual_matrix",
    "build_vgg_extractor",
    "content_loss",
    "gaussian_resample",
    "gram_matrix",
    "keras_layer_name",
    "l1_loss",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "max_cosine_similarity",
    "sampling_correctness_loss",
    "style_loss",
    "vgg_layer_for_scale",
]
