"""The HTTP edge of a real `serve` process with no proxy in front (issue 14, section 4):
slowloris, bodies that would hold the event loop, ambiguous framing, honest closes, and
what the server advertises. Over raw sockets where the bytes on the wire are the point."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.errors import MAX_ERROR_DETAILS, error_payload
from tests.load import served_and_up
from tests.processes import free_port, json_lines, run_command, service_env

HEAD_TIMEOUT = 1.0


class Server:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def log_lines(self) -> list[dict]:
        return json_lines(self.log.read_text())

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@contextlib.contextmanager
def running_server(tmp: Path, **settings: str) -> Iterator[Server]:
    env = service_env(
        DATABASE_URL=f"sqlite:///{tmp / 'edge.db'}", PORT=str(free_port()), **settings
    )
    assert run_command("migrate", env).returncode == 0
    log = tmp / "server.log"
    with served_and_up(env, log):
        yield Server(int(env["PORT"]), log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("edge"), HTTP_READ_TIMEOUT=str(HEAD_TIMEOUT)) as up:
        yield up


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def read_response(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, however the bytes are split up."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if b"content-length:" in line
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def closed_within(sock: socket.socket, seconds: float) -> bool:
    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable) and sock.recv(1) == b""


# --- slowloris -------------------------------------------------------------------------


def test_a_head_sent_a_byte_at_a_time_is_cut_after_the_timeout_and_counted(server: Server) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"a" * 200
    started = time.monotonic()
    with server.connect() as sock:
        for byte in head:
            try:
                sock.send(bytes([byte]))
            except OSError:  # the server closed it: the send that follows a close fails
                break
            if closed_within(sock, 0.1):
                break
        cut_after = time.monotonic() - started

    # Each byte came within 0.1 s: a per-read timeout would never fire.
    assert HEAD_TIMEOUT * 0.8 < cut_after < HEAD_TIMEOUT + 3, cut_after
    deadline = time.monotonic() + 5
    while not (
        timeouts := [
            line for line in server.log_lines() if line.get("logger") == "service.http_edge"
        ]
    ):
        assert time.monotonic() < deadline, "no log line for the closed connection"
        time.sleep(0.1)
    assert timeouts[0]["level"] == "WARNING"
    assert timeouts[0]["client_ip"] == "127.0.0.1"
    assert "request head not complete" in timeouts[0]["message"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "http_request_head_timeouts_total 1.0" in metrics


def test_a_slow_answer_and_an_idle_keep_alive_connection_are_not_cut(server: Server) -> None:
    """The deadline is for the head only: not for the handler, nor between requests."""
    with server.connect() as sock:
        sock.sendall(b"GET /slow?delay=1.5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(HEAD_TIMEOUT * 1.5)  # idle between requests: KEEP_ALIVE_TIMEOUT's business
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def test_a_body_that_trickles_gets_a_408_after_the_timeout_and_a_close(server: Server) -> None:
    started = time.monotonic()
    with server.connect() as sock:
        sock.sendall(
            b"POST /products HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        received = read_until_closed(sock)
    waited = time.monotonic() - started

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"\r\nconnection: close" in head.lower()
    assert json.loads(body)["error"]["status"] == 408
    assert HEAD_TIMEOUT * 0.8 < waited < HEAD_TIMEOUT + 3, waited


# --- one request must not hold the event loop ------------------------------------------


async def worst_ping_during(server: Server, request: httpx.Request) -> tuple[httpx.Response, float]:
    """Send `request`; meanwhile ping /healthz on another connection. The slowest ping."""
    worst = 0.0
    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as pinger:
        await pinger.get("/healthz")  # connected before the big request starts

        async def ping() -> None:
            nonlocal worst
            while not done.is_set():
                started = time.perf_counter()
                await pinger.get("/healthz")
                worst = max(worst, time.perf_counter() - started)
                await asyncio.sleep(0.002)

        pinging = asyncio.create_task(ping())
        await asyncio.sleep(0.05)
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.send(request)
        await asyncio.sleep(0.05)
        done.set()
        await pinging
    return response, worst


# Today's code spent 0.25 s (this machine) to 0.85 s (the review's) on such a request.
STALL_BOUND = 0.15


async def test_a_json_body_of_100000_keys_is_refused_without_stalling_the_worker(
    server: Server,
) -> None:
    body = json.dumps({f"{i:x}": 0 for i in range(100_000)}, separators=(",", ":")).encode()
    assert len(body) < 1024 * 1024
    request = httpx.Request(
        "POST", f"{server.url}/products", content=body, headers={"content-type": "application/json"}
    )
    response, worst_ping = await worst_ping_during(server, request)

    assert response.status_code == 413
    assert (
        response.json()["error"]["message"] == "the JSON body holds more than 1000 keys and items"
    )
    assert worst_ping < STALL_BOUND, worst_ping


async def test_a_form_of_100000_fields_is_refused_without_stalling_the_worker(
    server: Server,
) -> None:
    body = "&".join(f"f{i}=" for i in range(100_000))
    request = httpx.Request(
        "POST",
        f"{server.url}/add",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    response, worst_ping = await worst_ping_during(server, request)

    assert response.status_code == 413
    assert response.json()["error"]["message"] == "the form holds more than 1000 fields"
    assert worst_ping < STALL_BOUND, worst_ping


def test_a_form_within_the_cap_is_parsed(server: Server) -> None:
    form = {f"f{i}": "" for i in range(500)} | {"task": "within the cap"}
    response = httpx.post(f"{server.url}/add", data=form, follow_redirects=False)
    assert response.status_code != 413
    assert response.status_code < 400


def test_validation_errors_are_bounded_and_name_the_first_fields(server: Server) -> None:
    # 900 unknown keys of 1,000 characters each: 900 errors, each naming 1 KB.
    body = {f"{i:04d}" + "k" * 996: 0 for i in range(900)}
    response = httpx.post(f"{server.url}/products", json=body, timeout=30)

    assert response.status_code == 422
    assert len(response.content) <= 16 * 1024
    error = response.json()["error"]
    details = error["details"]
    assert 0 < len(details) <= MAX_ERROR_DETAILS
    # The missing fields come first (pydantic's order), then the unknown keys, clipped.
    assert {"name", "price", "category"} <= {detail["field"] for detail in details}
    unknown = [detail for detail in details if detail["field"].startswith("0")]
    assert unknown[0]["field"].startswith("0000kkk") and len(unknown[0]["field"]) <= 100
    assert unknown[0]["message"] == "Extra inputs are not permitted"
    assert error["details_omitted"] == 903 - len(details)
    assert error["message"].startswith("invalid request body: ")
    assert error["message"].endswith(f" and {903 - 10} more")


def test_the_realworld_shape_is_bounded_the_same_way() -> None:
    details = [{"field": "user.email", "message": "bad"}] * MAX_ERROR_DETAILS
    payload = error_payload(
        422, "invalid request body", details, realworld=True, request_id="r", omitted=7
    )
    assert len(payload["errors"]["body"]) == MAX_ERROR_DETAILS + 1
    assert payload["errors"]["body"][-1] == "and 7 more errors"
    assert payload["errors"]["email"] == ["bad"] * MAX_ERROR_DETAILS


# --- request framing and connection closes ---------------------------------------------


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    server: Server,
) -> None:
    smuggled = b"GET /smuggled-request HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(
            b"POST /products HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
        )
        received = read_until_closed(sock)  # returns: the server closed the connection

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nconnection: close" in head.lower()
    assert received.count(b"HTTP/1.1") == 1  # one answer: the smuggled request got none
    error = json.loads(body)["error"]
    assert error["status"] == 400
    assert "Content-Length and Transfer-Encoding" in error["message"]
    time.sleep(0.2)
    paths = [line.get("http.path") for line in server.log_lines()]
    assert "/products" in paths and "/smuggled-request" not in paths


def test_the_api_answers_ambiguous_framing_in_the_realworld_shape(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /api/users HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 400 ")
    errors = json.loads(received.partition(b"\r\n\r\n")[2])["errors"]
    assert "Content-Length and Transfer-Encoding" in errors["body"][0]


def test_an_answer_before_the_body_is_read_says_connection_close(server: Server) -> None:
    too_big = 1024 * 1024 + 64 * 1024

    def slow_body() -> Iterator[bytes]:
        yield b"x" * 65536
        time.sleep(0.3)  # the 413 goes out meanwhile: the rest is never read
        yield b"x" * (too_big - 65536)

    with httpx.Client(base_url=server.url, timeout=10) as http:  # keep-alive
        refused = http.post(
            "/products",
            content=slow_body(),
            headers={"content-type": "application/json", "content-length": str(too_big)},
        )
        assert refused.status_code == 413
        assert refused.headers["connection"] == "close"
        assert refused.json()["error"]["status"] == 413
        # The next request goes on a new connection and gets its answer.
        assert http.get("/healthz").status_code == 200
        # A request whose body was read keeps its connection.
        answered = http.post("/products", json={"name": "kept", "price": 1, "category": "c"})
        assert answered.status_code == 201
        assert "connection" not in answered.headers


def test_a_refused_body_that_never_arrives_gets_its_answer_and_a_close(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /products HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2000000\r\n\r\n" + b"x" * 1000
        )
        received = read_until_closed(sock)
    head = received.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 413 ")
    assert b"\r\nconnection: close" in head


# --- what the server advertises --------------------------------------------------------

H2C_UPGRADE = (
    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)


def test_no_server_banner(server: Server) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert "server" not in response.headers


def test_h2c_is_off_an_upgrade_is_answered_over_http_1_1(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(H2C_UPGRADE)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"upgrade" not in answer.lower().partition(b"\r\n\r\n")[0]


def test_h2c_is_off_the_http2_preface_gets_505_and_a_close(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 505 ")
    assert b"server:" not in received.lower()


def test_h2c_enabled_by_its_setting(tmp_path: Path) -> None:
    with running_server(tmp_path, H2C_ENABLED="true") as server:
        with server.connect() as sock:
            sock.sendall(H2C_UPGRADE)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: h2c" in answer.lower()
