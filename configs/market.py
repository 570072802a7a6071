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
        config.model.image_height, config.model.image_width = 64, 32
        config.model.flow_ngf = 16 if variant == "small" else 4
        config.model.flow_max_channels = 64 if variant == "small" else 16
        config.model.renderer_ngf = 16 if variant == "small" else 4
        config.model.renderer_max_channels = 128 if variant == "small" else 32
        config.model.attention_hidden = 32 if variant == "small" else 8
        config.model.dis_ndf = 16 if variant == "small" else 4
        config.model.dis_max_channels = 64 if variant == "small" else 16
        config.train.batch_size = 4 if variant == "small" else 2
    return config
