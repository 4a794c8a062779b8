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
    checks: dict[str, Literal["ok", "failing", "not configured"]]
