"""Every table's model, imported in one place for Alembic and the schema check."""

from typing import Any

from service.articles.models import Article, Comment, Favorite, Tag, article_tags
from service.db import Base
from service.exports.models import Export, ExportChunk
from service.items.models import Item
from service.products.models import Product
from service.todos.models import Todo
from service.users.models import Follow, RevokedToken, User

metadata = Base.metadata

# PostgreSQL-only indexes made by hand in the migrations (trigram search); the models
# do not declare them, so the models-vs-migrations check must not count them.
POSTGRES_ONLY_INDEX_SUFFIX = "_trgm"


def include_in_autogenerate(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return not (type_ == "index" and name is not None and name.endswith(POSTGRES_ONLY_INDEX_SUFFIX))


__all__ = [
    "Article",
    "Comment",
    "Export",
    "ExportChunk",
    "Favorite",
    "Follow",
    "Item",
    "Product",
    "RevokedToken",
    "Tag",
    "Todo",
    "User",
    "article_tags",
    "include_in_autogenerate",
    "metadata",
]
