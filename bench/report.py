"""The results: one markdown table, machine facts, and bench/results/latest.{json,md}."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 1024 * 1024


@dataclass
class Row:
    """One scenario on one server, summed up over the rounds."""

    scenario: str
    server: str
    rps: float | None = None  # median over rounds
    p50_ms: float | None = None  # median over rounds
    p99_ms: float | None = None  # median over rounds
    errors: int | None = None  # total over rounds
    peak_rss_mb: float | None = None  # largest over rounds
    notes: str = ""
    twin_rps: float | None = None  # the twin's req/s in the same scenario, for the ratio
    rounds: list[dict] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.rps is None or not self.twin_rps:
            return None
        return self.rps / self.twin_rps


def median(values: list[float]) -> float | None:
    clean = [value for value in values if value is not None and not math.isnan(value)]
    return statistics.median(clean) if clean else None


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| scenario | server | req/s | p50 ms | p99 ms | errors | peak RSS MB "
        "| ours/twin req/s | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        if row.twin_rps == 0 and row.rps:
            ratio = "twin 0"  # the twin answered nothing: no finite ratio
        lines.append(
            f"| {row.scenario} | {row.server} | {_number(row.rps, 0)} | {_number(row.p50_ms, 2)} "
            f"| {_number(row.p99_ms, 2)} | {_number(row.errors, 0)} "
            f"| {_number(row.peak_rss_mb, 0)} | {ratio} | {row.notes} |"
        )
    return "\n".join(lines)


def _memory_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _commit(root: Path) -> str:
    """The checked-out commit, read from .git's files (no git command)."""
    try:
        head = (root / ".git" / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[len("ref: ") :]
        ref_file = root / ".git" / ref
        if ref_file.exists():
            return ref_file.read_text().strip()
        for line in (root / ".git" / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return "?"


def machine_facts(root: Path, command: str, extra: dict[str, str]) -> dict[str, str]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "commit": _commit(root),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_total(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **extra,
    }


def facts_markdown(facts: dict[str, str]) -> str:
    return "\n".join(f"- {key}: `{value}`" for key, value in facts.items())


def write_results(
    facts: dict[str, str], rows: list[Row], method: str, wall_seconds: float
) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / "latest.json"
    md_path = RESULTS_DIR / "latest.md"
    payload = {
        "machine": facts,
        "wall_seconds": round(wall_seconds, 1),
        "rows": [asdict(row) | {"ratio": row.ratio} for row in rows],
    }
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md_path.write_text(
        "# Benchmark results\n\n"
        f"{markdown_table(rows)}\n\n"
        f"Wall time of the run: {wall_seconds / 60:.1f} min.\n\n"
        f"## Machine\n\n{facts_markdown(facts)}\n\n"
        f"## Method\n\n{method}\n"
    )
    return json_path, md_path
