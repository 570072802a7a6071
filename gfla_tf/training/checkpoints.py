"""Checkpoint files of a training run: periodic checkpoints, backups, the config, resuming.

Layout under a run's workdir::

    config.json            resolved configuration (ml_collections JSON)
    config.txt             the same, human readable
    checkpoints/ckpt-00001000/trainer.weights.h5    generator, discriminator, optimizers
    checkpoints/ckpt-00001000/generator.weights.h5  generator only (stage 2 init, export)
    checkpoints/ckpt-00001000/step.json
    backup/backup-0000001000.weights.h5  full training state at the end of the last epoch
    backup/training_metadata.json        epoch and step of that backup
    generator.keras        final generator (when the generator is serialisable)

Every file and checkpoint directory is written through ``gfla_tf.io`` (temporary name,
then an atomic rename), so a run killed at any moment leaves either the old or the new
version, plus at most a ``.tmp-*`` entry that the next run removes. A rerun resumes from
the newest state that loads (:func:`restore_latest`), whichever kind it is.

Rotation is hand-written rather than ``tf.train.CheckpointManager``: the manager keeps TF
object-graph checkpoints (``ckpt-N.index`` / ``.data``), whereas a checkpoint here is a
directory of Keras ``.weights.h5`` files that stage 2 (``load_flow_estimator``), export
and ``resume_from`` read without building a trainer, and that must appear atomically as
one directory; the manager has no hook for either. What it would replace is the
``list_checkpoints(...)[:-keep]`` loop below.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import json
import logging
import os
import re
import shutil

import numpy as np

from gfla_tf import io

logger = logging.getLogger(__name__)

_CKPT = re.compile(r"^ckpt-(\d+)$")
_BACKUP = re.compile(r"^backup-(\d+)\.weights\.h5$")
TRAINER_WEIGHTS = "trainer.weights.h5"
GENERATOR_WEIGHTS = "generator.weights.h5"
BACKUP_METADATA = "training_metadata.json"


# Tracebacks of failed weight writes, kept alive on purpose: see _write_weights.
_FAILED_WRITES = []
# Upper bound of the HDF5 bytes per variable beyond its data (measured: about 1.7 KiB).
_H5_BYTES_PER_VARIABLE = 4096
_H5_BYTES_FIXED = 1 << 20


def estimate_weights_bytes(model) -> int:
    """An upper bound of the size of ``model.save_weights``'s file, optimizers included.

    Measured on the synthetic configs ("test" / quickstart size): trainer files of 1.05 /
    10.1 MB estimated at 3.2 / 12.4 MB.
    """
    variables = list(model.variables)
    for name in ("optimizer", "g_optimizer", "d_optimizer"):
        optimizer = getattr(model, name, None)
        if optimizer is not None:
            variables += list(optimizer.variables)
    seen, total = set(), _H5_BYTES_FIXED
    for variable in variables:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        size = 1
        for dim in variable.shape:
            size *= int(dim)
        total += size * np.dtype(variable.dtype).itemsize + _H5_BYTES_PER_VARIABLE
    return total


def check_free_space(directory: str, needed: int) -> None:
    """Raises ``OSError(ENOSPC)`` unless ``directory`` has ``needed`` bytes free.

    HDF5 does not survive running out of space in the middle of a write (below), so
    weights are only written where they fit; another process can still fill the disk in
    between, which ``_write_weights`` then handles as well as HDF5 lets it.
    """
    os.makedirs(directory, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"{os.strerror(errno.ENOSPC)} ({free / 1e6:.1f} MB free, about "
            f"{needed / 1e6:.1f} MB needed)",
            directory,
        )


def _write_weights(model, path: str) -> None:
    """``model.save_weights(path)``, made safe to fail (full disk).

    Measured on a full tmpfs: once a write of HDF5 fails (ENOSPC), freeing any h5py object
    of that file makes HDF5 retry the write, print a traceback per object and then crash
    the interpreter (exit 139), during the write or at interpreter teardown (Keras closes
    the file only when the write succeeds). So the free space is checked first; and when a
    write still fails, its frames are kept referenced so that those objects are never
    freed, and the error is raised again as a plain ``OSError``. A process that saw one
    must end with ``os._exit`` (see :func:`hdf5_write_failed`).
    """
    check_free_space(os.path.dirname(os.path.abspath(path)), estimate_weights_bytes(model))
    try:
        model.save_weights(path)
    except OSError as err:
        _FAILED_WRITES.append(err.__traceback__)
        code = err.errno or errno.EIO
        raise OSError(code, os.strerror(code), path) from None


def hdf5_write_failed() -> bool:
    """True once a weights write failed: the process must then end with ``os._exit``."""
    return bool(_FAILED_WRITES)


def save_weights(model, path: str) -> str:
    """``model.save_weights(path)`` through an atomic temporary file.

    Args:
      model: a built Keras model.
      path: the ``.weights.h5`` file to write.

    Returns:
      ``path``.

    Raises:
      OSError: the write failed (nothing is left at ``path`` or beside it).
    """
    with io.atomic_path(path) as tmp:
        _write_weights(model, tmp)
    return path


def save_config(config, workdir: str) -> str:
    """Writes the resolved config as ``config.json`` and ``config.txt`` in ``workdir``.

    Args:
      config: an ``ml_collections.ConfigDict``.
      workdir: run directory (created if needed).

    Returns:
      Path of ``config.json``.
    """
    path = os.path.join(workdir, "config.json")
    io.atomic_write_text(path, config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    io.atomic_write_text(os.path.join(workdir, "config.txt"), str(config))
    return path


def load_config(path: str):
    """Reads a ``config.json`` written by :func:`save_config`.

    The saved values are laid over ``configs/base.py``, so a run saved before a field
    existed gets that field's default; the result is locked like every config.

    Args:
      path: the JSON file, or the workdir that holds it.

    Returns:
      ``ml_collections.ConfigDict``.
    """
    from gfla_tf.configs import base

    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    with open(path) as f:
        saved = json.load(f)
    config = base.get_base_config()

    def merge(node, values, prefix):
        for key, value in values.items():
            if key not in node:
                logger.warning("%s: ignoring unknown config field %s%s", path, prefix, key)
            elif isinstance(value, dict):
                merge(node[key], value, f"{prefix}{key}.")
            else:
                node[key] = tuple(value) if isinstance(value, list) else value

    merge(config, saved, "")
    return config


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """Checkpoint directories under ``directory``, oldest first, as (step, path) pairs."""
    found = []
    for path in glob.glob(os.path.join(directory, "ckpt-*")):
        match = _CKPT.match(os.path.basename(path))
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str) -> str | None:
    """Path of the newest checkpoint directory under ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(trainer, directory: str, step: int, keep: int = 5) -> str:
    """Writes ``ckpt-<step>`` atomically and deletes all but the newest ``keep``.

    Args:
      trainer: a built ``GFLATrainer``.
      directory: the checkpoints directory.
      step: global step, used in the name.
      keep: number of checkpoints to keep (>= 1).

    Returns:
      Path of the new checkpoint directory.
    """
    final = os.path.join(directory, f"ckpt-{int(step):08d}")
    with io.atomic_directory(final, overwrite=True) as tmp:
        _write_weights(trainer, os.path.join(tmp, TRAINER_WEIGHTS))
        _write_weights(trainer.generator, os.path.join(tmp, GENERATOR_WEIGHTS))
        with open(os.path.join(tmp, "step.json"), "w") as f:
            json.dump({"step": int(step), "stage": trainer.stage}, f)
    # Hand-written rotation, not tf.train.CheckpointManager: see the module docstring.
    for _, old in list_checkpoints(directory)[: -max(1, int(keep))]:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("saved checkpoint %s", final)
    return final


