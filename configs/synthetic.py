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
    # on an otherwise idle 2-core CPU. For this short CPU demo the synthetic data's
    # ground-truth flow supervises F (masked end-point error) and the adversarial term is
    # scaled down; the learning rates are raised. DeepFashion/Market keep the paper's.
    config.data.synthetic_pairs = 1000
    config.train.quickstart_stage1_steps = 150
    config.train.quickstart_stage2_steps = 300
    config.train.steps_per_epoch = 50
    config.train.log_every = 10
    config.train.g_learning_rate = 5e-4
    config.train.d_learning_rate = 5e-5
    config.loss.stage1.flow_supervision = 1.0
    config.loss.stage2.flow_supervision = 1.0
    config.loss.stage2.adversarial = 0.1
    if variant == "test":
        config.data.synthetic_pairs = 16
        config.data.synthetic_test_pairs = 4
        config.train.quickstart_stage1_steps = 2
        config.train.quickstart_stage2_steps = 2
        config.train.steps_per_epoch = 2
    return config
