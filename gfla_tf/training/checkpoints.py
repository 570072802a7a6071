"""Checkpoint files of a training run: periodic checkpoints, the resolved config, loading.

Layout under a run's workdir::

    config.json            resolved configuration (ml_collections JSON)
    config.txt             the same, human readable
    checkpoints/ckpt-00001000/trainer.weights.h5    generator, discriminator, optimizers
    checkpoints/ckpt-00001000/generator.weights.h5  generator only (stage 2 init, export)
    checkpoints/ckpt-00001000/step.json
    backup/                keras BackupAndRestore state (restart after a crash)
    generator.keras        final generator (when the generator is serialisable)

Every file and checkpoint directory is written under a temporary name and renamed into
place, so a run killed at any moment leaves either the old or the new version.
"""

import glob
import json
import logging
import os
import re
import shutil
import tempfile

logger = logging.getLogger(__name__)

_CKPT = re.compile(r"^ckpt-(\d+)$")
TRAINER_WEIGHTS = "trainer.weights.h5"
GENERATOR_WEIGHTS = "generator.weights.h5"


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file and an atomic rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_config(config, workdir):
    """Writes the resolved config as ``config.json`` and ``config.txt`` in ``workdir``.

    Args:
      config: an ``ml_collections.ConfigDict``.
      workdir: run directory (created if needed).

    Returns:
      Path of ``config.json``.
    """
    path = os.path.join(workdir, "config.json")
    atomic_write_text(path, config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    atomic_write_text(os.path.join(workdir, "config.txt"), str(config))
    return path


def load_config(path):
    """Reads a ``config.json`` written by :func:`save_config` into a ConfigDict.

    Args:
      path: the JSON file, or the workdir that holds it.

    Returns:
      ``ml_collections.ConfigDict``.
    """
    import ml_collections

    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def list_checkpoints(directory):
    """Checkpoint directories under ``directory``, oldest first, as (step, path) pairs."""
    found = []
    for path in glob.glob(os.path.join(directory, "ckpt-*")):
        match = _CKPT.match(os.path.basename(path))
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory):
    """Path of the newest checkpoint directory under ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(trainer, directory, step, keep=5):
    """Writes ``ckpt-<step>`` atomically and deletes all but the newest ``keep``.

    Args:
      trainer: a built ``GFLATrainer``.
      directory: the checkpoints directory.
      step: global step, used in the name.
      keep: number of checkpoints to keep (>= 1).

    Returns:
      Path of the new checkpoint directory.
    """
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, f"ckpt-{int(step):08d}")
    tmp = tempfile.mkdtemp(dir=directory, prefix=".tmp-ckpt-")
    try:
        trainer.save_weights(os.path.join(tmp, TRAINER_WEIGHTS))
        trainer.generator.save_weights(os.path.join(tmp, GENERATOR_WEIGHTS))
        with open(os.path.join(tmp, "step.json"), "w") as f:
            json.dump({"step": int(step), "stage": trainer.stage}, f)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(directory)[: -max(1, int(keep))]:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("saved checkpoint %s", final)
    return final


def _resolve(path, filename):
    """Finds ``filename`` in a checkpoint dir, a checkpoints dir or a workdir."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    candidates = [path, os.path.join(path, "checkpoints")]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, filename)):
            return os.path.join(candidate, filename)
        latest = latest_checkpoint(candidate)
        if latest and os.path.isfile(os.path.join(latest, filename)):
            return os.path.join(latest, filename)
    raise FileNotFoundError(
        f"no {filename} under {path!r} (expected a ckpt-* directory, a checkpoints "
        "directory or a workdir)"
    )


def restore_trainer(trainer, path):
    """Loads a full training state (``trainer.weights.h5``) written by save_checkpoint.

    Args:
      trainer: a built ``GFLATrainer`` of the same stage and configuration.
      path: a ``trainer.weights.h5`` file, a ``ckpt-*`` directory, a checkpoints
        directory or a workdir (newest checkpoint).

    Returns:
      The file that was loaded.
    """
    weights = _resolve(path, TRAINER_WEIGHTS)
    trainer.build_optimizers()
    trainer.load_weights(weights)
    logger.info("restored training state from %s", weights)
    return weights


def load_flow_estimator(generator, path, model_config):
    """Initialises ``generator.flow_estimator`` from a stage-1 run.

    Args:
      generator: the (built) generator to initialise.
      path: a ``generator.weights.h5`` file, a ``.keras`` generator, a ``ckpt-*``
        directory, a checkpoints directory or a stage-1 workdir.
      model_config: ``config.model`` of the stage-1 run (same flow estimator).

    Returns:
      The file that was loaded.

    Raises:
      FileNotFoundError: if nothing loadable is found at ``path``.
    """
    import keras

    from gfla_tf import models

    if path.endswith(".keras") and os.path.isfile(path):
        source = keras.saving.load_model(path, compile=False)
        weights = path
    else:
        weights = _resolve(path, GENERATOR_WEIGHTS)
        source = models.build_generator(model_config, impl="reference")
        source.load_weights(weights)
    targets = generator.flow_estimator.weights
    sources = source.flow_estimator.weights
    if len(targets) != len(sources):
        raise ValueError(
            f"flow estimator in {weights!r} has {len(sources)} weights, expected {len(targets)}"
        )
    for target, value in zip(targets, sources):
        if tuple(target.shape) != tuple(value.shape):
            raise ValueError(
                f"flow estimator weight {target.path} has shape {tuple(target.shape)} but "
                f"{weights!r} has {tuple(value.shape)}"
            )
        target.assign(value)
    logger.info("initialised the flow estimator from %s", weights)
    return weights
