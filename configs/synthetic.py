"""The built-in synthetic person dataset: the quickstart's configuration.

A small GFLA (DeepFashion layout: attention at 1/8 with k=3 and 1/4 with k=5) on 64x64
procedurally rendered people, sized to train both stages on a 2-core CPU in minutes.
"""

from gfla_tf.configs import base, deepfashion


def get_config(variant=None):
    """Returns the synthetic-data configuration.

    Args:
      variant: None (quickstart size, 64x64) or "small" (same), "test" (32x32, tiny).
    """
    variant = base.check_variant(variant)
    config = deepfashion.get_config("test" if variant == "test" else "small")
    config.name = "synthetic"
    config.data.kind = "synthetic"
    config.data.annotation_height = config.model.image_height
    config.data.annotation_width = config.model.image_width
    config.data.synthetic_size = config.model.image_height
    config.loss.vgg_weights = "random"
    # Training budget of `gfla quickstart` (per stage), sized for about 6 minutes in total
    # on a 2-core CPU.
    config.train.quickstart_stage1_steps = 300
    config.train.quickstart_stage2_steps = 300
    config.train.steps_per_epoch = 100
    config.train.log_every = 20
    if variant == "test":
        config.data.synthetic_pairs = 16
        config.data.synthetic_test_pairs = 4
        config.train.quickstart_stage1_steps = 2
        config.train.quickstart_stage2_steps = 2
        config.train.steps_per_epoch = 2
    return config
