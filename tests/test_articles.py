"""Articles, favorites, comments and tags: the RealWorld (Conduit) API and the articles seed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.articles.models import Article, Comment, Favorite, Tag, article_tags
from service.users.models import User
from tests.factories import auth_headers, favorite, follow_user, make_article, make_user

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ARTICLE_KEYS = {
    "slug",
    "title",
    "description",
    "body",
    "tagList",
    "createdAt",
    "updatedAt",
    "favorited",
    "favoritesCount",
    "author",
}
PROFILE_KEYS = {"username", "bio", "image", "following"}
COMMENT_KEYS = {"id", "createdAt", "updatedAt", "body", "author"}
DAY_ONE = datetime(2024, 1, 1, tzinfo=UTC)


def day(number: int) -> datetime:
    return DAY_ONE + timedelta(days=number)


def new_article(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": "How to train your dragon",
        "description": "Ever wonder how?",
        "body": "You have to believe",
        "tagList": ["dragons", "training"],
    }
    values.update(fields)
    return values


async def post_article(client: QuartClient, app: Quart, user: User, **fields: Any) -> Any:
    response = await client.post(
        "/api/articles", json={"article": new_article(**fields)}, headers=auth_headers(app, user)
    )
    assert response.status_code == 201, await response.get_data()
    return (await response.get_json())["article"]


async def count_rows(session: AsyncSession, table: Any, *where: Any) -> int:
    return await session.scalar(select(func.count()).select_from(table).where(*where)) or 0


async def stored_article(session: AsyncSession, article_id: int) -> Article | None:
    """The row as it is now in the database (the session's copy may be stale)."""
    return await session.scalar(
        select(Article).where(Article.id == article_id).execution_options(populate_existing=True)
    )


async def tag_names(session: AsyncSession, article_id: int) -> list[str]:
    rows = await session.scalars(
        select(Tag.name)
        .join(article_tags, article_tags.c.tag_id == Tag.id)
        .where(article_tags.c.article_id == article_id)
        .order_by(Tag.name)
    )
    return list(rows)


async def add_comment(
    session: AsyncSession, article: Article, author: User, body: str = "a comment", **fields: Any
) -> Comment:
    comment = Comment(article_id=article.id, author_id=author.id, body=body, **fields)
    session.add(comment)
    await session.commit()
    return comment


async def list_articles(client: QuartClient, headers: Any = None, **query: Any) -> Any:
    response = await client.get("/api/articles", query_string=query, headers=headers or {})
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()


async def send(
    client: QuartClient, method: str, url: str, body: Any = None, headers: Any = None
) -> Any:
    """A request with a JSON body only when there is one (json=None would send `null`)."""
    extra = {} if body is None else {"json": body}
    return await client.open(url, method=method, headers=headers or {}, **extra)


def titles(body: Any) -> list[str]:
    return [article["title"] for article in body["articles"]]


# --- create -------------------------------------------------------------------------------


async def test_create_article_returns_the_article_envelope(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session, username="jake", bio="I work at statefarm")

    response = await client.post(
        "/api/articles",
        json={"article": new_article(tagList=["training", "dragons", "training"])},
        headers=auth_headers(app, author),
    )

    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == {"article"}
    article = body["article"]
    assert set(article) == ARTICLE_KEYS
    assert article["title"] == "How to train your dragon"
    assert article["description"] == "Ever wonder how?"
    assert article["body"] == "You have to believe"
    assert article["tagList"] == ["dragons", "training"]
    assert article["favorited"] is False
    assert type(article["favoritesCount"]) is int and article["favoritesCount"] == 0
    assert TIMESTAMP.match(article["createdAt"]) and TIMESTAMP.match(article["updatedAt"])
    assert article["createdAt"] == article["updatedAt"]
    assert article["author"] == {
        "username": "jake",
        "bio": "I work at statefarm",
        "image": None,
        "following": False,
    }
    stored = await session.scalar(select(Article).where(Article.slug == article["slug"]))
    assert stored is not None and stored.author_id == author.id
    assert stored.created_at == stored.updated_at
    assert await tag_names(session, stored.id) == ["dragons", "training"]


async def test_create_article_on_the_seed_route_with_a_flat_body(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)

    response = await client.post(
        "/api/articles/", json=new_article(tagList=["seed"]), headers=auth_headers(app, author)
    )

    assert response.status_code == 201
    article = (await response.get_json())["article"]
    assert set(article) == ARTICLE_KEYS
    assert article["title"] == "How to train your dragon" and article["tagList"] == ["seed"]
    assert await count_rows(session, Article, Article.author_id == author.id) == 1


async def test_create_article_without_token_is_401_and_writes_nothing(
    client: QuartClient, session: AsyncSession
) -> None:
    response = await client.post("/api/articles", json={"article": new_article()})

    assert response.status_code == 401
    assert set((await response.get_json())["errors"]) == {"body"}
    assert await count_rows(session, Article) == 0
    assert await count_rows(session, Tag) == 0


@pytest.mark.parametrize(
    ("fields", "offending"),
    [
        ({"title": None}, "title"),
        ({"body": ""}, "body"),
        ({"tagList": "dragons"}, "tagList"),
        ({"tagList": ["ok", "x" * 101]}, "tagList"),
    ],
    ids=["missing-title", "empty-body", "tagList-not-a-list", "tag-of-101-chars"],
)
async def test_invalid_article_is_422_per_field_and_writes_nothing(
    app: Quart,
    client: QuartClient,
    session: AsyncSession,
    fields: dict[str, Any],
    offending: str,
) -> None:
    author = await make_user(session)
    article = {key: value for key, value in new_article(**fields).items() if value is not None}

    response = await client.post(
        "/api/articles", json={"article": article}, headers=auth_headers(app, author)
    )

    assert response.status_code == 422
    errors = (await response.get_json())["errors"]
    assert set(errors) == {"body", offending}
    assert any(message.startswith((f"{offending} ", f"{offending}.")) for message in errors["body"])
    assert await count_rows(session, Article) == 0
    assert await count_rows(session, Tag) == 0


# --- slugs --------------------------------------------------------------------------------


async def test_slug_of_an_accented_title_is_readable_ascii(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)

    article = await post_article(client, app, author, title="Héllo Wörld")

    assert article["slug"].startswith("hello-world")
    assert article["slug"].isascii()


@pytest.mark.parametrize("title", ["中文标题", "😀🎉"], ids=["chinese", "emoji-only"])
async def test_slug_of_a_non_latin_title_is_non_empty_ascii(
    app: Quart, client: QuartClient, session: AsyncSession, title: str
) -> None:
    author = await make_user(session)

    article = await post_article(client, app, author, title=title)

    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", article["slug"])
    response = await client.get(f"/api/articles/{article['slug']}")
    assert (await response.get_json())["article"]["title"] == title


async def test_the_same_title_twice_gives_different_slugs(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    first_author = await make_user(session)
    second_author = await make_user(session)

    slugs = [
        (await post_article(client, app, first_author, title="Same title"))["slug"],
        (await post_article(client, app, first_author, title="Same title"))["slug"],
        (await post_article(client, app, second_author, title="Same title"))["slug"],
    ]

    assert len(set(slugs)) == 3
    assert all(slug.startswith("same-title") for slug in slugs)


async def test_a_slug_is_not_reused_after_deletion(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    first = await post_article(client, app, author, title="Phoenix")
    deleted = await client.delete(
        f"/api/articles/{first['slug']}", headers=auth_headers(app, author)
    )
    assert deleted.status_code == 204

    second = await post_article(client, app, author, title="Phoenix")

    assert second["slug"] != first["slug"]
    assert (await client.get(f"/api/articles/{first['slug']}")).status_code == 404


async def test_changing_the_title_changes_the_slug(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    article = await make_article(session, author, title="Old title")
    old_slug = article.slug

    response = await client.put(
        f"/api/articles/{old_slug}",
        json={"article": {"title": "New title"}},
        headers=auth_headers(app, author),
    )

    assert response.status_code == 200
    new_slug = (await response.get_json())["article"]["slug"]
    assert new_slug != old_slug and new_slug.startswith("new-title")
    assert (await client.get(f"/api/articles/{old_slug}")).status_code == 404
    fetched = await client.get(f"/api/articles/{new_slug}")
    assert (await fetched.get_json())["article"]["title"] == "New title"
    stored = await stored_article(session, article.id)
    assert stored is not None and stored.slug == new_slug


@pytest.mark.parametrize(
    "changes",
    [{"body": "Another body"}, {"title": "Kept title", "body": "Another body"}],
    ids=["title-not-sent", "same-title-sent"],
)
async def test_an_update_that_keeps_the_title_keeps_the_slug(
    app: Quart, client: QuartClient, session: AsyncSession, changes: dict[str, str]
) -> None:
    author = await make_user(session)
    article = await make_article(session, author, title="Kept title")
    slug = article.slug

    response = await client.put(
        f"/api/articles/{slug}", json={"article": changes}, headers=auth_headers(app, author)
    )

    assert response.status_code == 200
    assert (await response.get_json())["article"]["slug"] == slug
    stored = await stored_article(session, article.id)
    assert stored is not None and stored.slug == slug and stored.body == "Another body"


# --- get ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"], ids=["no-slash", "trailing-slash"])
async def test_get_article_anonymously(
    client: QuartClient, session: AsyncSession, suffix: str
) -> None:
    author = await make_user(session, username="celeb")
    reader = await make_user(session)
    article = await make_article(session, author, tags=["b", "a"], title="Read me", body="Text")
    await favorite(session, reader, article)
    await follow_user(session, reader, author)

    response = await client.get(f"/api/articles/{article.slug}{suffix}")

    assert response.status_code == 200
    body = (await response.get_json())["article"]
    assert set(body) == ARTICLE_KEYS
    assert body["slug"] == article.slug and body["title"] == "Read me" and body["body"] == "Text"
    assert body["tagList"] == ["a", "b"]
    assert body["favorited"] is False and body["favoritesCount"] == 1
    assert body["author"] == {"username": "celeb", "bio": None, "image": None, "following": False}


async def test_get_article_as_a_follower_who_favorited_it(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    reader = await make_user(session)
    article = await make_article(session, author)
    await favorite(session, reader, article)
    await follow_user(session, reader, author)

    response = await client.get(f"/api/articles/{article.slug}", headers=auth_headers(app, reader))

    body = (await response.get_json())["article"]
    assert body["favorited"] is True and body["favoritesCount"] == 1
    assert body["author"]["following"] is True


async def test_unknown_slug_is_404_in_the_realworld_shape(client: QuartClient) -> None:
    response = await client.get("/api/articles/no-such-article-1")

    assert response.status_code == 404
    body = await response.get_json()
    assert set(body) == {"errors"} and set(body["errors"]) == {"body"}
    assert body["errors"]["body"] and all(isinstance(m, str) for m in body["errors"]["body"])


# --- update -------------------------------------------------------------------------------


async def test_author_updates_only_the_given_fields(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    article = await make_article(
        session,
        author,
        tags=["keep"],
        title="Title",
        description="Old description",
        body="Body",
        created_at=DAY_ONE,
        updated_at=DAY_ONE,
    )

    response = await client.put(
        f"/api/articles/{article.slug}",
        json={"article": {"description": "New description"}},
        headers=auth_headers(app, author),
    )

    assert response.status_code == 200
    body = (await response.get_json())["article"]
    assert set(body) == ARTICLE_KEYS
    assert (body["title"], body["description"], body["body"], body["tagList"]) == (
        "Title",
        "New description",
        "Body",
        ["keep"],
    )
    assert body["createdAt"] == "2024-01-01T00:00:00.000Z"
    assert TIMESTAMP.match(body["updatedAt"]) and body["updatedAt"] > body["createdAt"]
    stored = await stored_article(session, article.id)
    assert stored is not None
    assert (stored.title, stored.description, stored.body) == ("Title", "New description", "Body")
    assert stored.created_at == DAY_ONE and stored.updated_at > DAY_ONE


async def test_author_changes_every_field_and_the_tags_are_replaced(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    article = await make_article(session, author, tags=["old", "shared"])
    changes = {"title": "T2", "description": "D2", "body": "B2", "tagList": ["shared", "new"]}

    response = await client.put(
        f"/api/articles/{article.slug}",
        json={"article": changes},
        headers=auth_headers(app, author),
    )

    assert response.status_code == 200
    body = (await response.get_json())["article"]
    assert (body["title"], body["description"], body["body"]) == ("T2", "D2", "B2")
    assert body["tagList"] == ["new", "shared"]
    assert await tag_names(session, article.id) == ["new", "shared"]


async def test_updating_only_the_tags_moves_updated_at(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    article = await make_article(
        session, author, tags=["old"], created_at=DAY_ONE, updated_at=DAY_ONE
    )

    response = await client.put(
        f"/api/articles/{article.slug}",
        json={"article": {"tagList": ["new"]}},
        headers=auth_headers(app, author),
    )

    body = (await response.get_json())["article"]
    assert body["tagList"] == ["new"]
    assert body["updatedAt"] > "2024-01-01T00:00:00.000Z"


async def test_another_user_cannot_update_and_nothing_changes(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    intruder = await make_user(session)
    article = await make_article(session, author, tags=["mine"], title="Mine")

    response = await client.put(
        f"/api/articles/{article.slug}",
        json={"article": {"title": "Stolen", "tagList": ["theirs"]}},
        headers=auth_headers(app, intruder),
    )

    assert response.status_code == 403
    assert set((await response.get_json())["errors"]) == {"body"}
    stored = await stored_article(session, article.id)
    assert stored is not None and stored.title == "Mine" and stored.slug == article.slug
    assert await tag_names(session, article.id) == ["mine"]


async def test_update_of_an_unknown_slug_is_404(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.put(
        "/api/articles/nope-1", json={"article": {"title": "x"}}, headers=auth_headers(app, user)
    )

    assert response.status_code == 404
    assert set((await response.get_json())["errors"]) == {"body"}


# --- delete -------------------------------------------------------------------------------


async def test_author_deletes_the_article_with_its_comments_favorites_and_tags(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    reader = await make_user(session)
    doomed = await make_article(session, author, tags=["gone", "shared"])
    kept = await make_article(session, author, tags=["shared"])
    for article in (doomed, kept):
        await favorite(session, reader, article)
        await add_comment(session, article, reader)

    response = await client.delete(
        f"/api/articles/{doomed.slug}", headers=auth_headers(app, author)
    )

    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await stored_article(session, doomed.id) is None
    assert await count_rows(session, Comment, Comment.article_id == doomed.id) == 0
    assert await count_rows(session, Favorite, Favorite.article_id == doomed.id) == 0
    assert await count_rows(session, article_tags, article_tags.c.article_id == doomed.id) == 0
    assert await count_rows(session, Comment, Comment.article_id == kept.id) == 1
    assert await count_rows(session, Favorite, Favorite.article_id == kept.id) == 1
    assert await tag_names(session, kept.id) == ["shared"]


async def test_another_user_cannot_delete_and_the_article_stays(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    intruder = await make_user(session)
    article = await make_article(session, author, tags=["t"])
    await add_comment(session, article, author)

    response = await client.delete(
        f"/api/articles/{article.slug}", headers=auth_headers(app, intruder)
    )

    assert response.status_code == 403
    assert await stored_article(session, article.id) is not None
    assert await count_rows(session, Comment, Comment.article_id == article.id) == 1
    assert await tag_names(session, article.id) == ["t"]


async def test_delete_of_an_unknown_slug_is_404(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.delete("/api/articles/nope-1", headers=auth_headers(app, user))

    assert response.status_code == 404
    assert set((await response.get_json())["errors"]) == {"body"}


# --- list ---------------------------------------------------------------------------------


async def test_list_is_newest_first_without_bodies(
    client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    for title, when in [("middle", day(2)), ("newest", day(3)), ("oldest", day(1))]:
        await make_article(session, author, title=title, created_at=when)

    body = await list_articles(client)

    assert set(body) == {"articles", "articlesCount"}
    assert titles(body) == ["newest", "middle", "oldest"]
    assert body["articlesCount"] == 3
    for item in body["articles"]:
        assert set(item) == ARTICLE_KEYS - {"body"}
        assert TIMESTAMP.match(item["createdAt"]) and TIMESTAMP.match(item["updatedAt"])
    assert body["articles"][0]["createdAt"] == "2024-01-04T00:00:00.000Z"


async def test_articles_count_is_the_total_not_the_page_size(
    client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    for number in range(25):
        await make_article(session, author, created_at=day(number))

    page = await list_articles(client, limit=10)
    default = await list_articles(client)

    assert len(page["articles"]) == 10 and page["articlesCount"] == 25
    assert len(default["articles"]) == 20 and default["articlesCount"] == 25


async def test_limit_and_offset_pages_do_not_overlap(
    client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    made = [await make_article(session, author, created_at=day(n)) for n in range(25)]

    pages = [await list_articles(client, limit=10, offset=offset) for offset in (0, 10, 20)]

    slugs = [[item["slug"] for item in page["articles"]] for page in pages]
    assert [len(page) for page in slugs] == [10, 10, 5]
    assert [slug for page in slugs for slug in page] == [a.slug for a in reversed(made)]
    assert all(page["articlesCount"] == 25 for page in pages)


@dataclass
class Library:
    """Two authors, tags and favorites to filter on."""

    alice: User
    bob: User
    carol: User


async def make_library(session: AsyncSession) -> Library:
    alice = await make_user(session, username="alice")
    bob = await make_user(session, username="bob")
    carol = await make_user(session, username="carol")
    a1 = await make_article(session, alice, tags=["python"], title="a1", created_at=day(1))
    a2 = await make_article(session, alice, tags=["rust"], title="a2", created_at=day(2))
    b1 = await make_article(session, bob, tags=["python"], title="b1", created_at=day(3))
    b2 = await make_article(session, bob, tags=["python", "rust"], title="b2", created_at=day(4))
    # carol favorites a1, b2; bob favorites a2 (and his own b1 is favorited by alice).
    await favorite(session, carol, a1)
    await favorite(session, carol, b2)
    await favorite(session, bob, a2)
    await favorite(session, alice, b1)
    return Library(alice, bob, carol)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"tag": "python"}, ["b2", "b1", "a1"]),
        ({"author": "alice"}, ["a2", "a1"]),
        ({"favorited": "carol"}, ["b2", "a1"]),
        ({"favorited": "bob"}, ["a2"]),
        ({"tag": "rust", "author": "bob"}, ["b2"]),
        ({"author": "alice", "favorited": "carol"}, ["a1"]),
        ({"tag": "python", "favorited": "carol"}, ["b2", "a1"]),
        ({"tag": "rust", "author": "alice", "favorited": "bob"}, ["a2"]),
    ],
    ids=[
        "tag",
        "author",
        "favorited",
        "favorited-by-an-author",
        "tag+author",
        "author+favorited",
        "tag+favorited",
        "all-three",
    ],
)
async def test_list_filters(
    client: QuartClient, session: AsyncSession, query: dict[str, str], expected: list[str]
) -> None:
    await make_library(session)

    body = await list_articles(client, **query)

    assert titles(body) == expected
    assert body["articlesCount"] == len(expected)


@pytest.mark.parametrize("name", ["tag", "author", "favorited"])
async def test_a_filter_naming_nobody_gives_an_empty_list(
    client: QuartClient, session: AsyncSession, name: str
) -> None:
    await make_library(session)

    body = await list_articles(client, **{name: "nobody"})

    assert body == {"articles": [], "articlesCount": 0}


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"), ({"offset": "-1"}, "offset")],
)
async def test_bad_paging_is_422_in_the_realworld_shape(
    client: QuartClient, query: dict[str, str], field: str
) -> None:
    response = await client.get("/api/articles", query_string=query)

    assert response.status_code == 422
    body = await response.get_json()
    assert set(body) == {"errors"} and set(body["errors"]) == {"body", field}


async def make_haystack(session: AsyncSession) -> None:
    author = await make_user(session)
    await make_article(session, author, title="A NeEdLe in the title", created_at=day(1))
    await make_article(
        session, author, description="needle in the description", tags=["t"], created_at=day(2)
    )
    await make_article(
        session, author, body="The body hides a NEEDLE", tags=["t"], created_at=day(3)
    )
    await make_article(session, author, title="hay", description="hay", body="hay")


async def test_search_is_case_insensitive_over_title_description_and_body(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_haystack(session)

    body = await list_articles(client, search="nEEdle")

    assert body["articlesCount"] == 3
    assert [item["createdAt"][:10] for item in body["articles"]] == [
        "2024-01-04",
        "2024-01-03",
        "2024-01-02",
    ]


@pytest.mark.parametrize(
    ("term", "matching", "not_matching"),
    [("50%", "Save 50% now", "Save 50 now"), ("a_b", "a_b rule", "axb rule")],
    ids=["percent", "underscore"],
)
async def test_search_wildcards_are_literal(
    client: QuartClient, session: AsyncSession, term: str, matching: str, not_matching: str
) -> None:
    author = await make_user(session)
    await make_article(session, author, title=matching)
    await make_article(session, author, title=not_matching)

    body = await list_articles(client, search=term)

    assert titles(body) == [matching]
    assert body["articlesCount"] == 1


async def test_search_combines_with_tag_and_paging(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_haystack(session)

    tagged = await list_articles(client, search="needle", tag="t")
    paged = await list_articles(client, search="needle", limit=1, offset=1)

    assert tagged["articlesCount"] == 2
    assert [item["createdAt"][:10] for item in tagged["articles"]] == ["2024-01-04", "2024-01-03"]
    assert paged["articlesCount"] == 3
    assert [item["createdAt"][:10] for item in paged["articles"]] == ["2024-01-03"]


async def test_seed_search_route_with_a_trailing_slash(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_haystack(session)

    response = await client.get("/api/articles/", query_string={"search": "NEEDLE"})

    assert response.status_code == 200
    assert (await response.get_json())["articlesCount"] == 3


# --- feed ---------------------------------------------------------------------------------


async def make_feed(session: AsyncSession) -> tuple[User, list[str]]:
    """A reader following two authors; returns the reader and the feed's titles, newest first."""
    reader = await make_user(session)
    followed = [await make_user(session), await make_user(session)]
    stranger = await make_user(session)
    for user in followed:
        await follow_user(session, reader, user)
    await make_article(session, followed[0], title="f0-old", created_at=day(1))
    await make_article(session, followed[1], title="f1", created_at=day(2))
    await make_article(session, stranger, title="stranger", created_at=day(3))
    await make_article(session, reader, title="own", created_at=day(4))
    await make_article(session, followed[0], title="f0-new", created_at=day(5))
    return reader, ["f0-new", "f1", "f0-old"]


async def test_feed_lists_followed_authors_newest_first(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    reader, expected = await make_feed(session)

    response = await client.get("/api/articles/feed", headers=auth_headers(app, reader))

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"articles", "articlesCount"}
    assert titles(body) == expected and body["articlesCount"] == 3
    assert all(item["author"]["following"] is True for item in body["articles"])
    assert all("body" not in item for item in body["articles"])


async def test_feed_pages_with_limit_and_offset(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    reader, expected = await make_feed(session)

    response = await client.get(
        "/api/articles/feed",
        query_string={"limit": 1, "offset": 1},
        headers=auth_headers(app, reader),
    )

    body = await response.get_json()
    assert titles(body) == expected[1:2] and body["articlesCount"] == 3


async def test_feed_without_token_is_401(client: QuartClient) -> None:
    response = await client.get("/api/articles/feed")

    assert response.status_code == 401
    assert set((await response.get_json())["errors"]) == {"body"}


# --- favorites ----------------------------------------------------------------------------


async def test_favorite_an_article(app: Quart, client: QuartClient, session: AsyncSession) -> None:
    author = await make_user(session)
    reader = await make_user(session)
    article = await make_article(session, author)

    response = await client.post(
        f"/api/articles/{article.slug}/favorite", headers=auth_headers(app, reader)
    )

    assert response.status_code == 200
    body = (await response.get_json())["article"]
    assert set(body) == ARTICLE_KEYS
    assert body["favorited"] is True and body["favoritesCount"] == 1
    assert await count_rows(session, Favorite, Favorite.article_id == article.id) == 1
    assert await count_rows(session, Favorite, Favorite.user_id == reader.id) == 1


async def test_favoriting_twice_keeps_one_row(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    reader = await make_user(session)
    article = await make_article(session, await make_user(session))
    url = f"/api/articles/{article.slug}/favorite"

    await client.post(url, headers=auth_headers(app, reader))
    response = await client.post(url, headers=auth_headers(app, reader))

    assert response.status_code == 200
    body = (await response.get_json())["article"]
    assert body["favorited"] is True and body["favoritesCount"] == 1
    assert await count_rows(session, Favorite, Favorite.article_id == article.id) == 1


async def test_favorites_are_counted_and_shown_per_viewer(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    first = await make_user(session)
    second = await make_user(session)
    onlooker = await make_user(session)
    liked = await make_article(session, author, title="liked", created_at=day(2))
    await make_article(session, author, title="other", created_at=day(1))
    await favorite(session, first, liked)

    response = await client.post(
        f"/api/articles/{liked.slug}/favorite", headers=auth_headers(app, second)
    )

    body = (await response.get_json())["article"]
    assert body["favorited"] is True and body["favoritesCount"] == 2
    first_view = await list_articles(client, headers=auth_headers(app, first))
    assert [(i["title"], i["favorited"], i["favoritesCount"]) for i in first_view["articles"]] == [
        ("liked", True, 2),
        ("other", False, 0),
    ]
    onlooker_view = await list_articles(client, headers=auth_headers(app, onlooker))
    assert [i["favorited"] for i in onlooker_view["articles"]] == [False, False]
    assert onlooker_view["articles"][0]["favoritesCount"] == 2


async def test_unfavorite_an_article(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    reader = await make_user(session)
    other = await make_user(session)
    article = await make_article(session, author)
    await favorite(session, reader, article)
    await favorite(session, other, article)

    response = await client.delete(
        f"/api/articles/{article.slug}/favorite", headers=auth_headers(app, reader)
    )

    assert response.status_code == 200
    body = (await response.get_json())["article"]
    assert body["favorited"] is False and body["favoritesCount"] == 1
    assert await count_rows(session, Favorite, Favorite.user_id == reader.id) == 0
    assert await count_rows(session, Favorite, Favorite.user_id == other.id) == 1


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_favorite_of_an_unknown_slug_is_404(
    app: Quart, client: QuartClient, session: AsyncSession, method: str
) -> None:
    user = await make_user(session)

    response = await client.open(
        "/api/articles/nope-1/favorite", method=method, headers=auth_headers(app, user)
    )

    assert response.status_code == 404
    assert set((await response.get_json())["errors"]) == {"body"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/articles/{slug}/favorite", 200),
        ("DELETE", "/api/articles/{slug}/favorite", 200),
        ("GET", "/api/articles", 200),
    ],
)
async def test_an_empty_json_body_is_accepted(
    app: Quart, client: QuartClient, session: AsyncSession, method: str, path: str, status: int
) -> None:
    user = await make_user(session)
    article = await make_article(session, user)
    headers = {**auth_headers(app, user), "Content-Type": "application/json"}

    response = await client.open(
        path.format(slug=article.slug), method=method, headers=headers, data=b""
    )

    assert response.status_code == status, await response.get_data()
    assert "errors" not in await response.get_json()


# --- comments -----------------------------------------------------------------------------


async def test_add_a_comment(app: Quart, client: QuartClient, session: AsyncSession) -> None:
    author = await make_user(session)
    commenter = await make_user(session, username="commenter", bio="hi")
    article = await make_article(session, author)

    response = await client.post(
        f"/api/articles/{article.slug}/comments",
        json={"comment": {"body": "Thank you so much!"}},
        headers=auth_headers(app, commenter),
    )

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"comment"}
    comment = body["comment"]
    assert set(comment) == COMMENT_KEYS
    assert type(comment["id"]) is int and comment["body"] == "Thank you so much!"
    assert TIMESTAMP.match(comment["createdAt"]) and TIMESTAMP.match(comment["updatedAt"])
    assert comment["author"] == {
        "username": "commenter",
        "bio": "hi",
        "image": None,
        "following": False,
    }
    stored = await session.get(Comment, comment["id"])
    assert stored is not None
    assert (stored.article_id, stored.author_id, stored.body) == (
        article.id,
        commenter.id,
        "Thank you so much!",
    )


async def test_comments_are_listed_oldest_first_with_following_for_the_caller(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    followed = await make_user(session, username="followed")
    unfollowed = await make_user(session, username="unfollowed")
    reader = await make_user(session)
    await follow_user(session, reader, followed)
    article = await make_article(session, author)
    # Inserted newest first, so an id order would be the wrong order.
    await add_comment(session, article, followed, "second", created_at=day(2))
    await add_comment(session, article, unfollowed, "first", created_at=day(1))
    await add_comment(session, await make_article(session, author), followed, "elsewhere")

    response = await client.get(
        f"/api/articles/{article.slug}/comments", headers=auth_headers(app, reader)
    )
    anonymous = await client.get(f"/api/articles/{article.slug}/comments")

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"comments"}
    assert all(set(comment) == COMMENT_KEYS for comment in body["comments"])
    assert [
        (c["body"], c["author"]["username"], c["author"]["following"]) for c in body["comments"]
    ] == [
        ("first", "unfollowed", False),
        ("second", "followed", True),
    ]
    anonymous_comments = (await anonymous.get_json())["comments"]
    assert [c["author"]["following"] for c in anonymous_comments] == [False, False]


async def test_the_author_of_a_comment_deletes_it(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    article = await make_article(session, await make_user(session))
    commenter = await make_user(session)
    comment = await add_comment(session, article, commenter)
    other = await add_comment(session, article, commenter)

    response = await client.delete(
        f"/api/articles/{article.slug}/comments/{comment.id}", headers=auth_headers(app, commenter)
    )

    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await count_rows(session, Comment, Comment.id == comment.id) == 0
    assert await count_rows(session, Comment, Comment.id == other.id) == 1


async def test_the_article_author_cannot_delete_someone_elses_comment(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    article = await make_article(session, author)
    comment = await add_comment(session, article, await make_user(session))

    response = await client.delete(
        f"/api/articles/{article.slug}/comments/{comment.id}", headers=auth_headers(app, author)
    )

    assert response.status_code == 403
    assert await count_rows(session, Comment, Comment.id == comment.id) == 1


@pytest.mark.parametrize("which", ["unknown-id", "id-of-another-article"])
async def test_deleting_a_comment_that_is_not_on_the_article_is_404(
    app: Quart, client: QuartClient, session: AsyncSession, which: str
) -> None:
    commenter = await make_user(session)
    article = await make_article(session, commenter)
    elsewhere = await add_comment(session, await make_article(session, commenter), commenter)
    comment_id = elsewhere.id if which == "id-of-another-article" else elsewhere.id + 1000

    response = await client.delete(
        f"/api/articles/{article.slug}/comments/{comment_id}", headers=auth_headers(app, commenter)
    )

    assert response.status_code == 404
    assert set((await response.get_json())["errors"]) == {"body"}
    assert await count_rows(session, Comment, Comment.id == elsewhere.id) == 1


async def test_an_empty_comment_is_422(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    article = await make_article(session, user)

    response = await client.post(
        f"/api/articles/{article.slug}/comments",
        json={"comment": {"body": ""}},
        headers=auth_headers(app, user),
    )

    assert response.status_code == 422
    errors = (await response.get_json())["errors"]
    assert set(errors) == {"body"}
    assert any(message.startswith("body ") for message in errors["body"])
    assert await count_rows(session, Comment) == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_comments_of_an_unknown_article_are_404(
    app: Quart, client: QuartClient, session: AsyncSession, method: str
) -> None:
    user = await make_user(session)

    response = await send(
        client,
        method,
        "/api/articles/nope-1/comments",
        {"comment": {"body": "hello"}} if method == "POST" else None,
        auth_headers(app, user),
    )

    assert response.status_code == 404
    assert set((await response.get_json())["errors"]) == {"body"}
    assert await count_rows(session, Comment) == 0


# --- tags ---------------------------------------------------------------------------------


async def test_tags_are_sorted_and_only_those_in_use(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    await make_article(session, author, tags=["zebra", "apple"])
    lonely = await make_article(session, author, tags=["mango", "apple"])
    before = await client.get("/api/tags")

    await client.delete(f"/api/articles/{lonely.slug}", headers=auth_headers(app, author))
    after = await client.get("/api/tags")

    assert before.status_code == 200
    assert await before.get_json() == {"tags": ["apple", "mango", "zebra"]}
    assert await after.get_json() == {"tags": ["apple", "zebra"]}


# The authorization matrix of every write route is tests/test_authz.py.


# --- CORS and unicode ---------------------------------------------------------------------


async def test_cors_preflight_on_articles(client: QuartClient) -> None:
    response = await client.options(
        "/api/articles",
        headers={
            "Origin": "http://frontend.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://frontend.example")
    methods = {
        m.strip().upper() for m in response.headers["Access-Control-Allow-Methods"].split(",")
    }
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    headers = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert "*" in headers or {"authorization", "content-type"} <= headers


async def test_unicode_round_trips_exactly(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    title = "Café 🐉 שלום עולם e\u0301"
    body = "مرحبا 👩🏽\u200d💻 Zoe\u0308 \u202eRTL override\u202c ﷽"
    description = "n\u0303 \U0001f1eb\U0001f1f7 עברית"

    created = await post_article(
        client, app, author, title=title, description=description, body=body, tagList=["日本語"]
    )
    fetched = (await (await client.get(f"/api/articles/{created['slug']}")).get_json())["article"]

    for article in (created, fetched):
        assert (article["title"], article["description"], article["body"]) == (
            title,
            description,
            body,
        )
        assert article["tagList"] == ["日本語"]
    stored = await session.scalar(select(Article).where(Article.slug == created["slug"]))
    assert stored is not None and (stored.title, stored.body) == (title, body)
