from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.fields import UTCDateTime, text_field

Task = text_field(500, min_length=1)
StrictBool = Annotated[bool, Field(strict=True)]


class TodoCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Task  # type: ignore[valid-type]


class TodoReplace(BaseModel):
    """PUT: every field required."""

    model_config = ConfigDict(extra="forbid")

    task: Task  # type: ignore[valid-type]
    done: StrictBool


class TodoPatch(BaseModel):
    # At least one field: an empty PATCH is a 400 ("names no field to change").
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    task: Task = None  # type: ignore[valid-type, assignment]
    done: StrictBool = None  # type: ignore[assignment]

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)


class TodoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task: str
    done: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime


class TodoQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=2_147_483_647)
    done: bool | None = None
