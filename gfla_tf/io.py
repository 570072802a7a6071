"""Atomic file and directory writes: the one way gfla-tf writes its outputs.

A reader (TF Serving, a colleague, a resumed run) never sees a half-written file: content
goes to a temporary sibling first and is renamed into place only once it is complete.
Temporaries start with ``.tmp-`` so that :func:`remove_stale_temporaries` can clean what a
killed process left behind.

``tempfile`` creates its files 0600 and directories 0700; the results here get the
permissions a plain ``open()`` / ``os.makedirs()`` would give (0666 / 0777 less the umask),
so that a serving container or another account can read them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    """Returns the process umask without changing it (Linux reads it from /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # Elsewhere the only way is to set and restore it; brief, and only on this fallback.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path to write; renames it to ``path`` if the block succeeds.

    The temporary file keeps ``path``'s file name as its suffix, so writers that look at
    the extension (Pillow, ``Model.save_weights``) behave as for ``path`` itself. On any
    exception the temporary is removed and ``path`` is left as it was.

    Args:
      path: the final file path; its parent directory is created if needed.

    Yields:
      The temporary path, in the same directory as ``path``.

    Example:
      >>> with atomic_path("out/grid.png") as tmp:
      ...     image.save(tmp)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=TMP_PREFIX, suffix="-" + os.path.basename(path), dir=directory
    )
    os.close(fd)
    try:
        yield tmp
        if os.path.isdir(tmp):
            raise IsADirectoryError(f"atomic_path: the writer made a directory at {tmp}")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[str]:
    """Yields a temporary directory to fill; moves it to ``path`` if the block succeeds.

    Args:
      path: the final directory; its parent is created if needed.
      overwrite: if True an existing ``path`` is replaced (it is moved aside first and
        removed only once the new directory is in place, so a failure keeps the old one);
        if False an existing ``path`` raises ``FileExistsError`` before anything is written.

    Yields:
      The temporary directory, a sibling of ``path``.

    Raises:
      FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists")
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, suffix="-" + os.path.basename(path), dir=parent)
    try:
        yield tmp
        mode = 0o777 & ~_umask()
        for root, dirs, _ in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), os.stat(os.path.join(root, d)).st_mode | mode)
        os.chmod(tmp, mode)
        old = None
        if os.path.exists(path):
            if not overwrite:
                raise FileExistsError(f"{path} already exists")
            old = tempfile.mkdtemp(prefix=TMP_PREFIX + "old-", dir=parent)
            os.rmdir(old)
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            if old is not None:
                os.rename(old, path)
            raise
        if old is not None:
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_directory(parent)


def remove_stale_temporaries(directory: str | os.PathLike, *, min_age_s: float = 0.0) -> list[str]:
    """Removes the temporaries that a killed writer left in ``directory``.

    Only entries directly in ``directory`` whose name starts with :data:`TMP_PREFIX` and
    that are at least ``min_age_s`` old are removed; nothing else is touched.

    Args:
      directory: the directory to clean; a missing one is fine.
      min_age_s: keep temporaries younger than this (another process may be writing them).

    Returns:
      The removed paths.
    """
    directory = os.fspath(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    now = time.time()
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        full = os.path.join(directory, name)
        try:
            if now - os.lstat(full).st_mtime < min_age_s:
                continue
        except FileNotFoundError:
            continue
        _remove(full)
        removed.append(full)
    if removed:
        logger.info("removed %d stale temporary file(s) in %s", len(removed), directory)
    return removed
