"""``train(config, workdir)``: everything a training run needs, in one place.

Parses nothing (the CLI does that): picks the strategy, sets the dtype policy, builds the
data pipeline, models and trainer inside the strategy scope, restores state, attaches
the callbacks (backup/restore, checkpoints, TensorBoard, NaN guard) and calls ``fit``.
"""

import dataclasses
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from gfla_tf.training import callbacks as callbacks_lib
from gfla_tf.training import checkpoints
from gfla_tf.training import strategy as strategy_lib
from gfla_tf.training.schedules import LinearDecayTail
from gfla_tf.training.trainer import GFLATrainer, required_vgg_layers

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      trainer: the ``GFLATrainer`` after training.
      history: ``keras.callbacks.History`` of the ``fit`` call.
      workdir: the run directory.
      strategy: the strategy used.
      restored_epoch: epoch the run resumed at (0 for a fresh run).
      is_chief: whether this process wrote the outputs.
    """

    trainer: GFLATrainer
    history: object
    workdir: str
    strategy: object
    restored_epoch: int
    is_chief: bool

    @property
    def generator(self):
        return self.trainer.generator


def make_optimizer(learning_rate, config_train, precision):
    """Adam with the configured betas and schedule, loss-scaled under mixed_float16.

    With ``config_train.lr_decay_fraction`` > 0 the rate stays at ``learning_rate`` and
    then decays linearly to zero over that fraction of ``config_train.steps``.
    """
    decay = float(config_train.get("lr_decay_fraction", 0.0))
    if decay:
        learning_rate = LinearDecayTail(learning_rate, int(config_train.steps), decay)
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=config_train.beta_1, beta_2=config_train.beta_2
    )
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _default_dataset_fn(config, workdir, chief):
    from gfla_tf import data

    data_config = config.data
    if data_config.kind == "synthetic" and not data_config.root:
        root = os.path.join(workdir, "data", "synthetic")
        data.synthetic.generate_from_config(data_config, root, config.seed, replace_synthetic=True)
        with data_config.unlocked():
            data_config.root = root
    image_size = (config.model.image_height, config.model.image_width)

    def dataset_fn(input_context, global_batch_size):
        return data.build_dataset(
            data_config,
            "train",
            global_batch_size,
            image_size,
            shuffle=True,
            repeat=True,
            drop_remainder=True,
            input_context=input_context,
        )

    return dataset_fn


def loss_weights(config):
    """The loss weights of ``config.train.stage`` from ``config.loss``."""
    stage = int(config.train.stage)
    if stage not in (1, 2):
        raise ValueError(f"config.train.stage must be 1 or 2, got {stage!r}")
    return dict(config.loss[f"stage{stage}"])


def build_trainer(config, strategy=None, impl=None):
    """Builds models, VGG and a compiled, built ``GFLATrainer`` (in the current scope).

    Args:
      config: the full configuration.
      strategy: the strategy whose scope we are in (used to pick the op impl for TPU).
      impl: op implementation override ("auto", "custom", "reference").

    Returns:
      The trainer.
    """
    from gfla_tf import losses, models

    stage = int(config.train.stage)
    precision = config.train.mixed_precision
    if strategy is not None and strategy_lib.is_tpu(strategy):
        impl = "reference"  # no custom op on TPU; the reference op is pure XLA-able TF
    generator = models.build_generator(config.model, impl=impl)
    discriminator = models.build_discriminator(config.model) if stage == 2 else None
    vgg_layers = required_vgg_layers(stage, generator.attention_scales, loss_weights(config))
    vgg = (
        losses.build_vgg_extractor(config.loss.vgg_weights, layers=vgg_layers)
        if vgg_layers
        else None
    )
    trainer = GFLATrainer(
        generator,
        discriminator,
        vgg,
        stage=stage,
        global_batch_size=int(config.train.batch_size),
        correctness_chunk=int(config.loss.get("correctness_chunk", 1024)),
    )
    g_optimizer = make_optimizer(config.train.g_learning_rate, config.train, precision)
    d_optimizer = (
        make_optimizer(config.train.d_learning_rate, config.train, precision)
        if stage == 2
        else None
    )
    trainer.compile(
        g_optimizer=g_optimizer,
        d_optimizer=d_optimizer,
        loss_weights=loss_weights(config),
        jit_compile=bool(config.train.get("jit_compile", False)),
    )
    trainer.build_all(
        (config.model.image_height, config.model.image_width), config.model.num_keypoints
    )
    return trainer


def _numpy_batch(dataset):
    batch = next(iter(dataset.take(1)))
    return {k: np.asarray(v) for k, v in batch.items()}


def train(config, workdir, strategy="auto", verbose="auto", dataset_fn=None, extra_callbacks=()):
    """Trains stage ``config.train.stage`` of GFLA into ``workdir``.

    Re-running the same call after an interruption resumes from the last completed epoch
    (``BackupAndRestore`` under ``workdir/backup``).

    Args:
      config: full ``ml_collections.ConfigDict`` (see configs/base.py).
      workdir: run directory: config, checkpoints, backup, TensorBoard logs, generator.
      strategy: a ``tf.distribute.Strategy`` or a name for ``build_strategy``.
      verbose: Keras ``fit`` verbosity ("auto" shows a progress bar).
      dataset_fn: optional ``fn(input_context, global_batch_size) -> tf.data.Dataset``
        replacing ``gfla_tf.data.build_dataset`` (tests, custom data). With an input
        context it must shard and batch at ``input_context.get_per_replica_batch_size``,
        as ``build_dataset`` does.
      extra_callbacks: more Keras callbacks.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ValueError: inconsistent configuration (precision, batch vs replicas, stage).
      gfla_tf.training.callbacks.NonFiniteLossError: a loss became NaN or Inf.
    """
    precision = config.train.mixed_precision
    if precision not in PRECISIONS:
        raise ValueError(
            f"config.train.mixed_precision must be one of {PRECISIONS}, got {precision!r}"
        )
    if isinstance(strategy, str):
        strategy = strategy_lib.build_strategy(strategy)
    chief = strategy_lib.is_chief(strategy)
    global_batch = int(config.train.batch_size)
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(
            f"config.train.batch_size={global_batch} must be divisible by the "
            f"{replicas} replicas of the strategy"
        )
    stage = int(config.train.stage)
    weights = loss_weights(config)
    os.makedirs(workdir, exist_ok=True)
    if dataset_fn is None:
        dataset_fn = _default_dataset_fn(config, workdir, chief)
    if chief:
        checkpoints.save_config(config, workdir)

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        per_replica = global_batch // replicas
        if replicas > 1 or isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            dataset = strategy.distribute_datasets_from_function(
                lambda ctx: dataset_fn(ctx, global_batch)
            )
        else:
            dataset = dataset_fn(None, global_batch)
        sample_batch = _numpy_batch(dataset_fn(None, min(global_batch, 4)))

        with strategy.scope():
            trainer = build_trainer(config, strategy)
            if config.train.resume_from:
                checkpoints.restore_trainer(trainer, config.train.resume_from)
            elif stage == 2 and config.train.stage1_checkpoint:
                checkpoints.load_flow_estimator(
                    trainer.generator, config.train.stage1_checkpoint, config.model
                )
            elif stage == 2:
                logger.warning(
                    "stage 2 without config.train.stage1_checkpoint: the flow estimator "
                    "starts from scratch"
                )
        logger.info(
            "stage %d, global batch %d (%d per replica), loss weights %s",
            stage,
            global_batch,
            per_replica,
            weights,
        )
        backup = callbacks_lib.AtomicBackupAndRestore(
            os.path.join(workdir, "backup"), save_freq="epoch", enabled=chief
        )
        callbacks = [
            callbacks_lib.TerminateOnNonFiniteLoss(),
            backup,
            callbacks_lib.PeriodicCheckpoint(
                os.path.join(workdir, "checkpoints"),
                every=config.train.checkpoint_every,
                keep=config.train.keep_checkpoints,
                enabled=chief,
            ),
            callbacks_lib.TrainingLogger(
                os.path.join(workdir, "tensorboard"),
                global_batch,
                log_every=config.train.log_every,
                image_every=config.train.image_every,
                sample_batch=sample_batch,
                enabled=chief,
            ),
            *extra_callbacks,
        ]
        steps_per_epoch = int(min(config.train.steps_per_epoch, config.train.steps))
        epochs = max(1, math.ceil(int(config.train.steps) / steps_per_epoch))
        history = trainer.fit(
            dataset,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose,
        )
        if chief:
            save_generator(trainer.generator, workdir)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return TrainResult(trainer, history, workdir, strategy, backup.restored_epoch, chief)


def save_generator(generator, workdir):
    """Writes ``generator.weights.h5`` and (if serialisable) ``generator.keras`` atomically.

    Args:
      generator: the trained generator.
      workdir: output directory.

    Returns:
      Path of ``generator.keras`` when written, else of ``generator.weights.h5``.
    """
    weights = os.path.join(workdir, checkpoints.GENERATOR_WEIGHTS)
    tmp = os.path.join(workdir, ".tmp-" + checkpoints.GENERATOR_WEIGHTS)
    generator.save_weights(tmp)
    os.replace(tmp, weights)
    path = os.path.join(workdir, "generator.keras")
    tmp = os.path.join(workdir, ".tmp-generator.keras")
    try:
        generator.save(tmp)
        os.replace(tmp, path)
    except Exception as err:  # the export path still has the weights file
        logger.warning("could not save generator.keras (%s); weights are in %s", err, weights)
        if os.path.exists(tmp):
            os.remove(tmp)
        return weights
    return path
