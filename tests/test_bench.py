"""The benchmark's own parts that can be checked quickly: the burst client against a
served app, and the table's ratios. The benchmark itself runs with `bench/run.py`."""

from __future__ import annotations

from bench.loads import burst
from bench.report import Row, markdown_table
from tests.processes import run_command, wait_until_up


async def test_the_burst_client_gets_every_answer_from_one_worker(
    sqlite_env: dict[str, str], start_server
) -> None:
    """200 requests that each wait 0.5 s, all at once, on one worker: answered side by side
    (one after the other would take 100 s), and counted by the client the harness uses."""
    assert run_command("migrate", sqlite_env).returncode == 0
    process = start_server(sqlite_env)
    port = int(sqlite_env["PORT"])
    await wait_until_up(f"http://127.0.0.1:{port}", process)

    result = await burst(port, "/slow?delay=0.5", clients=200, client_timeout=20)

    assert (result.clients, result.ok, result.failed) == (200, 200, 0)
    assert result.wall_seconds < 20
    assert result.p50_ms is not None and result.p50_ms >= 500


def test_the_table_puts_the_ratio_to_the_twin_on_each_row() -> None:
    rows = [
        Row("GET /x", "ours", rps=300.0, p50_ms=1.0, p99_ms=2.0, errors=0, twin_rps=100.0),
        Row("GET /x", "twin", rps=100.0, p50_ms=3.0, p99_ms=4.0, errors=0, twin_rps=100.0),
        Row("mixed", "ours", rps=50.0, twin_rps=0.0),
    ]

    lines = markdown_table(rows).splitlines()

    assert "| 3.00 |" in lines[2]
    assert "| 1.00 |" in lines[3]
    assert "| twin 0 |" in lines[4]
