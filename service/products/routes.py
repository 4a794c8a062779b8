from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response
from werkzeug.datastructures import Headers

from service.db import reading, writing_one_statement
from service.errors import NotFound
from service.products import queries
from service.products.schemas import ProductCreate, ProductList, ProductOut, ProductQuery

blueprint = Blueprint("products", __name__)


@blueprint.get("/products")
@validate_querystring(ProductQuery)
@validate_response(ProductList)  # a model: quart-schema builds no TypeAdapter per request
async def list_products(query_args: ProductQuery) -> ProductList:
    async with reading() as connection:
        products = await queries.list_products(
            connection, limit=query_args.limit, offset=query_args.offset
        )
    return ProductList.model_validate(products)


@blueprint.get("/products/<id:product_id>")
@validate_response(ProductOut)
async def get_product(product_id: int) -> ProductOut:
    async with reading() as connection:
        product = await queries.get_product(connection, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    return ProductOut.model_validate(product)


@blueprint.post("/products")
@validate_request(ProductCreate)
@validate_response(ProductOut, 201)
async def create_product(data: ProductCreate) -> tuple[ProductOut, int, Headers]:
    async with writing_one_statement() as connection:
        product = await queries.create_product(connection, **data.model_dump())
    # Headers, not a dict: quart-schema would build a pydantic TypeAdapter to dump a dict.
    location = Headers({"Location": f"/products/{product['id']}"})
    return ProductOut.model_validate(product), 201, location
