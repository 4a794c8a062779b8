from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from quart.testing import QuartClient

LogLines = Callable[[], list[dict[str, Any]]]


async def test_slow_waits_the_configured_delay(client: QuartClient) -> None:
    started = time.monotonic()
    response = await client.get("/slow")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.05
    assert await response.get_json() == {"message": "answered after 0.05 s", "delay": 0.05}


async def test_slow_waits_the_delay_asked_for(client: QuartClient) -> None:
    started = time.monotonic()
    response = await client.get("/slow", query_string={"delay": "0.3"})

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert (await response.get_json())["delay"] == 0.3


async def test_slow_refuses_bad_delays(client: QuartClient) -> None:
    for delay in ("31", "-1", "abc", "nan", "inf"):
        response = await client.get("/slow", query_string={"delay": delay})
        assert response.status_code == 400, delay
        error = (await response.get_json())["error"]
        assert error["status"] == 400
        assert "delay" in error["message"], delay
        assert [detail["field"] for detail in error["details"]] == ["delay"], delay


async def test_slow_does_not_block_the_event_loop(client: QuartClient) -> None:
    started = time.monotonic()
    responses = await asyncio.gather(
        *(client.get("/slow", query_string={"delay": "0.5"}) for _ in range(5))
    )
    elapsed = time.monotonic() - started

    assert [response.status_code for response in responses] == [200] * 5
    assert 0.5 <= elapsed < 1.5  # one after the other would take 2.5 s


async def test_error_with_a_code(client: QuartClient) -> None:
    response = await client.get("/error", query_string={"code": "503"})

    assert response.status_code == 503
    assert await response.get_json() == {
        "error": {
            "status": 503,
            "message": "deliberate error 503 from /error",
            "request_id": response.headers["X-Request-ID"],
        }
    }


async def test_error_refuses_codes_outside_5xx(client: QuartClient) -> None:
    for code in ("418", "600"):
        response = await client.get("/error", query_string={"code": code})
        assert response.status_code == 400, code
        error = (await response.get_json())["error"]
        assert "code" in [detail["field"] for detail in error["details"]], code


async def test_error_without_a_code_is_a_random_5xx(client: QuartClient) -> None:
    statuses = set()
    for _ in range(12):
        response = await client.get("/error")
        assert 500 <= response.status_code <= 599
        error = (await response.get_json())["error"]
        assert error["status"] == response.status_code
        assert error["message"] == f"deliberate error {response.status_code} from /error"
        assert error["request_id"] == response.headers["X-Request-ID"]
        statuses.add(response.status_code)

    assert len(statuses) > 1  # 12 draws from four codes: all equal is a 1-in-4 million chance


async def test_error_is_logged_at_error_level(client: QuartClient, log_lines: LogLines) -> None:
    response = await client.get("/error", query_string={"code": "502"})

    request_id = response.headers["X-Request-ID"]
    errors = [
        line
        for line in log_lines()
        if line["level"] == "ERROR" and line.get("request_id") == request_id
    ]
    assert len(errors) == 1
    assert errors[0]["logger"] == "service.faults.routes"
    assert "502" in errors[0]["message"]
