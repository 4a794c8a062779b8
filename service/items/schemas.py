from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator
from pydantic.json_schema import SkipJsonSchema

from service.fields import (
    NO_NUL_SCHEMA,
    NonNegativeAmount,
    NonNegativeCount,
    UTCDateTime,
    text_field,
)

ItemName = text_field(200, min_length=1)
Description = text_field(10_000)

# Columns a client may sort by; "-" in front sorts descending.
SORTABLE_COLUMNS = ("id", "name", "quantity", "price", "created_at", "updated_at")
SORT_VALUES = [f"{order}{column}" for column in SORTABLE_COLUMNS for order in ("", "-")]


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ItemName  # type: ignore[valid-type]
    description: Description | None = None  # type: ignore[valid-type]
    quantity: NonNegativeCount = 0
    price: NonNegativeAmount = 0.0


class ItemReplace(BaseModel):
    """PUT: a full replacement, every field required (description may be null)."""

    model_config = ConfigDict(extra="forbid")

    name: ItemName  # type: ignore[valid-type]
    description: Description | None  # type: ignore[valid-type]
    quantity: NonNegativeCount
    price: NonNegativeAmount


class ItemPatch(BaseModel):
    """PATCH: only the fields given. An explicit null is refused except for description."""

    # At least one field: an empty PATCH is a 400 ("names no field to change").
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    name: ItemName = None  # type: ignore[valid-type, assignment]
    description: Description | None = None  # type: ignore[valid-type]
    quantity: NonNegativeCount = None  # type: ignore[assignment]
    price: NonNegativeAmount = None  # type: ignore[assignment]

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)


class ItemOut(BaseModel):
    """One item. Its response carries the item's `ETag` (strong, quoted, RFC 9110): send it
    back in `If-Match` to change or delete only that version, or in `If-None-Match` to get
    a 304 while it is unchanged."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    quantity: int
    price: float
    created_at: UTCDateTime
    updated_at: UTCDateTime


# A model rather than `list[ItemOut]` for the list's response: quart-schema validates and
# dumps a bare list through a new TypeAdapter on every request, while a model's validator
# and serializer are built once.
class ItemList(RootModel[list[ItemOut]]):
    """A page of items."""


class ItemWriteHeaders(BaseModel):
    """The precondition a PUT, PATCH or DELETE may carry (documentation only)."""

    if_match: str | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "an ETag from an earlier response, or `*`: the write applies only while the item "
            "is still that version, else 412 and nothing changes; without it the last write wins"
        ),
    )


class ItemReadHeaders(BaseModel):
    """The precondition a GET may carry (documentation only)."""

    if_none_match: str | SkipJsonSchema[None] = Field(
        default=None, description="the ETag you hold: 304 without a body while it is current"
    )


class ItemQuery(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=2_147_483_647)
    sort: str = Field(
        default="id",
        description="column, '-' prefix for descending",
        json_schema_extra={"enum": SORT_VALUES},
    )
    name: str | None = Field(
        default=None,
        max_length=200,
        description="contains, any case",
        json_schema_extra=NO_NUL_SCHEMA,
    )

    @field_validator("sort")
    @classmethod
    def _known_column(cls, value: str) -> str:
        if value.removeprefix("-") not in SORTABLE_COLUMNS:
            allowed = ", ".join(SORTABLE_COLUMNS)
            raise ValueError(f"unknown sort column; allowed: {allowed} (prefix '-' to descend)")
        return value

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value
