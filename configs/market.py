"""Market-1501 at 128x64, as the GFLA reference trains it."""

from gfla_tf.configs import base


def get_config(variant=None):
    """Returns the Market-1501 configuration.

    Args:
      variant: None for the full configuration, "small" for a CPU-sized model, "test" for
        a tiny model used by the unit tests.
    """
    variant = base.check_variant(variant)
    config = base.get_base_config()
    config.name = "market"
    config.model.image_height = 128
    config.model.image_width = 64
    config.model.attention_layers = (2,)
    config.model.kernel_sizes = (3,)
    config.model.dis_layers = 3
    config.data.kind = "market"
    config.data.annotation_height = 128
    config.data.annotation_width = 64
    config.data.augment = True
    if variant in ("small", "test"):
        # The flow estimator encodes down to 1/32, so both sides must be multiples of 32.
        base.shrink(config, variant)
        config.model.image_height, config.model.image_width = 64, 32
    return config
