from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from quart.testing import QuartClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.items.models import Item
from service.items.schemas import SORTABLE_COLUMNS
from tests.factories import make_item

VALID_ITEM: dict[str, Any] = {
    "name": "Lamp",
    "description": "a desk lamp",
    "quantity": 3,
    "price": 19.5,
}


def at(year: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=UTC)


async def count_items(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Item)) or 0


async def item_row(session: AsyncSession, item_id: int) -> dict[str, Any] | None:
    """The row as stored now (a Core select: never the session's cached object)."""
    table = Item.__table__
    result = await session.execute(select(table).where(table.c.id == item_id))
    row = result.mappings().one_or_none()
    return dict(row) if row is not None else None


def ids(body: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in body]


def error_fields(body: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in body["error"].get("details", [])]


# --- GET /items ---------------------------------------------------------------


async def test_list_items_in_id_order_by_default(
    client: QuartClient, session: AsyncSession
) -> None:
    made = [await make_item(session, name=name) for name in ("zeta", "alpha", "mid")]

    response = await client.get("/items")

    assert response.status_code == 200
    body = await response.get_json()
    assert ids(body) == [item.id for item in made]
    assert body[0]["name"] == "zeta"
    assert set(body[0]) == {
        "id",
        "name",
        "description",
        "quantity",
        "price",
        "created_at",
        "updated_at",
    }


async def test_list_items_default_limit_is_20(client: QuartClient, session: AsyncSession) -> None:
    made = [await make_item(session) for _ in range(21)]

    body = await (await client.get("/items")).get_json()

    assert ids(body) == [item.id for item in made[:20]]


async def test_list_items_limit_and_offset(client: QuartClient, session: AsyncSession) -> None:
    made = [await make_item(session) for _ in range(5)]

    response = await client.get("/items", query_string={"limit": 2, "offset": 3})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [made[3].id, made[4].id]


