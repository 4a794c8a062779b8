"""A do-nothing OTLP/HTTP receiver: 200 with an empty body for every export.

The telemetry-cost scenario needs the service to really serialize and send its spans,
metrics and logs, but not a collector's own CPU use on this 2-core machine. An empty
body is a valid (empty) protobuf Export*ServiceResponse. It counts what it got, so the
report can show the exporters actually sent something.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.procs import LOCALHOST

OTLP_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


class OtlpSink:
    def __init__(self) -> None:
        self.posts: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOCALHOST, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def _record(self, path: str, size: int) -> None:
        with self._lock:
            self.posts[path] += 1
            self.bytes[path] += size

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real collector

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(size)
                path = self.path.split("?", 1)[0]
                known = path in OTLP_PATHS
                if known:
                    sink._record(path, size)
                self.send_response(200 if known else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per export would only add noise

        return Handler

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                path: {"posts": self.posts[path], "bytes": self.bytes[path]} for path in OTLP_PATHS
            }
