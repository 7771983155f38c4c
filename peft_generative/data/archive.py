"""Read files out of the raw downloads without unpacking them to disk.

One interface, :func:`iter_members`, over the four shapes the raw data comes in:

- a directory (an already unpacked archive, or test fixtures),
- a zip file (Python wheels ``.whl``, ``.zip``),
- a Debian package ``.deb`` (an ``ar`` archive holding ``data.tar.{xz,gz,zst}``; parsed here, so ``dpkg-deb`` is
  not needed; ``zstd`` members need the optional ``zstandard`` module),
- a tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.xz``: source distributions).

Member names are POSIX paths relative to the archive root, without a leading ``./``. Only regular files are
yielded (no directories, no links).
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["iter_members", "read_member", "archive_kind"]

Match = Callable[[str], bool]


def archive_kind(path: str | os.PathLike) -> str:
    """'dir', 'zip', 'deb' or 'tar' (raises ValueError for anything else)."""
    p = Path(path)
    if p.is_dir():
        return "dir"
    if not p.is_file():
        raise FileNotFoundError(f"no such file or directory: {p}")
    name = p.name.lower()
    if name.endswith(".deb"):
        return "deb"
    if zipfile.is_zipfile(p):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")) or tarfile.is_tarfile(p):
        return "tar"
    raise ValueError(f"not a directory, zip, .deb or tar archive: {p}")


def _clean(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _iter_dir(root: Path, match: Match) -> Iterator[tuple[str, bytes]]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            full = Path(dirpath) / fn
            if full.is_symlink() or not full.is_file():
                continue
            rel = full.relative_to(root).as_posix()
            if match(rel):
                files.append((rel, full))
    for rel, full in sorted(files):
        yield rel, full.read_bytes()


def _iter_zip(path: Path, match: Match) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            name = _clean(info.filename)
            if match(name):
                yield name, z.read(info)


def _iter_tar_fileobj(fileobj, match: Match, mode: str = "r|*") -> Iterator[tuple[str, bytes]]:
    # Streaming mode: one sequential pass, no seeking (works on compressed streams and on file slices).
    with tarfile.open(fileobj=fileobj, mode=mode) as tf:
        for member in tf:
            if not member.isfile():
                continue
            name = _clean(member.name)
            if match(name):
                f = tf.extractfile(member)
                if f is not None:
                    yield name, f.read()


def _deb_data_member(path: Path) -> tuple[str, bytes]:
    """Return (name, bytes) of the ``data.tar.*`` member of a Debian ``ar`` archive."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError(f"not a Debian package (ar archive): {path}")
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            name = header[0:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if name.startswith("data.tar"):
                return name, f.read(size)
            f.seek(size + (size & 1), io.SEEK_CUR)
    raise ValueError(f"no data.tar member in {path}")


def _iter_deb(path: Path, match: Match) -> Iterator[tuple[str, bytes]]:
    name, payload = _deb_data_member(path)
    if name.endswith(".zst"):
        try:
            import zstandard  # type: ignore
        except ImportError as e:  # pragma: no cover - Debian 12 packages use xz
            raise RuntimeError(f"{path} uses zstd compression; `pip install zstandard` or unpack it with dpkg-deb") from e
        stream = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload))
        yield from _iter_tar_fileobj(stream, match, mode="r|")
    else:
        yield from _iter_tar_fileobj(io.BytesIO(payload), match, mode="r|*")


def iter_members(path: str | os.PathLike, match: Match | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member_name, content_bytes)`` for every regular file in ``path`` whose name satisfies ``match``.

    Directories and zip files are walked in sorted name order; tar and .deb archives in archive order (both are
    deterministic for a given file)."""
    match = match or (lambda name: True)
    p = Path(path)
    kind = archive_kind(p)
    if kind == "dir":
        yield from _iter_dir(p, match)
    elif kind == "zip":
        yield from _iter_zip(p, match)
    elif kind == "deb":
        yield from _iter_deb(p, match)
    else:
        with open(p, "rb") as f:
            yield from _iter_tar_fileobj(f, match)


def read_member(path: str | os.PathLike, suffix: str) -> tuple[str, bytes]:
    """The first member whose name is ``suffix`` or ends with ``/`` + ``suffix``; FileNotFoundError if none."""
    suffix = _clean(suffix)
    for name, data in iter_members(path, lambda n: n == suffix or n.endswith("/" + suffix)):
        return name, data
    raise FileNotFoundError(f"no member ending in {suffix!r} in {path}")
