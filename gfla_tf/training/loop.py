"""``train(config, workdir)``: everything a training run needs, in one place.

Parses nothing (the CLI does that): picks the strategy, sets the dtype policy, builds the
data pipeline, models and trainer inside the strategy scope, restores state, attaches
the callbacks (backup/restore, checkpoints, TensorBoard, NaN guard) and calls ``fit``.
"""

import contextlib
import dataclasses
import logging
import math
import os
import signal

import keras
import numpy as np
import tensorflow as tf

from gfla_tf import io
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
      resumed: the state the run resumed from, None for a fresh start.
    """

    trainer: GFLATrainer
    history: object
    workdir: str
    strategy: object
    restored_epoch: int
    is_chief: bool
    resumed: checkpoints.ResumeState | None = None

    @property
    def generator(self):
        return self.trainer.generator

    @property
    def step(self):
        """The optimizer step the run ended at."""
        return int(self.trainer.optimizer.iterations.numpy())


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT (Ctrl-C) after saving its state.

    Attributes:
      step: the optimizer step at which it stopped.
    """

    def __init__(self, step):
        super().__init__(
            f"interrupted at step {step}; the state is saved and the same command resumes "
            "from there"
        )
        self.step = step


@contextlib.contextmanager
def _grappler_options(**options):
    """Sets TF graph-optimizer options for the functions traced inside the block."""
    previous = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {key: previous.get(key, True) for key in options}
        )


