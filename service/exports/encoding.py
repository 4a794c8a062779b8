"""An export file's bytes: CSV or JSON, a batch of todos at a time.

CSV cells that a spreadsheet would run as a formula are neutralised; JSON stays exact.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

EXPORT_COLUMNS = ("id", "task", "done", "created_at", "updated_at")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV
# Injection"); anyone can write a todo, so such a cell gets a leading single quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _plain(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "task": row.task,
        "done": bool(row.done),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def encode_batch(rows: Sequence[Row[Any]], export_format: str, *, first: bool, last: bool) -> bytes:
    """One chunk of the file: a CSV header or "[" first, "]" last for JSON."""
    if export_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if first:
            writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            record = _plain(row)
            record["done"] = "true" if record["done"] else "false"
            record["task"] = formula_safe(record["task"])  # the one cell users write
            writer.writerow([record[column] for column in EXPORT_COLUMNS])
        return buffer.getvalue().encode()
    body = ",".join(json.dumps(_plain(row), ensure_ascii=False) for row in rows)
    prefix = "[" if first else ("," if body else "")
    return (prefix + body + ("]" if last else "")).encode()
