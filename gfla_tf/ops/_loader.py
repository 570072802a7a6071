"""Lazy loading of the compiled op library (placeholder until the custom op lands)."""

import functools
import logging

_log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _load():
    return None, "the custom op library has not been built yet"


def library_available(required=False):
    lib, reason = _load()
    if lib is None and required:
        raise RuntimeError(f"gfla-tf custom op library unavailable: {reason}")
    return lib is not None


def status():
    lib, reason = _load()
    return {"loaded": lib is not None, "reason": reason}
