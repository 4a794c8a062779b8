"""Pieces shared by the RealWorld (Conduit) routes under /api."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, PlainSerializer, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


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

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Both forms the body may take: the envelope (RealWorld's), or flat (the seed's),
        where the envelope's name may not appear (`{"user": "x"}` is refused)."""
        fields = dict(handler.resolve_ref_schema(handler(core_schema)))
        title = fields.pop("title", cls.__name__)
        enveloped = {
            "type": "object",
            "properties": {cls.envelope: fields},
            "required": [cls.envelope],
        }
        flat = {**fields, "properties": {**fields.get("properties", {}), cls.envelope: False}}
        return {"title": title, "anyOf": [enveloped, flat]}