async def test_list_items_offset_past_the_end_is_empty(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_item(session)

    response = await client.get("/items", query_string={"offset": 10})

    assert response.status_code == 200
    assert await response.get_json() == []


# Three items whose order differs for every sortable column (all 6 permutations).
SORT_ORDERS: dict[str, list[int]] = {
    "id": [0, 1, 2],
    "name": [2, 0, 1],
    "quantity": [1, 2, 0],
    "price": [0, 2, 1],
    "created_at": [1, 0, 2],
    "updated_at": [2, 1, 0],
}


async def make_sortable_items(session: AsyncSession) -> list[Item]:
    return [
        await make_item(
            session, name="banana", quantity=30, price=1.0, created_at=at(2021), updated_at=at(2022)
        ),
        await make_item(
            session, name="cherry", quantity=10, price=3.0, created_at=at(2020), updated_at=at(2021)
        ),
        await make_item(
            session, name="apple", quantity=20, price=2.0, created_at=at(2022), updated_at=at(2020)
        ),
    ]


def test_sort_cases_cover_every_sortable_column() -> None:
    assert set(SORT_ORDERS) == set(SORTABLE_COLUMNS)


@pytest.mark.parametrize("column", list(SORT_ORDERS))
async def test_sort_ascending(client: QuartClient, session: AsyncSession, column: str) -> None:
    made = await make_sortable_items(session)

    response = await client.get("/items", query_string={"sort": column})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [made[i].id for i in SORT_ORDERS[column]]


@pytest.mark.parametrize("column", list(SORT_ORDERS))
async def test_sort_descending(client: QuartClient, session: AsyncSession, column: str) -> None:
    made = await make_sortable_items(session)

    response = await client.get("/items", query_string={"sort": f"-{column}"})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [made[i].id for i in reversed(SORT_ORDERS[column])]


async def test_sort_ties_are_broken_by_id(client: QuartClient, session: AsyncSession) -> None:
    made = [await make_item(session, quantity=7) for _ in range(3)]
    expected = [item.id for item in made]

    ascending = await client.get("/items", query_string={"sort": "quantity"})
    descending = await client.get("/items", query_string={"sort": "-quantity"})

    assert ids(await ascending.get_json()) == expected
    assert ids(await descending.get_json()) == expected[::-1]


@pytest.mark.parametrize("sort", ["description", "-description", "", "--id", "secret"])
async def test_sort_outside_the_whitelist_is_400(client: QuartClient, sort: str) -> None:
    response = await client.get("/items", query_string={"sort": sort})

    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["status"] == 400
    assert "sort" in error["message"]
    [detail] = error["details"]
    assert detail["field"] == "sort"
    for column in SORTABLE_COLUMNS:
        assert column in detail["message"]


async def test_name_filter_is_a_case_insensitive_contains(
    client: QuartClient, session: AsyncSession
) -> None:
    lamp = await make_item(session, name="Red Lamp")
    lampshade = await make_item(session, name="lampshade")
    await make_item(session, name="Desk")

    response = await client.get("/items", query_string={"name": "LAMP"})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [lamp.id, lampshade.id]


@pytest.mark.parametrize(
    ("needle", "expected"),
    [("%", "100% cotton"), ("_", "a_b"), ("\\", "C:\\temp"), ("0%", "100% cotton")],
)
async def test_name_filter_matches_like_metacharacters_literally(
    client: QuartClient, session: AsyncSession, needle: str, expected: str
) -> None:
    for name in ("100% cotton", "100 cotton", "a_b", "axb", "C:\\temp", "C:temp"):
        await make_item(session, name=name)

    response = await client.get("/items", query_string={"name": needle})

    assert response.status_code == 200
    assert [item["name"] for item in await response.get_json()] == [expected]


async def test_sql_metacharacters_in_name_are_plain_text(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_item(session, name="plain")
    quoted = await make_item(session, name="it's ' OR 1=1 -- here")

    response = await client.get("/items", query_string={"name": "' OR 1=1 --"})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [quoted.id]


@pytest.mark.parametrize("sort", ["' OR 1=1 --", "id; DROP TABLE items", "id desc", "name,id"])
async def test_sql_metacharacters_in_sort_are_refused(
    client: QuartClient, session: AsyncSession, sort: str
) -> None:
    item = await make_item(session)

    response = await client.get("/items", query_string={"sort": sort})

    assert response.status_code == 400
    assert error_fields(await response.get_json()) == ["sort"]
    assert await item_row(session, item.id) is not None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
    ],
)
async def test_bad_query_parameters_are_400(
    client: QuartClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/items", query_string=params)

    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"]["status"] == 400
    assert error_fields(body) == [field]


async def test_limit_100_is_allowed(client: QuartClient, session: AsyncSession) -> None:
    item = await make_item(session)

    response = await client.get("/items", query_string={"limit": 100})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [item.id]


# --- GET /items/<id> ------------------------------------------------------------


async def test_get_item(client: QuartClient, session: AsyncSession) -> None:
    item = await make_item(session, name="Chair", description=None, quantity=4, price=45.0)

    response = await client.get(f"/items/{item.id}")

    assert response.status_code == 200
    body = await response.get_json()
    assert {key: body[key] for key in ("id", "name", "description", "quantity", "price")} == {
        "id": item.id,
        "name": "Chair",
        "description": None,
        "quantity": 4,
        "price": 45.0,
    }
    assert datetime.fromisoformat(body["created_at"]) == item.created_at
    assert datetime.fromisoformat(body["updated_at"]).tzinfo is not None


async def test_unknown_item_is_404(client: QuartClient) -> None:
    response = await client.get("/items/424242")

    assert response.status_code == 404
    assert response.content_type == "application/json"
    error = (await response.get_json())["error"]
    assert error["status"] == 404
    assert error["message"] == "item 424242 not found"


@pytest.mark.parametrize("item_id", ["abc", "0", "-1", "99999999999", "1.5", "1e3"])
async def test_item_ids_that_cannot_exist_are_404(
    client: QuartClient, session: AsyncSession, item_id: str
) -> None:
    await make_item(session)  # id 1 exists: "1.5" or "1e3" must not reach it

    response = await client.get(f"/items/{item_id}")

    assert response.status_code == 404
    assert (await response.get_json())["error"]["status"] == 404


# --- POST /items ------------------------------------------------------------------


async def test_create_item_stores_the_row(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post("/items", json=VALID_ITEM)

    assert response.status_code == 201
    body = await response.get_json()
    assert {key: body[key] for key in VALID_ITEM} == VALID_ITEM
    assert response.headers["Location"] == f"/items/{body['id']}"
    row = await item_row(session, body["id"])
    assert row is not None
    assert {key: row[key] for key in VALID_ITEM} == VALID_ITEM
    assert row["created_at"] == datetime.fromisoformat(body["created_at"])


async def test_create_item_defaults(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post("/items", json={"name": "Bare"})

    assert response.status_code == 201
    body = await response.get_json()
    assert (body["description"], body["quantity"], body["price"]) == (None, 0, 0.0)
    row = await item_row(session, body["id"])
    assert row is not None
    assert (row["name"], row["description"], row["quantity"], row["price"]) == (
        "Bare",
        None,
        0,
        0.0,
    )


def valid_item(**changes: Any) -> dict[str, Any]:
    return {**VALID_ITEM, **changes}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"quantity": 1}, "name", id="missing name"),
        pytest.param(valid_item(name="x" * 201), "name", id="name too long"),
        pytest.param(valid_item(name=""), "name", id="empty name"),
        pytest.param(valid_item(name="a\x00b"), "name", id="NUL in name"),
        pytest.param(valid_item(name=None), "name", id="null name"),
        pytest.param(valid_item(quantity=-1), "quantity", id="negative quantity"),
        pytest.param(valid_item(quantity="5"), "quantity", id="quantity as string"),
        pytest.param(valid_item(quantity=1.5), "quantity", id="fractional quantity"),
        pytest.param(valid_item(quantity=2**40), "quantity", id="quantity beyond int32"),
        pytest.param(valid_item(price=-0.01), "price", id="negative price"),
        pytest.param(valid_item(price=True), "price", id="price as bool"),
        pytest.param(valid_item(description="d" * 10_001), "description", id="long description"),
        pytest.param(valid_item(extra=1), "extra", id="unknown field"),
    ],
)
async def test_invalid_item_is_422_and_nothing_is_written(
    client: QuartClient, session: AsyncSession, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/items", json=body)

    assert response.status_code == 422
    error = (await response.get_json())["error"]
    assert error["status"] == 422
    assert field in [detail["field"] for detail in error["details"]]
    assert field in error["message"]
    assert await count_items(session) == 0


async def test_name_of_200_characters_is_accepted(
    client: QuartClient, session: AsyncSession
) -> None:
    response = await client.post("/items", json={"name": "x" * 200})

    assert response.status_code == 201
    row = await item_row(session, (await response.get_json())["id"])
    assert row is not None and row["name"] == "x" * 200


# --- PUT /items/<id> --------------------------------------------------------------


async def test_put_replaces_every_field(client: QuartClient, session: AsyncSession) -> None:
    item = await make_item(session, created_at=at(2020), updated_at=at(2020))
    replacement = {"name": "New", "description": None, "quantity": 99, "price": 0.5}

    response = await client.put(f"/items/{item.id}", json=replacement)

    assert response.status_code == 200
    body = await response.get_json()
    assert {key: body[key] for key in replacement} == replacement
    assert body["id"] == item.id
    assert datetime.fromisoformat(body["created_at"]) == at(2020)
    assert datetime.fromisoformat(body["updated_at"]) > at(2020)
    row = await item_row(session, item.id)
    assert row is not None
    assert {key: row[key] for key in replacement} == replacement
    assert row["created_at"] == at(2020)
    assert row["updated_at"] > at(2020)


@pytest.mark.parametrize("missing", ["name", "description", "quantity", "price"])
async def test_put_without_every_field_is_422_and_row_unchanged(
    client: QuartClient, session: AsyncSession, missing: str
) -> None:
    item = await make_item(session)
    before = await item_row(session, item.id)
    body = {key: value for key, value in VALID_ITEM.items() if key != missing}

    response = await client.put(f"/items/{item.id}", json=body)

    assert response.status_code == 422
    assert missing in error_fields(await response.get_json())
    assert await item_row(session, item.id) == before


async def test_put_unknown_item_is_404(client: QuartClient, session: AsyncSession) -> None:
    response = await client.put("/items/424242", json=VALID_ITEM)

    assert response.status_code == 404
    assert (await response.get_json())["error"]["message"] == "item 424242 not found"
    assert await count_items(session) == 0


# --- PATCH /items/<id> --------------------------------------------------------------


async def test_patch_changes_only_the_given_fields(
    client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session, name="Keep", description="keep", quantity=1, price=2.0)
    before = await item_row(session, item.id)
    assert before is not None

    response = await client.patch(f"/items/{item.id}", json={"quantity": 42})

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["name"], body["description"], body["quantity"], body["price"]) == (
        "Keep",
        "keep",
        42,
        2.0,
    )
    after = await item_row(session, item.id)
    assert after is not None
    assert after["quantity"] == 42
    for column in ("name", "description", "price", "created_at"):
        assert after[column] == before[column]


