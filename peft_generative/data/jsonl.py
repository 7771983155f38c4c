"""Reading and writing JSON Lines, atomically and byte-for-byte reproducibly."""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator

from ..utils.atomic import atomic_file

__all__ = ["write_jsonl", "read_jsonl", "write_json"]


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8, no ASCII escaping) via a temporary file and an atomic rename, so a
    crashed build never leaves a truncated file behind. Returns the number of lines written."""
    n = 0
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Iterate over the objects of a JSON Lines file (blank lines are skipped)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write a pretty-printed JSON file atomically."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")
