"""Child processes of the harness: start in their own process group, wait, measure, kill.

Every server runs as the leader of a new session, so `os.killpg` ends it and every
worker it spawned (hypercorn, gunicorn and arq do not leave their group). Memory is
read from /proc (no psutil in our lock): the RSS of a process tree is the sum over the
root and all its descendants, shared pages counted once per process.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on now (the kernel's pick); servers refuse a taken one anyway."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def read_proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, RSS bytes) for every process, from one pass over /proc/*/stat."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                raw = stat_file.read()
        except OSError:  # the process ended between scandir and open
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = raw[raw.rindex(b")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[21]) * PAGE_SIZE)
    return table


def tree_pids(root_pid: int, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """The root and all its descendants that are alive now."""
    table = read_proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (parent, _rss) in table.items():
        children.setdefault(parent, []).append(pid)
    found, pending = [], [root_pid] if root_pid in table else []
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def tree_rss(root_pid: int) -> int:
    table = read_proc_table()
    return sum(table[pid][1] for pid in tree_pids(root_pid, table))


def rss_by_pid(root_pid: int) -> dict[int, int]:
    table = read_proc_table()
    return {pid: table[pid][1] for pid in tree_pids(root_pid, table)}


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


class PeakRss:
    """Samples the RSS of a process tree every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.root_pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Process:
    """A started child: its command, its log file, and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A file, not a pipe: nobody drains a pipe during a load test, and a full one blocks.
        # Appended: a server restarted between runs keeps the earlier instances' lines.
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} starting {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(  # noqa: S603 - argv built by the harness
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL to what is left after the grace period."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # the session leader: its pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_seconds)
        # The leader may be gone while spawned workers linger: kill the group regardless.
        deadline = time.monotonic() + grace_seconds
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self.popen = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one GET on 127.0.0.1; raises OSError when nobody answers."""
    connection = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def http_post_json(port: int, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class StartError(RuntimeError):
    """A child did not become ready; the message carries the tail of its log."""


def wait_ready(
    process: Process, ready: Callable[[], bool], deadline_seconds: float = 60.0
) -> float:
    """Poll `ready` until it holds; seconds it took. Fails at once when the child exits."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if not process.alive():
            raise StartError(
                f"{process.name} exited during start-up (log {process.log_path}):\n"
                + process.log_tail()
            )
        try:
            if ready():
                return time.monotonic() - process.started_at
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise StartError(
        f"{process.name} not ready within {deadline_seconds:.0f} s (log {process.log_path}):\n"
        + process.log_tail()
    )


def status_is(port: int, path: str, expected: int = 200) -> Callable[[], bool]:
    return lambda: http_get(port, path, timeout=2.0)[0] == expected
