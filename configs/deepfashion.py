"""DeepFashion In-shop at 256x256, as the GFLA reference trains it."""

from gfla_tf.configs import base


def get_config(variant=None):
    """Returns the DeepFashion configuration.

    Args:
      variant: None for the full configuration, "small" for a CPU-sized model, "test" for
        a tiny model used by the unit tests.
    """
    variant = base.check_variant(variant)
    config = base.get_base_config()
    config.name = "deepfashion"
    config.data.kind = "deepfashion"
    if variant in ("small", "test"):
        base.shrink(config, variant)
        config.model.image_height = config.model.image_width = 64 if variant == "small" else 32
    return config
