from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from service.fields import NonNegativeAmount, NonNegativeCount, UTCDateTime, text_field

ItemName = text_field(200, min_length=1)
Description = text_field(10_000)

# Columns a client may sort by; "-" in front sorts descending.
SORTABLE_COLUMNS = ("id", "name", "quantity", "price", "created_at", "updated_at")


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

    model_config = ConfigDict(extra="forbid")

    name: ItemName = None  # type: ignore[valid-type, assignment]
    description: Description | None = None  # type: ignore[valid-type]
    quantity: NonNegativeCount = None  # type: ignore[assignment]
    price: NonNegativeAmount = None  # type: ignore[assignment]

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)


class ItemOut(BaseModel):
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


class ItemQuery(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=2_147_483_647)
    sort: str = Field(default="id", description="column, '-' prefix for descending")
    name: str | None = Field(default=None, max_length=200, description="contains, any case")

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