def list_backups(directory: str) -> list[tuple[int, str]]:
    """Backup weight files under ``directory``, oldest first, as (step, path) pairs."""
    found = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        match = _BACKUP.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)


def save_backup(trainer, directory: str, epoch: int, keep_paths=()) -> str:
    """Writes the end-of-epoch backup and then deletes the older backups.

    Args:
      trainer: a built ``GFLATrainer``.
      directory: the backup directory.
      epoch: number of completed epochs.
      keep_paths: files never deleted (states that did not load: left for inspection).

    Returns:
      Path of the new backup file.
    """
    step = int(trainer.optimizer.iterations.numpy())
    name = f"backup-{step:010d}.weights.h5"
    path = save_weights(trainer, os.path.join(directory, name))
    metadata = {"epoch": int(epoch), "step": step, "weights": name}
    io.atomic_write_text(os.path.join(directory, BACKUP_METADATA), json.dumps(metadata))
    keep = {os.path.abspath(p) for p in keep_paths}
    for old_step, old in list_backups(directory):
        if old_step < step and os.path.abspath(old) not in keep:
            os.remove(old)
    return path


@dataclasses.dataclass
class ResumeState:
    """Where a run resumed from.

    Attributes:
      path: the weights file that was loaded.
      kind: "backup" or "checkpoint".
      step: the optimizer step after loading.
      unreadable: newer files that were tried first and did not load (kept as they are).
    """

    path: str
    kind: str
    step: int
    unreadable: list


