from __future__ import annotations

from sqlalchemy import Integer, RowMapping, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.db import utc_now
from service.products.models import Product

SAMPLE_PRODUCTS: tuple[tuple[str, float, str], ...] = (
    ('MacBook Pro 16"', 2899.99, "Ordinateurs"),
    ("Dell XPS 13", 1499.00, "Ordinateurs"),
    ("iPhone 15 Pro", 1229.00, "Smartphones"),
    ("Samsung Galaxy S24", 899.99, "Smartphones"),
    ("iPad Air", 769.00, "Tablettes"),
    ("Sony WH-1000XM5", 379.99, "Audio"),
    ("AirPods Pro", 279.00, "Audio"),
    ('LG UltraFine 27" 4K', 699.00, "Ecrans"),
    ("Logitech MX Master 3S", 119.99, "Peripheriques"),
    ("Clavier Keychron K2", 99.00, "Peripheriques"),
)


# The hot paths use SQLAlchemy Core on the table: rows, not ORM objects (no identity map,
# no unit of work), and statements built once with bound parameters, so each request
# skips building the expression and its cache key (bench/RESULTS.md has the figures).
products = Product.__table__
_LIST = (
    select(products)
    .order_by(products.c.id)
    .limit(bindparam("limit", type_=Integer))
    .offset(bindparam("offset", type_=Integer))
)
_ONE = select(products).where(products.c.id == bindparam("id", type_=Integer))
_INSERT = insert(products).returning(*products.c)


async def list_products(connection: AsyncConnection, *, limit: int, offset: int) -> list[dict]:
    result = await connection.execute(_LIST, {"limit": limit, "offset": offset})
    # Plain dicts: pydantic validates them several times faster than row mappings.
    return [dict(row) for row in result.mappings()]


async def get_product(connection: AsyncConnection, product_id: int) -> RowMapping | None:
    return (await connection.execute(_ONE, {"id": product_id})).mappings().first()


async def create_product(
    connection: AsyncConnection, *, name: str, price: float, category: str
) -> RowMapping:
    values = {"name": name, "price": price, "category": category, "created_at": utc_now()}
    return (await connection.execute(_INSERT, values)).mappings().one()


async def seed_sample_products(session: AsyncSession) -> int:
    """Insert the 10 sample products into an empty table; return how many were inserted."""
    if await session.scalar(select(func.count()).select_from(Product)):
        return 0
    session.add_all(
        Product(name=name, price=price, category=category)
        for name, price, category in SAMPLE_PRODUCTS
    )
    await session.flush()
    return len(SAMPLE_PRODUCTS)