async def test_patch_can_set_description_to_null(
    client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session, description="to be removed")

    response = await client.patch(f"/items/{item.id}", json={"description": None})

    assert response.status_code == 200
    assert (await response.get_json())["description"] is None
    await session.refresh(item)
    assert item.description is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"quantity": None}, "quantity"),
        ({"price": None}, "price"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
        ({"quantity": 5, "colour": "red"}, "colour"),
    ],
)
async def test_invalid_patch_is_422_and_row_unchanged(
    client: QuartClient, session: AsyncSession, body: dict[str, Any], field: str
) -> None:
    item = await make_item(session)
    before = await item_row(session, item.id)

    response = await client.patch(f"/items/{item.id}", json=body)

    assert response.status_code == 422
    assert field in error_fields(await response.get_json())
    assert await item_row(session, item.id) == before


async def test_empty_patch_is_400(client: QuartClient, session: AsyncSession) -> None:
    item = await make_item(session)
    before = await item_row(session, item.id)

    response = await client.patch(f"/items/{item.id}", json={})

    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["status"] == 400
    assert error["message"] == "the body names no field to change"
    assert await item_row(session, item.id) == before


async def test_patch_unknown_item_is_404(client: QuartClient) -> None:
    response = await client.patch("/items/424242", json={"quantity": 1})

    assert response.status_code == 404
    assert (await response.get_json())["error"]["message"] == "item 424242 not found"


