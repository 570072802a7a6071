"""Loading a trained generator from a ``.keras`` file or a training work directory."""

import glob
import logging
import os

_log = logging.getLogger(__name__)


def find_keras_file(path):
    """Returns the ``.keras`` generator file inside a work directory.

    Prefers files whose name contains "generator", then the most recently written one;
    looks in ``path`` and one level below it (e.g. ``workdir/export/``).

    Raises:
      FileNotFoundError: if there is no ``.keras`` file.
    """
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


def load_generator(path):
    """Loads a generator saved with ``model.save(...keras)``.

    Args:
      path: a ``.keras`` file, or a training work directory holding one.

    Returns:
      The generator (a ``keras.Model`` following the ``gfla_tf.models`` contract). When the
      file holds a trainer with a ``generator`` attribute, that generator.

    Raises:
      FileNotFoundError: if ``path`` does not exist or holds no ``.keras`` file.
      ValueError: if ``path`` is neither a ``.keras`` file nor a directory.
    """
    import keras

    # Importing the models registers their layers for deserialisation.
    import gfla_tf.models  # noqa: F401

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model not found: {path}")
    if os.path.isdir(path):
        path = find_keras_file(path)
        _log.info("using %s", path)
    elif not path.endswith(".keras"):
        raise ValueError(f"model must be a .keras file or a work directory, got {path}")
    model = keras.saving.load_model(path, compile=False)
    return getattr(model, "generator", model)
