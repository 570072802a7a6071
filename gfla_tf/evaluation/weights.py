"""Where the evaluation networks' weights come from, and the error when they cannot."""

import os


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights for a metric network cannot be found, fetched or read.

    The message always says how to supply a local file instead.
    """


def keras_home():
    """Keras' cache root: ``$KERAS_HOME``, else ``~/.keras``."""
    return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def cache_dir():
    """The directory where gfla-tf keeps converted metric weights (``<keras home>/gfla``)."""
    return os.path.join(keras_home(), "gfla")