def _candidates(directory: str) -> list[tuple[int, int, str, str]]:
    """Full training states directly under a workdir-like ``directory``, newest first."""
    found = []
    for step, path in list_backups(os.path.join(directory, "backup")):
        found.append((step, 1, path, "backup"))
    for root in (directory, os.path.join(directory, "checkpoints")):
        for step, path in list_checkpoints(root):
            found.append((step, 0, os.path.join(path, TRAINER_WEIGHTS), "checkpoint"))
    return sorted(set(found), reverse=True)


def _resume_from_candidates(path: str) -> list[tuple[int, int, str, str]]:
    if os.path.isfile(path):
        return [(0, 0, path, "checkpoint")]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"config.train.resume_from={path!r} does not exist")
    found = _candidates(path)
    if os.path.isfile(os.path.join(path, TRAINER_WEIGHTS)):
        found.append((-1, 0, os.path.join(path, TRAINER_WEIGHTS), "checkpoint"))
    if not found:
        raise FileNotFoundError(
            f"no {TRAINER_WEIGHTS} under config.train.resume_from={path!r} (expected a "
            "ckpt-* directory, a checkpoints directory or a workdir)"
        )
    return found


def _load_first(trainer, candidates):
    """Loads the first candidate that loads; returns (ResumeState or None, unreadable)."""
    unreadable = []
    trainer.build_optimizers()
    for _, _, path, kind in candidates:
        if not os.path.isfile(path):
            continue
        try:
            trainer.load_weights(path)
        except Exception as err:  # h5py raises OSError, KeyError, ValueError... by damage
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            logger.warning("cannot load %s %s (%s); trying an older state", kind, path, reason)
            unreadable.append(path)
            continue
        step = int(trainer.optimizer.iterations.numpy())
        return ResumeState(path, kind, step, unreadable), unreadable
    return None, unreadable


def restore_latest(trainer, workdir: str, resume_from: str = "") -> ResumeState | None:
    """Loads the newest intact training state of a run into ``trainer``.

    The run's own states (``workdir/backup`` and ``workdir/checkpoints``, newest first,
    a backup before a checkpoint of the same step) come first; only when it has none does
    ``resume_from`` count (its checkpoints, newest first). A state that does not load (a
    truncated file) is skipped with a warning and left where it is.

    Args:
      trainer: a built ``GFLATrainer``.
      workdir: the run directory.
      resume_from: optional checkpoint to start from (file, ``ckpt-*`` directory,
        checkpoints directory or workdir).

    Returns:
      A :class:`ResumeState`, or None for a fresh start.

    Raises:
      RuntimeError: states exist but none of them loads (nothing is deleted; the message
        names them).
      FileNotFoundError: ``resume_from`` does not exist or holds no training state.
    """
    tried = []
    own = _candidates(workdir)
    state, unreadable = _load_first(trainer, own)
    tried += unreadable
    if state is None and resume_from:
        state, unreadable = _load_first(trainer, _resume_from_candidates(resume_from))
        tried += unreadable
    if state is None:
        if tried:
            raise RuntimeError(
                f"none of the {len(tried)} saved training state(s) loads (newest: "
                f"{tried[0]}); move them out of the way to start over"
            )
        return None
    state.unreadable = tried
    if tried:
        logger.warning(
            "skipped %d newer state(s) that do not load (kept as they are): %s",
            len(tried),
            ", ".join(tried),
        )
    return state


def restore_trainer(trainer, path: str) -> str:
    """Loads a full training state (``trainer.weights.h5``) written by save_checkpoint.

    Args:
      trainer: a built ``GFLATrainer`` of the same stage and configuration.
      path: a ``trainer.weights.h5`` file, a ``ckpt-*`` directory, a checkpoints
        directory or a workdir (its newest state that loads).

    Returns:
      The file that was loaded.
    """
    state, unreadable = _load_first(trainer, _resume_from_candidates(path))
    if state is None:
        raise RuntimeError(f"no training state under {path!r} loads (tried {unreadable})")
    logger.info("restored training state from %s", state.path)
    return state.path


def _resolve(path: str, filename: str) -> str:
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


def load_flow_estimator(generator, path: str, model_config) -> str:
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
