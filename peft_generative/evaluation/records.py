"""Reading evaluation files (JSON Lines) with errors that name the file, the line and the problem."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

__all__ = ["EvalDataError", "read_records", "need", "need_text", "need_list"]


class EvalDataError(ValueError):
    """An evaluation file is missing, unreadable or not in the documented format (docs/evaluation.md)."""


def read_records(path: str | os.PathLike, task: str) -> Iterator[tuple[str, dict]]:
    """Yield `("FILE:LINE", record)` for every non-blank line; a line that is not a JSON object is an error."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: no such evaluation file.")
    found = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{where}: not valid JSON ({exc.msg}).") from exc
            if not isinstance(record, dict):
                raise EvalDataError(f"{where}: expected a JSON object per line, got {type(record).__name__}.")
            found = True
            yield where, record
    if not found:
        raise EvalDataError(f"{path}: the file has no records; see docs/evaluation.md for the {task} format.")


def need(record: dict, key: str, where: str, task: str) -> Any:
    if key not in record:
        raise EvalDataError(
            f"{where}: missing key {key!r} (the {task} format needs it; see docs/evaluation.md). "
            f"Keys found: {sorted(record)}."
        )
    return record[key]


def need_text(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise EvalDataError(f"{where}: {what} must be a string, got {type(value).__name__}.")
    if not value.strip():
        raise EvalDataError(f"{where}: {what} is empty.")
    return value


def need_list(value: Any, what: str, where: str, allow_empty: bool = False) -> list:
    if not isinstance(value, list):
        raise EvalDataError(f"{where}: {what} must be a list, got {type(value).__name__}.")
    if not value and not allow_empty:
        raise EvalDataError(f"{where}: {what} is an empty list.")
    return value
