from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

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


async def list_products(session: AsyncSession, *, limit: int, offset: int) -> Sequence[Product]:
    statement = select(Product).order_by(Product.id).limit(limit).offset(offset)
    return (await session.scalars(statement)).all()


async def get_product(session: AsyncSession, product_id: int) -> Product | None:
    return await session.get(Product, product_id)


async def create_product(
    session: AsyncSession, *, name: str, price: float, category: str
) -> Product:
    product = Product(name=name, price=price, category=category)
    session.add(product)
    await session.flush()
    return product


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
