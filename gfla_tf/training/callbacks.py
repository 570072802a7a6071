"""Keras callbacks of a GFLA training run: logging, NaN guard, checkpoints, backup/restore."""

import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf

from gfla_tf.data.visualize import flow_to_color
from gfla_tf.models.common import INPUT_KEYS
from gfla_tf.training import checkpoints

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite."""


class TerminateOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training with an error that names the first loss that became NaN or Inf.

    Args:
      check_every: check every this many steps (reading logs syncs the device).
    """

    def __init__(self, check_every=1):
        super().__init__()
        self.check_every = max(1, int(check_every))

    def on_train_batch_end(self, batch, logs=None):
        if not logs or batch % self.check_every:
            return
        for name, value in logs.items():
            value = float(np.asarray(value))
            if not math.isfinite(value):
                self.model.stop_training = True
                step = int(self.model.optimizer.iterations.numpy())
                raise NonFiniteLossError(
                    f"training stopped: loss {name!r} is {value} at step {step} "
                    "(lower the learning rate, check the data, or use float32)"
                )


def sample_grid(generator, batch, max_rows=4, identity=False):
    """Renders a visual summary of the generator on a batch.

    Columns: source, target pose, generated, target, [identity,] finest flow (colour),
    finest mask (white = the attention's warped source features).

    Args:
      generator: GFLA generator.
      batch: dict with source_image, source_pose, target_pose, target_image (numpy or
        tensors, images in [-1, 1]).
      max_rows: number of examples shown.
      identity: also show the source re-generated in its own pose (it should look like
        the source), after the target.

    Returns:
      uint8 numpy array [rows * H, 6 * W, 3] (7 * W with ``identity``).
    """
    inputs = {k: tf.convert_to_tensor(batch[k][:max_rows]) for k in INPUT_KEYS}
    outputs = generator(inputs, training=False)
    height, width = inputs["source_image"].shape[1:3]

    def to_unit(image):
        return tf.clip_by_value((tf.cast(image, tf.float32) + 1.0) / 2.0, 0.0, 1.0)

    def upsample(x):
        return tf.image.resize(tf.cast(x, tf.float32), [height, width], method="nearest")

    pose = tf.reduce_max(tf.cast(inputs["target_pose"], tf.float32), axis=-1, keepdims=True)
    columns = [
        to_unit(inputs["source_image"]),
        tf.image.grayscale_to_rgb(tf.clip_by_value(pose, 0.0, 1.0)),
        to_unit(outputs["image"]),
        to_unit(tf.convert_to_tensor(batch["target_image"][:max_rows])),
        upsample(flow_to_color(outputs["flows"][-1].numpy()) / 255.0),
        tf.image.grayscale_to_rgb(upsample(outputs["masks"][-1])),
    ]
    if identity:
        own_pose = dict(inputs, target_pose=inputs["source_pose"])
        columns.insert(4, to_unit(generator(own_pose, training=False)["image"]))
    grid = tf.concat(columns, axis=2)  # [B, H, 6W or 7W, 3]
    grid = tf.reshape(grid, [-1, grid.shape[2], 3])
    return (grid.numpy() * 255.0 + 0.5).astype(np.uint8)


