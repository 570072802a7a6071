"""Keras callbacks of a GFLA training run: logging, NaN guard, checkpoints, backup/restore."""

import json
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from gfla_tf.training import checkpoints

logger = logging.getLogger(__name__)


def _metadata(plugin_name):
    # TensorBoard's scalar/image plugins only need the plugin name in the metadata; the
    # core TF proto is used so that logging works without the tensorboard package.
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name)
    ).SerializeToString()


def write_scalar(name, value, step):
    """Writes a TensorBoard scalar with the default writer (no tensorboard import)."""
    tf.summary.write(
        name, tf.constant(float(value), tf.float32), step=step, metadata=_metadata("scalars")
    )


def write_image(name, image, step):
    """Writes one uint8 [H, W, 3] image to TensorBoard (no tensorboard import)."""
    png = tf.io.encode_png(tf.convert_to_tensor(image, tf.uint8))
    height, width = image.shape[:2]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), png])
    tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


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


def flow_to_rgb(flow, max_magnitude=None):
    """Colour-codes a flow: hue = direction, brightness = magnitude.

    Args:
      flow: [B, H, W, 2] tensor.
      max_magnitude: magnitude mapped to full brightness (default: per-image maximum).

    Returns:
      [B, H, W, 3] float32 in [0, 1].
    """
    flow = tf.cast(flow, tf.float32)
    fx, fy = flow[..., 0], flow[..., 1]
    magnitude = tf.sqrt(fx * fx + fy * fy)
    if max_magnitude is None:
        max_magnitude = tf.reduce_max(magnitude, axis=[1, 2], keepdims=True)
    value = tf.clip_by_value(magnitude / (max_magnitude + 1e-6), 0.0, 1.0)
    hue = (tf.atan2(fy, fx) / (2.0 * math.pi)) % 1.0
    hsv = tf.stack([hue, tf.ones_like(hue), value], axis=-1)
    return tf.image.hsv_to_rgb(hsv)


def sample_grid(generator, batch, max_rows=4):
    """Renders a visual summary of the generator on a batch.

    Columns: source, target pose, generated, target, finest flow (colour), finest mask.

    Args:
      generator: GFLA generator.
      batch: dict with source_image, source_pose, target_pose, target_image (numpy or
        tensors, images in [-1, 1]).
      max_rows: number of examples shown.

    Returns:
      uint8 numpy array [rows * H, 6 * W, 3].
    """
    inputs = {
        k: tf.convert_to_tensor(batch[k][:max_rows])
        for k in ("source_image", "source_pose", "target_pose")
    }
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
        upsample(flow_to_rgb(outputs["flows"][-1])),
        tf.image.grayscale_to_rgb(upsample(outputs["masks"][-1])),
    ]
    grid = tf.concat(columns, axis=2)  # [B, H, 6W, 3]
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
                        write_scalar(f"loss/{name}", np.asarray(value), step)
                    for name, value in self._learning_rates().items():
                        write_scalar(name, value, step)
                    write_scalar("throughput/steps_per_sec", steps_per_sec, step)
                    write_scalar(
                        "throughput/examples_per_sec",
                        steps_per_sec * self.global_batch_size,
                        step,
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
            write_image("samples/source|pose|generated|target|flow|mask", grid, step)

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


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` whose backups survive a kill at any moment.

    Keras writes ``latest.weights.h5`` in place and then the metadata, so a SIGKILL while
    writing can leave a corrupt or mismatched backup. Here each backup is a new weights
    file written under a temporary name, and the metadata JSON that points to it is
    replaced atomically afterwards; older files are deleted last. Only the chief writes
    (``enabled=False`` elsewhere); every worker restores from the same directory. The
    backup is kept after training (``delete_checkpoint=False``), so re-running a finished
    command does not start over.

    Args:
      backup_dir: directory reserved for the backup.
      save_freq: "epoch" or a number of steps.
      enabled: whether this process writes backups.
    """

    def __init__(self, backup_dir, save_freq="epoch", enabled=True):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self.enabled = enabled
        self.restored_epoch = 0

    def _load_model(self):
        if not os.path.exists(self._training_metadata_path):
            return
        with open(self._training_metadata_path) as f:
            metadata = json.load(f)
        weights = os.path.join(self.backup_dir, metadata["weights"])
        self.model.build_optimizers()
        self.model.load_weights(weights)
        self.model._initial_epoch = int(metadata["epoch"])
        self.restored_epoch = int(metadata["epoch"])
        logger.info(
            "BackupAndRestore: resuming at epoch %d (step %d) from %s",
            metadata["epoch"],
            int(self.model.optimizer.iterations.numpy()),
            weights,
        )

    def _save_model(self):
        if not self.enabled:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        step = int(self.model.optimizer.iterations.numpy())
        name = f"backup-{step:010d}.weights.h5"
        tmp_name = f".tmp-{name}"
        self.model.save_weights(os.path.join(self.backup_dir, tmp_name), overwrite=True)
        os.replace(os.path.join(self.backup_dir, tmp_name), os.path.join(self.backup_dir, name))
        metadata = {
            "epoch": self._current_epoch,
            "batch": self._last_batch_seen,
            "step": step,
            "weights": name,
        }
        checkpoints.atomic_write_text(self._training_metadata_path, json.dumps(metadata))
        for entry in os.listdir(self.backup_dir):
            if entry.startswith("backup-") and entry != name:
                os.remove(os.path.join(self.backup_dir, entry))
