"""Field types shared by the request schemas.

JSON bodies are validated strictly (no "5" for 5, no true for 1.0, no NaN),
and text that PostgreSQL cannot store (a NUL byte) is refused up front.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, PlainSerializer


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def text_field(max_length: int, *, min_length: int = 0) -> object:
    """A strict string of bounded length without NUL bytes."""
    return Annotated[
        str,
        Field(strict=True, min_length=min_length, max_length=max_length),
        AfterValidator(_no_nul),
    ]


def _as_utc(value: datetime) -> str:
    # SQLite hands back naive datetimes; every value we store is UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


UTCDateTime = Annotated[datetime, PlainSerializer(_as_utc, return_type=str)]

NonNegativeAmount = Annotated[float, Field(strict=True, ge=0, le=1e12, allow_inf_nan=False)]
NonNegativeCount = Annotated[int, Field(strict=True, ge=0, le=2_147_483_647)]
