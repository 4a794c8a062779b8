from __future__ import annotations

import asyncio
import logging
import random

from pydantic import BaseModel, Field
from quart import Blueprint, current_app
from quart_schema import validate_querystring, validate_response

from service.errors import APIError
from service.openapi import documents_errors

logger = logging.getLogger(__name__)
blueprint = Blueprint("faults", __name__)

RANDOM_ERROR_CODES = (500, 502, 503, 504)


class SlowQuery(BaseModel):
    delay: float | None = Field(default=None, ge=0, le=30, allow_inf_nan=False)


class SlowOut(BaseModel):
    message: str
    delay: float


class ErrorQuery(BaseModel):
    code: int | None = Field(default=None, ge=500, le=599)


@blueprint.get("/slow")
@validate_querystring(SlowQuery)
@validate_response(SlowOut)
async def slow(query_args: SlowQuery) -> SlowOut:
    delay = query_args.delay
    if delay is None:
        delay = current_app.config["SLOW_ENDPOINT_DELAY"]
    await asyncio.sleep(delay)  # yields to the event loop: other requests go on meanwhile
    return SlowOut(message=f"answered after {delay:g} s", delay=delay)


@blueprint.get("/error")
@documents_errors(*RANDOM_ERROR_CODES)  # its purpose
@validate_querystring(ErrorQuery)
async def error(query_args: ErrorQuery) -> None:
    code = query_args.code or random.choice(RANDOM_ERROR_CODES)
    logger.error("deliberate error %s from /error", code, extra={"status_code": code})
    raise APIError(f"deliberate error {code} from /error", status=code)
