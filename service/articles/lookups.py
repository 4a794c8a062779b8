"""Find-or-404 for the article and comment routes.

Not in queries.py, which knows nothing of HTTP; not in routes.py, so the comment routes
use it without importing another route module.
"""

from __future__ import annotations

from service.articles import queries
from service.articles.models import Article
from service.db import get_session
from service.errors import NotFound


async def find_article(slug: str) -> Article:
    article = await queries.get_article(get_session(), slug)
    if article is None:
        raise NotFound(f"article {slug!r} not found")
    return article
