"""Formula-safe CSV: a todo a spreadsheet would run as a formula is exported inert."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.testing import QuartClient

from service.app import create_app
from tests.conftest import make_settings
from tests.test_todos import wait_for_export

FORMULAS = ['=HYPERLINK("http://x.example","click")', "+1", "-2", "@SUM(1)", "\tx", "\rx"]
PLAIN = ["buy milk", "a = b", "'quoted already", "1+1", "x\ty"]


@pytest.fixture
async def in_process(clean_tables: None) -> AsyncIterator[QuartClient]:
    """An app without Redis (its exports run in the API process), batches of 4 rows."""
    other: Quart = create_app(make_settings(redis_url=None, export_batch_size=4))
    async with other.test_app():
        yield other.test_client()


async def export_file(client: QuartClient, export_format: str) -> bytes:
    response = await client.post("/export", json={"format": export_format})
    assert response.status_code == 202
    done = await wait_for_export(client, (await response.get_json())["job_id"])
    return await (await client.get(done["download_url"])).get_data()


async def test_formula_cells_get_a_quote_in_csv_and_json_stays_exact(
    in_process: QuartClient,
) -> None:
    for task in FORMULAS + PLAIN:
        response = await in_process.post("/todos", json={"task": task})
        assert response.status_code == 201, await response.get_data()

    as_csv = await export_file(in_process, "csv")
    as_json = await export_file(in_process, "json")

    rows = list(csv.DictReader(io.StringIO(as_csv.decode(), newline="")))
    assert [row["task"] for row in rows] == ["'" + task for task in FORMULAS] + PLAIN
    assert [todo["task"] for todo in json.loads(as_json)] == FORMULAS + PLAIN
