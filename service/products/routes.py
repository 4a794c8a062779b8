from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from service.db import get_session
from service.errors import NotFound
from service.products import queries
from service.products.schemas import ProductCreate, ProductOut, ProductQuery

blueprint = Blueprint("products", __name__)


@blueprint.get("/products")
@validate_querystring(ProductQuery)
@validate_response(list[ProductOut])
async def list_products(query_args: ProductQuery) -> list[ProductOut]:
    products = await queries.list_products(
        get_session(), limit=query_args.limit, offset=query_args.offset
    )
    return [ProductOut.model_validate(product) for product in products]


@blueprint.get("/products/<id:product_id>")
@validate_response(ProductOut)
async def get_product(product_id: int) -> ProductOut:
    product = await queries.get_product(get_session(), product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    return ProductOut.model_validate(product)


@blueprint.post("/products")
@validate_request(ProductCreate)
@validate_response(ProductOut, 201)
async def create_product(data: ProductCreate) -> tuple[ProductOut, int, dict[str, str]]:
    session = get_session()
    product = await queries.create_product(session, **data.model_dump())
    await session.commit()
    return ProductOut.model_validate(product), 201, {"Location": f"/products/{product.id}"}
