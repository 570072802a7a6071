"""Fields shared by every configuration, with the GFLA reference's values."""

import ml_collections

VARIANTS = (None, "", "full", "small", "test")


def check_variant(variant):
    """Raises ValueError for an unknown variant name."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown config variant {variant!r}; expected one of small, test")
    return variant or "full"


def shrink(config, variant):
    """Sets the network widths and batch of the "small" (CPU) or "test" (tiny) variant.

    Image sizes stay with each dataset's config.
    """
    small = variant == "small"
    config.model.flow_ngf = 16 if small else 4
    config.model.flow_max_channels = 64 if small else 16
    config.model.renderer_ngf = 16 if small else 4
    config.model.renderer_max_channels = 128 if small else 32
    config.model.attention_hidden = 32 if small else 8
    config.model.dis_ndf = 16 if small else 4
    config.model.dis_max_channels = 64 if small else 16
    config.train.batch_size = 4 if small else 2
    return config


def get_base_config():
    """Returns the configuration skeleton; dataset configs fill in the sizes."""
    config = ml_collections.ConfigDict()
    config.name = "base"
    config.seed = 0

    # Network sizes (gfla_tf.models). Attention scales are listed coarse to fine as the
    # encoder layer index: layer 3 = 1/8 resolution, layer 2 = 1/4.
    config.model = ml_collections.ConfigDict()
    config.model.image_height = 256
    config.model.image_width = 256
    config.model.num_keypoints = 18
    config.model.flow_ngf = 32
    config.model.flow_max_channels = 256
    config.model.flow_layers = 5
    config.model.renderer_ngf = 64
    config.model.renderer_max_channels = 512
    config.model.renderer_layers = 3
    config.model.renderer_blocks = 2
    config.model.attention_layers = (3, 2)
    config.model.kernel_sizes = (3, 5)
    config.model.attention_hidden = 128
    config.model.dis_ndf = 32
    config.model.dis_max_channels = 128
    config.model.dis_layers = 4
    config.model.op_impl = "auto"
    # False drops the instance norm on the raw source image (first renderer block); the
    # reference has it, and the authors' checkpoints need it.
    config.model.normalize_source_image = True
    # True: the flow estimator refines the bone-wise flow of the two skeletons
    # (layers.PosePriorFlow) instead of predicting it from scratch; not in the paper.
    config.model.flow_pose_prior = False

    # Input pipeline (gfla_tf.data).
    config.data = ml_collections.ConfigDict()
    config.data.kind = "deepfashion"  # deepfashion | market | synthetic
    config.data.root = ""
    config.data.annotation_height = 256
    config.data.annotation_width = 176
    config.data.sigma = 6.0
    config.data.augment = False  # the Market-1501 random affine (train split only)
    config.data.augment_angle = 5.0  # source rotation range in degrees; target gets 1/5
    config.data.augment_shift = 5.0  # source shift range in pixels; target gets 1/2
    config.data.augment_scale = (0.95, 1.05)
    config.data.shuffle_buffer = 0  # pairs; 0 = the whole pair list (it holds only names)
    config.data.deterministic = False  # fixed shuffle/augmentation seeds and element order
    config.data.seed = 0
    config.data.on_bad_data = "stop"  # stop | skip
    config.data.scan_images = True  # pre-flight check of every image header and ending
    # Synthetic dataset generation (used when kind == "synthetic" and root is empty or new).
    config.data.synthetic_pairs = 2000
    config.data.synthetic_test_pairs = 64
    config.data.synthetic_size = 64
    config.data.synthetic_seed = 0
    # Extra training pairs whose target is the source itself (zero flow).
    config.data.synthetic_identity_pairs = 0
    # How far a pair's target pose is from its source pose, in (0, 1]: the target is
    # t ~ U(0, pose_change) of the way to an independent pose; 1 = independent poses.
    config.data.synthetic_pose_change = 1.0

    # Loss weights, by stage (gfla_tf.losses / gfla_tf.training).
    config.loss = ml_collections.ConfigDict()
    # flow_supervision: masked end-point error of the flows against ground-truth flow; only
    # the synthetic dataset has one (the quickstart's replacement for the VGG-based
    # correctness loss). warp_correctness, person_l1 and mask_visibility
    # (gfla_tf.losses.pixel) need the synthetic ground truth too. The paper's recipe has
    # them all off.
    config.loss.stage1 = ml_collections.ConfigDict(
        dict(
            correctness=20.0,
            regularization=0.01,
            flow_supervision=0.0,
            warp_correctness=0.0,
            mask_visibility=0.0,
        )
    )
    config.loss.stage2 = ml_collections.ConfigDict(
        dict(
            l1=5.0,
            correctness=5.0,
            adversarial=2.0,
            regularization=0.0025,
            content=0.5,
            style=500.0,
            flow_supervision=0.0,
            warp_correctness=0.0,
            person_l1=0.0,
            mask_visibility=0.0,
        )
    )
    # VGG19 of the correctness, content and style losses (gfla_tf.losses.build_vgg_extractor):
    # "torchvision" = torchvision's ImageNet VGG19, the paper's, from $GFLA_VGG19_WEIGHTS or
    # the torch hub cache (vgg19-dcbb9e9d.pth) or ~/.keras/gfla/vgg19.pth; or a path to its
    # .pth/.npz state dict; "imagenet" / a Keras .h5 = Keras' weights (not the paper's); "random".
    config.loss.vgg_weights = "torchvision"
    # Target positions per chunk of the correctness loss's max over source positions: its
    # peak memory is batch x chunk x (H*W) floats instead of batch x (H*W)^2.
    config.loss.correctness_chunk = 1024

    # Training (gfla_tf.training).
    config.train = ml_collections.ConfigDict()
    config.train.stage = 1
    config.train.batch_size = 8  # global batch
    config.train.steps = 200000
    config.train.steps_per_epoch = 1000
    config.train.g_learning_rate = 1e-4
    config.train.d_learning_rate = 1e-5
    config.train.beta_1 = 0.0
    config.train.beta_2 = 0.999
    # Fraction of the run, at its end, over which both learning rates decay linearly to
    # zero (0: constant, as in the paper).
    config.train.lr_decay_fraction = 0.0
    config.train.mixed_precision = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 5
    config.train.log_every = 100
    config.train.image_every = 1000
    # Stage-2 runs: initialise the flow estimator from this stage-1 run (workdir, checkpoints
    # directory, ckpt-* directory or generator weights file).
    config.train.stage1_checkpoint = ""
    # Start from this training state (workdir, checkpoints directory, ckpt-* directory or
    # trainer.weights.h5) when the run's own workdir has none yet.
    config.train.resume_from = ""
    config.train.jit_compile = False
    # `gfla quickstart` only: optimizer steps of each stage, and stage 1's learning rate
    # (0: g_learning_rate).
    config.train.quickstart_stage1_steps = 1000
    config.train.quickstart_stage2_steps = 1600
    config.train.quickstart_stage1_learning_rate = 0.0
    # Every field exists from here on: assigning an unknown one (a typo) is an error that
    # names it. `with config.unlocked():` is for adding fields, which only this file does.
    config.lock()
    return config
