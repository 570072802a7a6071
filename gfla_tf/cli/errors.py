"""The one-line error a command prints instead of a traceback."""

from __future__ import annotations


def one_line(err: BaseException) -> str:
    """Describes an expected error in one line.

    An ``OSError`` raised by the system reads "reason: path" (``[Errno 13]`` dropped);
    anything else gives the first line of its message, or its type when it has none.
    """
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
