"""Pieces shared by the RealWorld (Conduit) routes under /api."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, model_validator


def _realworld_time(value: datetime) -> str:
    # The spec's form: milliseconds and "Z", also when they are zero.
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


RealWorldDateTime = Annotated[datetime, PlainSerializer(_realworld_time, return_type=str)]


class EnvelopedInput(BaseModel):
    """A request body sent either flat or inside the RealWorld envelope (`{"user": {...}}`).

    Unknown fields are ignored: RealWorld front ends send back whole objects.
    """

    model_config = ConfigDict(extra="ignore")
    envelope: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.envelope in data:
            inner = data[cls.envelope]
            if isinstance(inner, dict):
                return inner
            raise ValueError(f"'{cls.envelope}' must be an object")
        return data