class TrainingLogger(keras.callbacks.Callback):
    """Writes losses, learning rates, throughput and image grids to TensorBoard.

    Args:
      logdir: TensorBoard directory.
      global_batch_size: examples per step, for examples/s.
      log_every: scalars every this many steps.
      image_every: image grid every this many steps (0 disables).
      sample_batch: dict batch (numpy) rendered by the image grid.
      enabled: False on non-chief workers (they compute but write nothing).
    """

    def __init__(
        self,
        logdir,
        global_batch_size,
        log_every=100,
        image_every=1000,
        sample_batch=None,
        enabled=True,
    ):
        super().__init__()
        self.logdir = logdir
        self.global_batch_size = int(global_batch_size)
        self.log_every = max(1, int(log_every))
        self.image_every = int(image_every)
        self.sample_batch = sample_batch
        self.enabled = enabled
        self._writer = None
        self._last_time = None
        self._last_step = None

    def on_train_begin(self, logs=None):
        if self.enabled:
            self._writer = tf.summary.create_file_writer(self.logdir)
        self._last_time = time.perf_counter()
        self._last_step = self._step()

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _learning_rates(self):
        rates = {}
        for name in ("g_optimizer", "d_optimizer"):
            optimizer = getattr(self.model, name, None)
            if optimizer is not None:
                rates[f"learning_rate/{name[0]}"] = float(np.asarray(optimizer.learning_rate))
        return rates

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.log_every == 0 and step != self._last_step:
            now = time.perf_counter()
            steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
            self._last_time, self._last_step = now, step
            if self._writer is not None:
                with self._writer.as_default(step=step):
                    for name, value in (logs or {}).items():
                        tf.summary.scalar(f"loss/{name}", float(np.asarray(value)))
                    for name, value in self._learning_rates().items():
                        tf.summary.scalar(name, value)
                    tf.summary.scalar("throughput/steps_per_sec", steps_per_sec)
                    tf.summary.scalar(
                        "throughput/examples_per_sec", steps_per_sec * self.global_batch_size
                    )
        if (
            self._writer is not None
            and self.image_every > 0
            and self.sample_batch is not None
            and step % self.image_every == 0
        ):
            self.write_images(step)

    def write_images(self, step):
        """Writes the sample grid at ``step``."""
        grid = sample_grid(self.model.generator, self.sample_batch)
        with self._writer.as_default(step=step):
            tf.summary.image("samples/source|pose|generated|target|flow|mask", grid[None])

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves ``ckpt-<step>`` every ``every`` steps and at the end, keeping the newest ``keep``.

    Args:
      directory: checkpoints directory.
      every: period in training steps.
      keep: number of checkpoints kept.
      enabled: False on non-chief workers.
    """

    def __init__(self, directory, every=1000, keep=5, enabled=True):
        super().__init__()
        self.directory = directory
        self.every = max(1, int(every))
        self.keep = keep
        self.enabled = enabled
        self._saved_step = None

    def _save(self):
        step = int(self.model.optimizer.iterations.numpy())
        if self.enabled and step != self._saved_step:
            checkpoints.save_checkpoint(self.model, self.directory, step, keep=self.keep)
            self._saved_step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        self._save()


class EpochBackup(keras.callbacks.Callback):
    """Saves the whole training state at the end of every epoch (the restart point).

    Each backup is a new ``backup-<step>.weights.h5`` written atomically, then the
    metadata JSON that names it, then older backups are deleted, so a kill at any moment
    leaves a loadable backup. Restoring is not this callback's job: ``train`` loads the
    newest intact state (backup or checkpoint) before ``fit`` and passes
    ``initial_epoch``. The backup is kept after training, so rerunning a finished command
    does not start over.

    Args:
      backup_dir: directory reserved for the backups.
      enabled: whether this process writes (the chief only).
      keep_paths: files never deleted (states that did not load, kept for inspection).
    """

    def __init__(self, backup_dir, enabled=True, keep_paths=()):
        super().__init__()
        self.backup_dir = backup_dir
        self.enabled = enabled
        self.keep_paths = tuple(keep_paths)

    def on_epoch_end(self, epoch, logs=None):
        if self.enabled:
            checkpoints.save_backup(self.model, self.backup_dir, epoch + 1, self.keep_paths)


class StopAtStep(keras.callbacks.Callback):
    """Ends ``fit`` once the optimizer reached ``total_steps``, mid-epoch if need be.

    A run resumed from a state that is not at an epoch boundary would otherwise train
    past its requested total by up to one epoch.

    Args:
      total_steps: the run's length in optimizer steps.
    """

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = int(total_steps)

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.total_steps:
            self.model.stop_training = True
