"""Limits on exports: pending exports per client, the same request deduplicated, and
in-process exports one at a time.

The session app queues its jobs on Redis and no worker runs here, so an export it
starts stays `queued` (pending) until the test says otherwise.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart.testing import QuartClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.exports.models import Export, ExportChunk
from tests.conftest import make_settings
from tests.factories import auth_headers, make_user
from tests.test_exports_worker import insert_todos, wait_for_status
from tests.test_todos import page_token

ANN_IP = ("198.51.100.7", 50000)
BOB_IP = ("203.0.113.9", 50000)


async def post_export(
    client: QuartClient,
    export_format: str,
    peer: tuple[str, int] = ANN_IP,
    headers: dict[str, str] | None = None,
) -> Any:
    return await client.post(
        "/export", json={"format": export_format}, headers=headers, scope_base={"client": peer}
    )


async def job_id(response: Any) -> str:
    assert response.status_code == 202, await response.get_data(as_text=True)
    return (await response.get_json())["job_id"]


async def export_rows(session: AsyncSession) -> list[tuple[str, str, str | None]]:
    rows = await session.execute(
        select(Export.id, Export.format, Export.client_key).order_by(Export.created_at)
    )
    return [tuple(row) for row in rows]


@pytest.fixture
async def limited(clean_tables: None) -> AsyncIterator[QuartClient]:
    """An app that allows one pending export per client (with two formats, the default
    of two pending is reached only by a csv and a json export, and a third request is
    always a duplicate of one of them)."""
    other = create_app(make_settings(export_max_pending=1))
    async with other.test_app():
        yield other.test_client()


async def set_status(session: AsyncSession, export_id: str, status: str) -> None:
    await session.execute(update(Export).where(Export.id == export_id).values(status=status))
    await session.commit()


async def test_beyond_the_pending_limit_429_while_another_client_gets_202(
    limited: QuartClient, session: AsyncSession
) -> None:
    first = await job_id(await post_export(limited, "csv"))

    refused = await post_export(limited, "json")
    other = await post_export(limited, "json", peer=BOB_IP)

    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.get_json())["error"]["message"] == (
        "too many exports pending for this client, wait for one to finish"
    )
    second = await job_id(other)
    assert await export_rows(session) == [
        (first, "csv", "ip:198.51.100.7"),
        (second, "json", "ip:203.0.113.9"),
    ]


async def test_two_pending_exports_by_default(client: QuartClient, session: AsyncSession) -> None:
    csv_id = await job_id(await post_export(client, "csv"))
    json_id = await job_id(await post_export(client, "json"))

    assert csv_id != json_id
    assert len(await export_rows(session)) == 2


async def test_the_same_request_while_pending_gets_the_existing_export(
    client: QuartClient, session: AsyncSession
) -> None:
    export_id = await job_id(await post_export(client, "csv"))

    again = await post_export(client, "csv")
    assert again.status_code == 202
    assert await again.get_json() == {
        "job_id": export_id,
        "status": "queued",
        "status_url": f"/exports/{export_id}",
    }
    assert again.headers["Location"] == f"/exports/{export_id}"

    await set_status(session, export_id, "in_progress")  # running is pending too
    running = await (await post_export(client, "csv")).get_json()
    assert (running["job_id"], running["status"]) == (export_id, "in_progress")
    assert len(await export_rows(session)) == 1


async def test_a_finished_export_frees_the_slot(
    limited: QuartClient, session: AsyncSession
) -> None:
    first = await job_id(await post_export(limited, "csv"))
    assert (await post_export(limited, "json")).status_code == 429

    await set_status(session, first, "complete")
    second = await job_id(await post_export(limited, "json"))
    await set_status(session, second, "failed")
    third = await job_id(await post_export(limited, "csv"))  # not the finished csv one

    assert len({first, second, third}) == 3


async def test_a_lost_export_older_than_its_last_try_holds_no_slot(
    limited: QuartClient, session: AsyncSession
) -> None:
    # Queued two days ago by an API that restarted before running it (in-process mode).
    session.add(
        Export(
            id=str(uuid.uuid4()),
            format="csv",
            status="queued",
            client_key="ip:198.51.100.7",
            created_at=datetime.now(UTC) - timedelta(days=2),
        )
    )
    await session.commit()

    assert (await post_export(limited, "json")).status_code == 202


async def test_a_user_is_one_client_from_any_address_apart_from_its_ip(
    limited: QuartClient, session: AsyncSession
) -> None:
    ann = await make_user(session)
    as_ann = auth_headers(limited.app, ann)
    mine = await job_id(await post_export(limited, "csv", headers=as_ann))

    from_elsewhere = await post_export(limited, "json", peer=BOB_IP, headers=as_ann)
    anonymous_same_ip = await post_export(limited, "json")

    assert from_elsewhere.status_code == 429
    anonymous = await job_id(anonymous_same_ip)
    assert await export_rows(session) == [
        (mine, "csv", f"user:{ann.id}"),
        (anonymous, "json", "ip:198.51.100.7"),
    ]


async def test_concurrent_posts_of_one_client_make_one_export(
    limited: QuartClient, session: AsyncSession
) -> None:
    for _round in range(3):
        responses = await asyncio.gather(
            *(post_export(limited, ("csv", "json")[n % 2]) for n in range(8))
        )

        rows = await export_rows(session)
        assert len(rows) == 1, rows
        accepted = {(await r.get_json())["job_id"] for r in responses if r.status_code == 202}
        assert accepted == {rows[0][0]}
        assert sorted({r.status_code for r in responses}) == [202, 429]
        await session.execute(delete(Export))
        await session.commit()


async def test_in_process_exports_run_one_at_a_time(session: AsyncSession) -> None:
    await insert_todos(session, 3000)
    app = create_app(make_settings(redis_url=None, export_batch_size=50))
    async with app.test_app():
        client = app.test_client()
        first = await job_id(await post_export(client, "csv"))
        second = await job_id(await post_export(client, "json"))
        for export_id in (first, second):
            await wait_for_status(client, export_id, "complete", timeout=60)

    rows = await session.execute(
        select(Export.started_at, Export.finished_at).order_by(Export.started_at)
    )
    (_start_a, end_a), (start_b, _end_b) = rows.all()
    assert end_a is not None and start_b is not None
    assert end_a <= start_b, "the second export started before the first had finished"


async def test_in_process_exports_go_in_small_batches(session: AsyncSession) -> None:
    """On the API's event loop a batch is at most 200 rows (a chunk each), whatever
    EXPORT_BATCH_SIZE says: each step holds the loop briefly (bench/inprocess_exports.py)."""
    await insert_todos(session, 450)
    app = create_app(make_settings(redis_url=None, export_batch_size=1000))
    async with app.test_app():
        client = app.test_client()
        export_id = await job_id(await post_export(client, "csv"))
        await wait_for_status(client, export_id, "complete", timeout=60)

    chunks = await session.scalar(
        select(func.count()).select_from(ExportChunk).where(ExportChunk.export_id == export_id)
    )
    assert chunks == 3  # 200 + 200 + 50 rows


async def test_the_page_export_button_shares_the_limit_and_the_dedupe(
    limited: QuartClient, session: AsyncSession
) -> None:
    token = await page_token(limited)  # the test client has no address: "ip:unknown"
    form = {"csrf_token": token}

    first = await limited.post("/export/start", form={**form, "format": "csv"})
    again = await limited.post("/export/start", form={**form, "format": "csv"})
    refused = await limited.post(
        "/export/start", form={**form, "format": "json"}, headers={"Accept": "text/html"}
    )

    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"]
    assert "too many exports pending" in await refused.get_data(as_text=True)
    assert refused.content_type.startswith("text/html")
    assert len(await export_rows(session)) == 1
