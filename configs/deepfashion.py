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
        config.model.image_height = config.model.image_width = 64 if variant == "small" else 32
        config.model.flow_ngf = 16 if variant == "small" else 4
        config.model.flow_max_channels = 64 if variant == "small" else 16
        config.model.renderer_ngf = 16 if variant == "small" else 4
        config.model.renderer_max_channels = 128 if variant == "small" else 32
        config.model.attention_hidden = 32 if variant == "small" else 8
        config.model.dis_ndf = 16 if variant == "small" else 4
        config.model.dis_max_channels = 64 if variant == "small" else 16
        config.train.batch_size = 4 if variant == "small" else 2
    return config
