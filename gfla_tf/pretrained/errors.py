"""The error raised when pretrained weights cannot be found or read."""


class WeightsUnavailableError(ValueError):
    """Pretrained weights cannot be found, fetched or read.

    A ``ValueError``: the weights argument given (a path, a name) cannot be used. The
    message always says how to get or supply a usable file.
    """
