"""Loading a trained generator, and the settings its training run saved beside it.

A training run writes ``config.json`` (the resolved configuration) next to
``generator.keras``. The serving graph needs two values from it that the Keras file does
not hold: the heatmap sigma (``data.sigma``) the generator was trained with, and, as a
cross-check, the image size (``model.image_height`` / ``image_width``).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import zipfile
from dataclasses import dataclass

import keras

_log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelSettings:
    """What the serving graph needs to know about a generator beyond its weights.

    Attributes:
      image_size: (height, width) the generator was trained at.
      sigma: keypoint heatmap sigma in pixels (``config.data.sigma``).
      num_keypoints: keypoints per pose.
      source: the ``config.json`` the values were read from.
    """

    image_size: tuple[int, int]
    sigma: float
    num_keypoints: int
    source: str


def find_keras_file(path: str | os.PathLike) -> str:
    """Returns the ``.keras`` generator file inside a work directory.

    Prefers files whose name contains "generator", then the most recently written one;
    looks in ``path`` and one level below it (e.g. ``workdir/export/``).

    Raises:
      FileNotFoundError: if there is no ``.keras`` file.
    """
    path = os.fspath(path)
    candidates = glob.glob(os.path.join(path, "*.keras")) + glob.glob(
        os.path.join(path, "*", "*.keras")
    )
    if not candidates:
        raise FileNotFoundError(
            f"{path} holds no .keras model (looked in it and its subdirectories); save the "
            "generator with model.save('generator.keras') or pass the file itself"
        )
    candidates.sort(key=lambda p: ("generator" in os.path.basename(p).lower(), os.path.getmtime(p)))
    return candidates[-1]


def resolve_keras_path(path: str | os.PathLike) -> str:
    """Maps a ``.keras`` file or a work directory holding one to the ``.keras`` file.

    Raises:
      FileNotFoundError: if ``path`` does not exist or holds no ``.keras`` file.
      ValueError: if ``path`` is neither a ``.keras`` file nor a directory.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path}")
    if os.path.isdir(path):
        found = find_keras_file(path)
        _log.info("using %s", found)
        return found
    if not path.endswith(".keras"):
        raise ValueError(f"model must be a .keras file or a work directory, got {path}")
    return path


def _check_archive(path: str) -> None:
    """Raises ValueError unless ``path`` is a complete zip archive (what ``.keras`` is).

    Keras reports a random or truncated file as "File not found", which sends the user
    looking for the wrong problem.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(
            f"{path} is not a valid .keras file (not a complete zip archive: {err}); "
            "it may be truncated or corrupt"
        ) from None
    if bad is not None:
        raise ValueError(f"{path} is corrupt: archive member {bad!r} fails its CRC check")
    if "config.json" not in names:
        raise ValueError(f"{path} is not a Keras model file (no config.json inside)")


def load_generator(path: str | os.PathLike) -> keras.Model:
    """Loads a generator saved with ``model.save(...keras)``.

    Args:
      path: a ``.keras`` file, or a training work directory holding one.

    Returns:
      The generator (a ``keras.Model`` following the ``gfla_tf.models`` contract). When the
      file holds a trainer with a ``generator`` attribute, that generator.

    Raises:
      FileNotFoundError: if ``path`` does not exist or holds no ``.keras`` file.
      ValueError: if ``path`` is neither a ``.keras`` file nor a directory, or the file is
        truncated, corrupt or not a model this package can rebuild.
    """
    path = resolve_keras_path(path)
    _check_archive(path)
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load {path}: {reason}") from None
    return getattr(model, "generator", model)


def find_config(model_path: str | os.PathLike) -> str | None:
    """Returns the training ``config.json`` that belongs to a model, or None.

    Looks in ``model_path`` itself when it is a work directory, and in the directory of
    the ``.keras`` file (where training writes both).
    """
    model_path = os.fspath(model_path)
    places = [model_path] if os.path.isdir(model_path) else []
    places.append(os.path.dirname(os.path.abspath(resolve_keras_path(model_path))))
    for place in places:
        candidate = os.path.join(place, CONFIG_FILE)
        if os.path.isfile(candidate):
            return candidate
    return None


def read_settings(config_path: str | os.PathLike) -> ModelSettings:
    """Reads image size, heatmap sigma and keypoint count from a training ``config.json``.

    Raises:
      ValueError: if the file is not JSON or lacks one of the fields.
    """
    config_path = os.fspath(config_path)
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        model, data = config["model"], config["data"]
        return ModelSettings(
            image_size=(int(model["image_height"]), int(model["image_width"])),
            sigma=float(data["sigma"]),
            num_keypoints=int(model["num_keypoints"]),
            source=config_path,
        )
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{config_path}: not a training config with model.image_height/width, "
            f"model.num_keypoints and data.sigma ({type(err).__name__}: {err})"
        ) from None


def model_settings(model_path: str | os.PathLike) -> ModelSettings | None:
    """The settings saved with a model by its training run, or None if none were saved."""
    config = find_config(model_path)
    return read_settings(config) if config else None