# --- DELETE /items/<id> -------------------------------------------------------------


async def test_delete_item(client: QuartClient, session: AsyncSession) -> None:
    item = await make_item(session)
    other = await make_item(session)

    response = await client.delete(f"/items/{item.id}")

    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await item_row(session, item.id) is None
    assert await item_row(session, other.id) is not None


async def test_second_delete_is_404(client: QuartClient, session: AsyncSession) -> None:
    item = await make_item(session)
    assert (await client.delete(f"/items/{item.id}")).status_code == 204

    response = await client.delete(f"/items/{item.id}")

    assert response.status_code == 404
    assert (await response.get_json())["error"]["message"] == f"item {item.id} not found"


# --- ETag, If-Match, If-None-Match ----------------------------------------------------------

STRONG_ETAG = re.compile(r'^"[0-9a-f]{32}"$')


async def current_etag(client: QuartClient, item_id: int) -> str:
    response = await client.get(f"/items/{item_id}")
    assert response.status_code == 200
    return response.headers["ETag"]


async def test_every_item_response_carries_a_strong_etag_that_follows_the_row(
    client: QuartClient,
) -> None:
    created = await client.post("/items", json=VALID_ITEM)
    item_id = (await created.get_json())["id"]
    fetched = await client.get(f"/items/{item_id}")
    patched = await client.patch(f"/items/{item_id}", json={"quantity": 4})
    replaced = await client.put(f"/items/{item_id}", json=VALID_ITEM)

    tags = [r.headers.get("ETag", "") for r in (created, fetched, patched, replaced)]
    assert all(STRONG_ETAG.match(tag) for tag in tags), tags
    assert tags[0] == tags[1]  # the same row, the same tag
    # Every write gives a new tag, even PUT back to the original values (updated_at moved).
    assert len({tags[1], tags[2], tags[3]}) == 3
    assert await current_etag(client, item_id) == tags[3]


