from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class HealthOut(BaseModel):
    """The backend seed's shape."""

    status: Literal["UP", "DOWN"]
    service: str
    database: Literal["connected", "disconnected"]
    timestamp: str


class LivenessOut(BaseModel):
    status: Literal["ok"]


class ReadinessOut(BaseModel):
    status: Literal["ready", "not ready"]
    # database and redis: "ok", "failing" or "not configured"; schema: "ok", "missing (...)",
    # "behind (0003 < 0004)", "ahead (0005 > 0004)" (still ready) or "not checked".
    checks: dict[str, str]


class BackgroundHealthOut(BaseModel):
    """The todo seed's /healthz/background."""

    status: Literal["ok", "failing"]
    mode: Literal["arq", "in-process"]
    redis: Literal["ok", "failing", "not configured"]
    worker: Literal["alive", "missing", "in-process"]
    queue_depth: int | None


class DependenciesOut(BaseModel):
    """The articles seed's /api/health: one entry per dependency."""

    status: Literal["UP", "DOWN"]
    database: Literal["connected", "disconnected"]
    redis: Literal["connected", "disconnected", "not configured"]
    worker: Literal["alive", "missing", "in-process"]
