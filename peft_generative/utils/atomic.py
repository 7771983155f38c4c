"""Atomic writes of files and directories: a reader sees the old content or the new, never a mix.

Both write into a temporary sibling first and move it into place with `os.replace` (atomic on POSIX within a
file system). Permissions follow the umask, as `open()` and `save_pretrained` do (`mkstemp`/`mkdtemp` alone would
leave 0600 / 0700, unreadable to a serving container running as another user).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _follow_umask(path: Path, directory: bool) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _follow_umask_tree(root: Path) -> None:
    """Files written by libraries through their own temporary files (safetensors, say) may be 0600: give the whole
    tree the permissions plain `open()` / `mkdir()` would have."""
    for folder, dirs, files in os.walk(root):
        _follow_umask(Path(folder), directory=True)
        for name in files:
            _follow_umask(Path(folder) / name, directory=False)


@contextmanager
def atomic_file(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; write it inside the block, it replaces `path` when the block ends
    without an error. On an error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _follow_umask(tmp, directory=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: PathLike, keep_other_files: bool = True) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; fill it inside the block, it becomes `path` when the block ends
    without an error. On an error it is removed and `path` is untouched.

    An existing `path` is swapped out whole, so its old files never mix with the new ones (a config of one export
    beside the weights of another). With `keep_other_files`, files of the old directory that the new one does not
    write (a README, say) are carried over. Between the two renames of the swap, `path` is briefly absent; if the
    process dies exactly then, the old directory is left intact as `.<name>.old-*` beside it.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a directory; choose a directory path.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old = None
    try:
        yield tmp
        if keep_other_files and path.is_dir():
            for entry in path.iterdir():
                if not (tmp / entry.name).exists():
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        _follow_umask_tree(tmp)
        if path.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "content")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and path.is_dir():
            shutil.rmtree(old, ignore_errors=True)
