from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, RootModel

from service.fields import NonNegativeAmount, UTCDateTime, text_field

ProductName = text_field(200, min_length=1)
CategoryName = text_field(100, min_length=1)


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ProductName  # type: ignore[valid-type]
    price: NonNegativeAmount
    category: CategoryName  # type: ignore[valid-type]


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    price: float
    category: str
    created_at: UTCDateTime


class ProductList(RootModel[list[ProductOut]]):
    """The products, in id order."""


class ProductQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=2_147_483_647)