@contextlib.contextmanager
def _stop_on_sigint(trainer):
    """Turns the first SIGINT into a clean stop after the current step.

    Yields a list that holds True once SIGINT arrived. A second SIGINT interrupts at once
    (KeyboardInterrupt). Outside the main thread signals cannot be handled: no-op there.
    """
    received = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(True)
        trainer.stop_training = True
        logger.warning("SIGINT: stopping after the current step (press Ctrl-C again to abort)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def make_optimizer(learning_rate, config_train, precision):
    """Adam with the configured betas and schedule, loss-scaled under mixed_float16.

    With ``config_train.lr_decay_fraction`` > 0 the rate stays at ``learning_rate`` and
    then decays linearly to zero over that fraction of ``config_train.steps``.
    """
    decay = float(config_train.lr_decay_fraction)
    if decay:
        learning_rate = LinearDecayTail(learning_rate, int(config_train.steps), decay)
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=config_train.beta_1, beta_2=config_train.beta_2
    )
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _default_dataset_fn(config, workdir):
    # ``config`` is train()'s own copy: setting the data root here changes no caller's.
    from gfla_tf import data

    data_config = config.data
    if data_config.kind == "synthetic" and not data_config.root:
        root = os.path.join(workdir, "data", "synthetic")
        data.synthetic.generate_from_config(data_config, root, config.seed, replace_synthetic=True)
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
        correctness_chunk=int(config.loss.correctness_chunk),
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
        jit_compile=bool(config.train.jit_compile),
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

    Re-running the same call after an interruption resumes from the newest intact state
    in ``workdir`` (end-of-epoch backup or periodic checkpoint, see
    ``checkpoints.restore_latest``) and trains only up to ``config.train.steps``.
    Temporaries left by a killed writer are removed first.

    Args:
      config: full ``ml_collections.ConfigDict`` (see configs/base.py); not modified.
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
      TrainingInterrupted: SIGINT arrived; the state at that step was saved first.
      RuntimeError: saved states exist but none of them loads.
      OSError: writing failed (full disk, read-only workdir); nothing half-written is left.
    """
    config = config.copy_and_resolve_references()
    config.lock()
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
    total_steps = int(config.train.steps)
    if total_steps < 1 or int(config.train.steps_per_epoch) < 1:
        raise ValueError(
            "config.train.steps and config.train.steps_per_epoch must be >= 1, got "
            f"{total_steps} and {config.train.steps_per_epoch}"
        )
    steps_per_epoch = int(min(config.train.steps_per_epoch, total_steps))
    os.makedirs(workdir, exist_ok=True)
    backup_dir = os.path.join(workdir, "backup")
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    if chief:
        # Only the chief writes, so only it may remove what a killed writer left.
        for directory in (workdir, backup_dir, checkpoint_dir):
            io.remove_stale_temporaries(directory)
    if dataset_fn is None:
        dataset_fn = _default_dataset_fn(config, workdir)
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
            if stage == 2 and config.train.stage1_checkpoint:
                checkpoints.load_flow_estimator(
                    trainer.generator, config.train.stage1_checkpoint, config.model
                )
            resumed = checkpoints.restore_latest(trainer, workdir, config.train.resume_from)
            if stage == 2 and not resumed and not config.train.stage1_checkpoint:
                logger.warning(
                    "stage 2 without config.train.stage1_checkpoint: the flow estimator "
                    "starts from scratch"
                )
        step = resumed.step if resumed else 0
        initial_epoch = step // steps_per_epoch
        if resumed:
            logger.info(
                "resuming at epoch %d (step %d) from the %s %s",
                initial_epoch,
                step,
                resumed.kind,
                resumed.path,
            )
        logger.info(
            "stage %d, global batch %d (%d per replica), loss weights %s",
            stage,
            global_batch,
            per_replica,
            weights,
        )
        callbacks = [
            callbacks_lib.TerminateOnNonFiniteLoss(),
            callbacks_lib.StopAtStep(total_steps),
            callbacks_lib.PeriodicCheckpoint(
                checkpoint_dir,
                every=config.train.checkpoint_every,
                keep=config.train.keep_checkpoints,
                enabled=chief,
            ),
            callbacks_lib.EpochBackup(
                backup_dir,
                enabled=chief,
                keep_paths=resumed.unreadable if resumed else (),
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
        epochs = max(1, math.ceil(total_steps / steps_per_epoch))
        if step >= total_steps:
            logger.info("already trained to step %d of %d: nothing to do", step, total_steps)
            history = keras.callbacks.History()
            history.history = {}
        else:
            # Grappler's remapper fails on the stage-1 step graph ("remapper failed:
            # INVALID_ARGUMENT: Mutation::Apply error: fanout ... exist for missing node",
            # at the gradient of an instance norm) and then leaves that graph as it was:
            # switching it off for stage 1 costs nothing and drops the error line.
            options = {"remapping": False} if stage == 1 else {}
            with _stop_on_sigint(trainer) as interrupted, _grappler_options(**options):
                # shuffle=False: the dataset shuffles itself (Keras warns that it ignores
                # shuffle=True for a tf.data.Dataset).
                history = trainer.fit(
                    dataset,
                    epochs=epochs,
                    initial_epoch=initial_epoch,
                    steps_per_epoch=steps_per_epoch,
                    callbacks=callbacks,
                    verbose=verbose,
                    shuffle=False,
                )
            if interrupted:
                raise TrainingInterrupted(int(trainer.optimizer.iterations.numpy()))
        if chief:
            save_generator(trainer.generator, workdir)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return TrainResult(trainer, history, workdir, strategy, initial_epoch, chief, resumed)


def save_generator(generator, workdir):
    """Writes ``generator.weights.h5`` and (if serialisable) ``generator.keras`` atomically.

    Args:
      generator: the trained generator.
      workdir: output directory.

    Returns:
      Path of ``generator.keras`` when written, else of ``generator.weights.h5``.
    """
    weights = checkpoints.save_weights(
        generator, os.path.join(workdir, checkpoints.GENERATOR_WEIGHTS)
    )
    path = os.path.join(workdir, "generator.keras")
    try:
        with io.atomic_path(path) as tmp:
            generator.save(tmp)
    except OSError:
        raise
    except Exception as err:  # the export path still has the weights file
        logger.warning("could not save generator.keras (%s); weights are in %s", err, weights)
        return weights
    return path
