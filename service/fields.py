"""Field types shared by the request schemas.

JSON bodies are validated strictly (no "5" for 5, no true for 1.0, no NaN),
and text that PostgreSQL cannot store (a NUL byte) is refused up front, by a
rule the OpenAPI document states too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer
from werkzeug.routing import UnicodeConverter

# The documented form of "no NUL character" (ECMA-262 and Python read `\x00` alike).
NO_NUL_PATTERN = r"^[^\x00]*$"
NO_NUL_SCHEMA = {"pattern": NO_NUL_PATTERN}


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def text_field(max_length: int, *, min_length: int = 0) -> object:
    """A strict string of bounded length without NUL bytes."""
    return Annotated[
        str,
        Field(
            strict=True,
            min_length=min_length,
            max_length=max_length,
            json_schema_extra=NO_NUL_SCHEMA,
        ),
        AfterValidator(_no_nul),
    ]


def _as_utc(value: datetime) -> str:
    # SQLite hands back naive datetimes; every value we store is UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


UTCDateTime = Annotated[datetime, PlainSerializer(_as_utc, return_type=str)]

NonNegativeAmount = Annotated[float, Field(strict=True, ge=0, le=1e12, allow_inf_nan=False)]


def _integral_float_to_int(value: Any) -> Any:
    # JSON has one number type: 3.0 is the integer 3 (JSON Schema agrees), 3.5 is not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The constraints first: after the validator they would leave the JSON schema.
NonNegativeCount = Annotated[
    int, Field(strict=True, ge=0, le=2_147_483_647), BeforeValidator(_integral_float_to_int)
]


class PathSegmentConverter(UnicodeConverter):
    """The default `<name>` path segment, without NUL characters: no slug, username or
    export id has one, and PostgreSQL refuses them, so such a path is a 404."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, *args, **kwargs)  # "[^/]{1,}", or the length asked for
        self.regex = self.regex.replace("[^/]", r"[^/\x00]", 1)
