"""Downloads of an export from a real `serve` process on PostgreSQL (issue 15, section 3):
no total time limit while the client reads, an idle limit when it stops, `Content-Length`,
cuts logged as cuts, and byte ranges that resume a download. Raw sockets where the pace
of reading is the point."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from quart import Quart
from sqlalchemy import text

from tests.conftest import TestServers, empty_tables
from tests.load import served_and_up
from tests.processes import free_port, json_lines, service_env

IDLE_TIMEOUT = 2.0  # the impatient server's; the other keeps the default (60 s)
TODOS = 60_000  # a file of about 6 MB: more than the socket buffers hold (~3 MB here)
SLOW_READ_SECONDS = 63  # longer than Quart's RESPONSE_TIMEOUT (60 s), which cut downloads
# Slow enough that the server is still sending after 60 s (the socket buffers hold ~3.6 MB
# of the 6 MB here), fast enough that the kernel takes more within DOWNLOAD_IDLE_TIMEOUT.
SLOW_READ_BYTES_PER_SECOND = 30_000


@dataclass
class Download:
    port: int
    log: Path
    export_id: str
    etag: str
    file: bytes

    @property
    def path(self) -> str:
        return f"/exports/{self.export_id}/download"

    def log_lines(self) -> list[dict]:
        return json_lines(self.log.read_text())

    def connect(self, receive_buffer: int | None = None) -> socket.socket:
        sock = socket.socket()
        if receive_buffer is not None:  # before connecting: it sets the window offered
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def send_get(self, sock: socket.socket, *headers: str) -> None:
        lines = [f"GET {self.path} HTTP/1.1", "Host: localhost", *headers, "", ""]
        sock.sendall("\r\n".join(lines).encode())


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head, and the body bytes that came with it."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        assert chunk, "closed before the head"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


def content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    raise AssertionError(f"no Content-Length in {head!r}")


@contextlib.contextmanager
def running_server(tmp: Path, **settings: str) -> Iterator[tuple[int, Path]]:
    env = service_env(DATABASE_URL=TestServers.database_url, PORT=str(free_port()), **settings)
    log = tmp / "server.log"
    with served_and_up(env, log):
        yield int(env["PORT"]), log


@pytest.fixture(scope="module")
async def downloads(
    app: Quart, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Download]]:
    """A completed CSV export of TODOS todos (run in the API process: no Redis), served by
    a server with the default settings and by one with a short DOWNLOAD_IDLE_TIMEOUT."""
    async with app.extensions["database"].engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO todos (task, done, created_at, updated_at) "
                "SELECT 'download ' || g || repeat(' ✓', g % 7), g % 2 = 0, now(), now() "
                "FROM generate_series(1, :count) AS g"
            ),
            {"count": TODOS},
        )
    try:
        with (
            running_server(tmp_path_factory.mktemp("downloads")) as (port, log),
            running_server(
                tmp_path_factory.mktemp("impatient"), DOWNLOAD_IDLE_TIMEOUT=str(IDLE_TIMEOUT)
            ) as (impatient_port, impatient_log),
        ):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                export_id = (await http.post("/export", json={"format": "csv"})).json()["job_id"]
                deadline = time.monotonic() + 60
                while (await http.get(f"/exports/{export_id}")).json()["status"] != "complete":
                    assert time.monotonic() < deadline, "the export did not complete"
                    await asyncio.sleep(0.2)
                whole = await http.get(f"/exports/{export_id}/download")
            assert whole.status_code == 200
            assert whole.headers["accept-ranges"] == "bytes"
            assert int(whole.headers["content-length"]) == len(whole.content) > 2_000_000
            served = Download(port, log, export_id, whole.headers["etag"], whole.content)
            yield {
                "default": served,
                "impatient": replace(served, port=impatient_port, log=impatient_log),
            }
    finally:
        await empty_tables(app)


@pytest.fixture
def download(downloads: dict[str, Download]) -> Download:
    return downloads["default"]


@pytest.fixture
def impatient(downloads: dict[str, Download]) -> Download:
    return downloads["impatient"]


def get(download: Download, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{download.port}{download.path}", headers=headers)


# --- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=1000-2999", 1000, 3000),  # inside one chunk
        ("bytes=50000-1500000", 50_000, 1_500_001),  # across many chunks, mid-chunk ends
        ("bytes=1500000-", 1_500_000, None),
        ("bytes=-70000", -70_000, None),  # the last 70,000 bytes
        ("bytes=100-99999999", 100, None),  # an end beyond the file: up to the end
    ],
)
def test_a_range_answers_206_with_exactly_those_bytes(
    download: Download, header: str, start: int, stop: int | None
) -> None:
    response = get(download, Range=header)

    expected = download.file[start:stop]
    first = len(download.file) - len(expected) if start < 0 else start
    assert response.status_code == 206
    assert response.content == expected
    assert int(response.headers["content-length"]) == len(expected)
    size = len(download.file)
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
    assert response.headers["etag"] == download.etag


def test_a_range_beyond_the_end_is_416_with_the_size(download: Download) -> None:
    size = len(download.file)
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}"):
        response = get(download, Range=header)
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{size}"


def test_several_ranges_or_a_stale_if_range_get_the_whole_file(download: Download) -> None:
    several = get(download, Range="bytes=0-9,100-199")
    stale = get(download, Range="bytes=10-19", **{"If-Range": '"an-older-run"'})
    current = get(download, Range="bytes=10-19", **{"If-Range": download.etag})

    for whole in (several, stale):
        assert whole.status_code == 200
        assert whole.content == download.file
        assert "content-range" not in whole.headers
    assert current.status_code == 206
    assert current.content == download.file[10:20]


def test_head_gives_the_headers_without_the_file(download: Download) -> None:
    response = httpx.head(f"http://127.0.0.1:{download.port}{download.path}")

    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(download.file)
    assert response.headers["etag"] == download.etag


# --- slow and stopped readers ------------------------------------------------------------


def access_line(download: Download, request_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for line in download.log_lines():
            if line.get("logger") == "service.access" and line.get("request_id") == request_id:
                return line
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.1)


def test_a_slow_reader_gets_every_byte_however_long_it_takes(download: Download) -> None:
    size = len(download.file)
    sock = download.connect(receive_buffer=16 * 1024)
    download.send_get(sock, "X-Request-ID: slow-reader")
    head, body = read_head(sock)
    started = time.monotonic()
    with sock:
        # Steadily and slowly for SLOW_READ_SECONDS, with the default DOWNLOAD_IDLE_TIMEOUT,
        while time.monotonic() - started < SLOW_READ_SECONDS:
            chunk = sock.recv(4096)
            assert chunk, f"cut after {len(body)} of {size} bytes"
            body += chunk
            on_schedule = started + len(body) / SLOW_READ_BYTES_PER_SECOND
            time.sleep(max(0.0, on_schedule - time.monotonic()))
        # when the server is still sending (no access line yet): Quart's RESPONSE_TIMEOUT
        # would have cut it 60 s in;
        assert not any(line.get("request_id") == "slow-reader" for line in download.log_lines())
        assert len(body) < size
        # then the rest at once.
        while len(body) < size:
            chunk = sock.recv(65536)
            assert chunk, f"cut after {len(body)} of {size} bytes"
            body += chunk

    assert content_length(head) == size
    assert body == download.file
    line = access_line(download, "slow-reader", timeout=5)
    assert line["status_code"] == 200
    assert line["body_complete"] is True
    assert line["bytes_sent"] == size


def test_a_reader_that_stops_is_cut_after_the_idle_timeout_and_resumes(
    impatient: Download,
) -> None:
    download = impatient
    size = len(download.file)
    sock = download.connect(receive_buffer=4096)
    download.send_get(sock, "X-Request-ID: stopped-reader")
    head, body = read_head(sock)
    assert head.startswith(b"HTTP/1.1 200")

    # It reads nothing more: the server's send blocks, then gives up.
    line = access_line(download, "stopped-reader", timeout=IDLE_TIMEOUT + 10)
    assert line["duration_ms"] >= IDLE_TIMEOUT * 1000
    assert line["status_code"] == 499  # not a 200: the metrics count it with the 499s
    assert line["response_status"] == 200
    assert line["body_complete"] is False
    assert 0 < line["bytes_sent"] < size
    assert "body cut after" in line["message"] and "stopped reading" in line["message"]
    warnings = [
        entry
        for entry in download.log_lines()
        if entry.get("logger") == "service.exports.download"
        and entry.get("request_id") == "stopped-reader"
    ]
    assert warnings and warnings[0]["level"] == "WARNING"
    assert "DOWNLOAD_IDLE_TIMEOUT" in warnings[0]["message"]
    metrics = httpx.get(f"http://127.0.0.1:{download.port}/metrics").text
    cut_downloads = r'^http_requests_total\{[^}]*download[^}]*status="499"[^}]*\} [1-9]'
    assert re.search(cut_downloads, metrics, re.MULTILINE), metrics

    # What was on its way arrives, then the connection ends short of Content-Length.
    with sock:
        while chunk := sock.recv(65536):
            body += chunk
    assert len(body) < content_length(head) == size
    assert body == download.file[: len(body)]

    # The download resumes where it stopped and gives the same file.
    rest = get(download, Range=f"bytes={len(body)}-", **{"If-Range": download.etag})
    assert rest.status_code == 206
    assert body + rest.content == download.file


def test_a_client_that_goes_away_is_logged_as_a_cut(impatient: Download) -> None:
    sock = impatient.connect(receive_buffer=4096)
    impatient.send_get(sock, "X-Request-ID: gone-reader")
    read_head(sock)
    # An RST, as a killed client gives: the server's next write fails at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

    line = access_line(impatient, "gone-reader", timeout=IDLE_TIMEOUT + 10)
    assert line["status_code"] == 499
    assert line["body_complete"] is False
    assert "stopped reading" not in line["message"]
    assert any(
        entry.get("request_id") == "gone-reader"
        and entry["level"] == "WARNING"
        and "went away" in entry["message"]
        for entry in impatient.log_lines()
    )


async def test_a_file_deleted_mid_download_is_a_cut_logged_as_a_server_error(
    download: Download, app: Quart
) -> None:
    # A file of its own (the others keep theirs), deleted as the retention cron would.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{download.port}") as http:
        export_id = (await http.post("/export", json={"format": "json"})).json()["job_id"]
        deadline = time.monotonic() + 60
        while (await http.get(f"/exports/{export_id}")).json()["status"] != "complete":
            assert time.monotonic() < deadline, "the export did not complete"
            await asyncio.sleep(0.2)
    doomed = replace(download, export_id=export_id)
    sock = doomed.connect(receive_buffer=4096)
    doomed.send_get(sock, "X-Request-ID: doomed-file")
    head, body = read_head(sock)
    size = content_length(head)
    async with app.extensions["database"].engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM export_chunks WHERE export_id = :id"), {"id": export_id}
        )
    with sock:
        while chunk := await asyncio.to_thread(sock.recv, 65536):
            body += chunk

    assert 0 < len(body) < size
    line = access_line(doomed, "doomed-file", timeout=10)
    assert line["status_code"] == 500
    assert line["response_status"] == 200
    assert line["body_complete"] is False
    warning = next(
        entry
        for entry in doomed.log_lines()
        if entry.get("request_id") == "doomed-file" and entry["level"] == "WARNING"
    )
    assert "ExportFileChanged" in warning["message"]