async def test_if_none_match_with_the_current_etag_is_304_without_a_body(
    client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session)
    etag = await current_etag(client, item.id)

    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await client.get(f"/items/{item.id}", headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert await response.get_data() == b""
        assert response.headers["ETag"] == etag

    stale = await client.get(f"/items/{item.id}", headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200
    assert (await stale.get_json())["id"] == item.id


@pytest.mark.parametrize(
    ("method", "body"),
    [("PUT", VALID_ITEM), ("PATCH", {"quantity": 77}), ("DELETE", None)],
)
async def test_a_current_if_match_lets_the_write_through(
    client: QuartClient, session: AsyncSession, method: str, body: dict[str, Any] | None
) -> None:
    item = await make_item(session, quantity=1)
    etag = await current_etag(client, item.id)
    extra = {} if body is None else {"json": body}

    response = await client.open(
        f"/items/{item.id}", method=method, headers={"If-Match": etag}, **extra
    )

    assert response.status_code == (204 if method == "DELETE" else 200)
    row = await item_row(session, item.id)
    if method == "DELETE":
        assert row is None
    else:
        assert row is not None and row["quantity"] == body["quantity"]  # type: ignore[index]
        assert response.headers["ETag"] == await current_etag(client, item.id) != etag


@pytest.mark.parametrize(
    ("method", "body"),
    [("PUT", VALID_ITEM), ("PATCH", {"quantity": 77}), ("DELETE", None)],
)
@pytest.mark.parametrize(
    "if_match",
    ["stale", "weak", "garbage"],
)
async def test_an_if_match_naming_another_version_is_412_and_nothing_changes(
    client: QuartClient,
    session: AsyncSession,
    method: str,
    body: dict[str, Any] | None,
    if_match: str,
) -> None:
    item = await make_item(session, quantity=1)
    first_etag = await current_etag(client, item.id)
    assert (await client.patch(f"/items/{item.id}", json={"quantity": 2})).status_code == 200
    current = await current_etag(client, item.id)
    header = {
        "stale": first_etag,
        "weak": f"W/{current}",  # If-Match compares strongly: a weak tag never matches
        "garbage": '"not-an-etag", xyz',
    }[if_match]
    before = await item_row(session, item.id)
    extra = {} if body is None else {"json": body}

    response = await client.open(
        f"/items/{item.id}", method=method, headers={"If-Match": header}, **extra
    )

    assert response.status_code == 412
    assert response.content_type == "application/json"
    error = (await response.get_json())["error"]
    assert error["status"] == 412
    assert "If-Match" in error["message"]
    assert await item_row(session, item.id) == before


async def test_if_match_with_a_list_holding_the_current_etag_matches(
    client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session)
    etag = await current_etag(client, item.id)

    response = await client.patch(
        f"/items/{item.id}", json={"price": 9.0}, headers={"If-Match": f'"old", {etag}'}
    )

    assert response.status_code == 200
    assert (await response.get_json())["price"] == 9.0


async def test_if_match_star_matches_any_existing_item_but_not_a_missing_one(
    client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session)

    matched = await client.patch(
        f"/items/{item.id}", json={"quantity": 5}, headers={"If-Match": "*"}
    )
    missing = await client.put("/items/424242", json=VALID_ITEM, headers={"If-Match": "*"})

    assert matched.status_code == 200
    assert (await matched.get_json())["quantity"] == 5
    # Without the precondition the answer would be a 404, so it stays one (RFC 9110 13.2.1).
    assert missing.status_code == 404
    assert await count_items(session) == 1


async def test_without_if_match_the_last_write_wins(
    client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session)
    await current_etag(client, item.id)  # a tag was handed out: it binds nobody who ignores it

    first = await client.put(f"/items/{item.id}", json=valid_item(name="first"))
    second = await client.put(f"/items/{item.id}", json=valid_item(name="second"))

    assert (first.status_code, second.status_code) == (200, 200)
    row = await item_row(session, item.id)
    assert row is not None and row["name"] == "second"


async def test_openapi_documents_the_etag_preconditions(client: QuartClient) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    operations = spec["paths"]["/items/{item_id}"]

    def headers(method: str) -> set[str]:
        parameters = operations[method].get("parameters", [])
        return {p["name"].lower() for p in parameters if p["in"] == "header"}

    assert "if-none-match" in headers("get")
    for method in ("put", "patch", "delete"):
        assert "if-match" in headers(method), method
        assert "412" in {str(status) for status in operations[method]["responses"]}, method
    assert "ETag" in operations["get"]["responses"]["200"]["description"]
