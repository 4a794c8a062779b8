"""A TCP proxy on 127.0.0.1 that a test can cut and restore: an outage of one dependency
(PostgreSQL, Redis) for one server process, while the shared server stays up for the other
test runs that use it.

It runs its own event loop in a thread, so the test's loop (and whatever blocks it for a
moment) never slows the traffic it forwards; `cut()` and `restore()` are plain calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal

CutMode = Literal["refuse", "black_hole", "partition"]
CALL_TIMEOUT_SECONDS = 5.0


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`.

    `cut("refuse")`: every open connection is reset and the port stops listening (what a
    stopped server looks like). `cut("black_hole")`: every open connection is reset and new
    ones are accepted but never answered (a dead host behind a firewall that drops packets).
    `cut("partition")`: open connections stay open but nothing passes any more, either way,
    and new ones are accepted but never answered (a network partition: no RST, no FIN).
    `restore()`: forwarding again, on the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Literal["up", "refuse", "black_hole", "partition"] = "up"
        self.connections_accepted = 0
        self._links: set[asyncio.StreamWriter] = set()  # both ends of every open connection
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self, mode: CutMode = "refuse") -> None:
        self._call(self._cut(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._cut("refuse"))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CALL_TIMEOUT_SECONDS)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_SECONDS)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        # reuse_address (asyncio's default on Unix): the port is taken again on restore even
        # while the cut connections linger in TIME_WAIT.
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self, mode: CutMode) -> None:
        self.mode = mode
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if mode != "partition":
            self._reset_all()

    async def _restore(self) -> None:
        self._reset_all()  # black-holed connections: their clients have given up already
        self.mode = "up"
        if self._server is None:
            await self._listen()

    def _reset_all(self) -> None:
        for writer in list(self._links):
            _reset(writer)
        self._links.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "partition":
                    continue  # lost on the way
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side is done: end the other too, as a broken link would.
            _reset(writer)

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.connections_accepted += 1
        self._links.add(client)
        try:
            if self.mode != "up":
                await client_reader.read()  # never answers; ends when the client gives up
                return
            try:
                upstream_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self._links.add(upstream)
            try:
                await asyncio.gather(
                    self._pipe(client_reader, upstream), self._pipe(upstream_reader, client)
                )
            finally:
                self._links.discard(upstream)
                _reset(upstream)
        finally:
            self._links.discard(client)
            _reset(client)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once with a RST, as a crashed server or a cut link does: no graceful FIN."""
    if writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # SO_LINGER 0: close() sends RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
