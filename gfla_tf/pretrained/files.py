"""Where pretrained weights files are looked for when none is named explicitly."""

import os

from gfla_tf.pretrained.errors import WeightsUnavailableError


def keras_home():
    """Keras' cache root: ``$KERAS_HOME``, else ``~/.keras``."""
    return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def cache_dir():
    """The directory where gfla-tf keeps converted metric weights (``<keras home>/gfla``)."""
    return os.path.join(keras_home(), "gfla")


def torch_hub_checkpoints():
    """Where torchvision stores downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "torch",
    )
    return os.path.join(torch_home, "hub", "checkpoints")


def find_weights(env_var, file_names, how_to):
    """Finds a weights file: ``$env_var``, else the first of ``file_names`` that exists.

    The file names are looked for in torchvision's hub cache (where
    ``torchvision.models.X(weights=...)`` put them) and in ``<keras home>/gfla``.

    Args:
      env_var: environment variable that may name the file.
      file_names: candidate file names.
      how_to: the sentence saying how to get the file, for the error.

    Returns:
      The path of an existing file.

    Raises:
      WeightsUnavailableError: none exists; the message lists where it looked and
        ``how_to``.
    """
    named = os.environ.get(env_var)
    if named:
        if not os.path.isfile(named):
            raise WeightsUnavailableError(
                f"${env_var} names {named!r}, which does not exist. {how_to}"
            )
        return named
    places = [
        os.path.join(directory, name)
        for directory in (torch_hub_checkpoints(), cache_dir())
        for name in file_names
    ]
    for path in places:
        if os.path.isfile(path):
            return path
    raise WeightsUnavailableError(
        f"no weights file: ${env_var} is unset and none of {', '.join(places)} exists. {how_to}"
    )
