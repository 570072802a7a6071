"""The built-in synthetic person dataset: the quickstart's configuration.

A small GFLA on 64x64 procedurally rendered people, sized to train both stages on a
2-core CPU in about 10 minutes (attention at 1/4 and 1/2 with k=3; the "test" variant keeps
the DeepFashion layout, 1/8 with k=3 and 1/4 with k=5).
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
    if variant != "test":
        # At 64x64 the 1/4 scale is 16x16: too coarse to carry the source's texture, so
        # the quickstart attends at 1/4 and 1/2 instead of 1/8 and 1/4.
        config.model.attention_layers = (2, 1)
        config.model.kernel_sizes = (3, 3)
        # Normalising the raw image removes its colour, which the renderer then has to
        # re-learn: more than this CPU budget allows.
        config.model.normalize_source_image = False
        # With the flow right (below), the 16-channel renderer of the "small" model was
        # what lost the source's colours: 32 channels raise identity SSIM from 0.88 to
        # 0.90 at 1.15x the step time (benchmarks/RESULTS.md, 2026-12-07, pose prior).
        config.model.renderer_ngf = 32
    # F learns a correction to the skeletons' bone-wise flow: on this data the prior alone
    # is 1.1 px off on the person, where F trained from scratch within the budget stayed
    # 3 px off on limbs 3-5 px wide, and the renderer could not copy what it missed.
    config.model.flow_pose_prior = True
    # Training budget of `gfla quickstart` (per stage), sized for about 10 minutes in total
    # on an otherwise idle 2-core CPU. The quickstart runs offline, without pretrained
    # VGG19 weights, so the VGG-based losses (correctness, content, style) are off and the
    # synthetic data's ground truth supervises instead: the flow (masked end-point error
    # and the pixel-space sampling correctness of gfla_tf.losses.pixel), the occlusion
    # masks (-> 1 where the source shows the target) and an L1 term on the person's
    # pixels, so that the person, not the easy static background, drives the renderer.
    # 300 identity pairs (target = source) teach it to reproduce its input. Learning
    # rates are raised and decay to 0 over the second half of each stage. No adversarial
    # term: with the pose prior the person's colours come from the source, not from the
    # GAN's texture, and without it no discriminator runs (a stage-2 step 0.8x as long).
    # Stage 1 is short: F starts at the prior, and 1000 steps improved on 300 by nothing.
    # See benchmarks/RESULTS.md (quickstart quality).
    # DeepFashion/Market keep the paper's losses and constant rates.
    config.data.synthetic_pairs = 1000
    config.data.synthetic_identity_pairs = 300
    config.train.quickstart_stage1_steps = 300
    config.train.quickstart_stage2_steps = 3200
    config.train.quickstart_stage1_learning_rate = 5e-4
    # An epoch ends with a backup of the whole training state (0.6 s here): every 200
    # steps instead of 50 saves about half a minute of the budget.
    config.train.steps_per_epoch = 200
    config.train.log_every = 10
    config.train.g_learning_rate = 2e-3
    config.train.d_learning_rate = 5e-5
    config.train.lr_decay_fraction = 0.5
    # Adam with momentum (the paper's beta_1 is 0), the flow estimator's rate raised to
    # 5e-4 and the stage-2 rate to 2e-3: every appearance measure improves at the same
    # steps (benchmarks/RESULTS.md, 2026-12-07).
    config.train.beta_1 = 0.9
    config.loss.stage1.correctness = 0.0
    config.loss.stage1.flow_supervision = 5.0
    config.loss.stage1.warp_correctness = 5.0
    config.loss.stage1.mask_visibility = 2.0
    config.loss.stage2.correctness = 0.0
    config.loss.stage2.flow_supervision = 5.0
    config.loss.stage2.warp_correctness = 5.0
    config.loss.stage2.mask_visibility = 2.0
    config.loss.stage2.person_l1 = 5.0
    config.loss.stage2.adversarial = 0.0
    config.loss.stage2.content = 0.0
    config.loss.stage2.style = 0.0
    if variant == "test":
        config.data.synthetic_pairs = 16
        config.data.synthetic_test_pairs = 4
        config.data.synthetic_identity_pairs = 2
        config.train.quickstart_stage1_steps = 2
        config.train.quickstart_stage2_steps = 2
        config.train.steps_per_epoch = 2
    return config
