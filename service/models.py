"""Every table's model, imported in one place for Alembic and the schema check."""

from service.db import Base
from service.items.models import Item
from service.products.models import Product

metadata = Base.metadata

__all__ = ["Item", "Product", "metadata"]
