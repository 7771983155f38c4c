"""Per-user chat memories in a directory: user ids that can only name a file inside it, and a lock so that
several `chat` processes of the same user add their exchanges to one memory instead of overwriting each other."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .common import UsageError

__all__ = ["USER_ID", "memory_path", "locked"]

# letters, digits and . _ - @ +; not starting with a dot (no hidden files, no '.' or '..'); at most 128 characters
USER_ID = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,127}")
SUFFIX = ".safetensors"


def memory_path(memory_dir: str | os.PathLike, user: str) -> Path:
    """`memory_dir/<user>.safetensors`, refusing any user id that is not a plain file name."""
    if not USER_ID.fullmatch(user):
        raise UsageError(f"--user {user!r}: a user id is 1-128 letters, digits or . _ - @ + (not starting with a "
                         "dot); it names the memory file inside --memory-dir, so it cannot be a path.")
    directory = Path(memory_dir)
    path = directory / f"{user}{SUFFIX}"
    if path.resolve().parent != directory.resolve():  # e.g. a symlink named like the user pointing elsewhere
        raise UsageError(f"--user {user!r}: the memory would not land inside {directory}.")
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive lock on the sidecar `<memory>.lock` (held by one process at a time; released if it dies)."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _lock(fd)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
