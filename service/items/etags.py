"""Items' ETags and the If-Match / If-None-Match preconditions (RFC 9110, section 13)."""

from __future__ import annotations

import hashlib

import orjson
from quart import request
from werkzeug.datastructures import Headers
from werkzeug.http import quote_etag

from service.errors import APIError
from service.items.schemas import ItemOut


class PreconditionFailed(APIError):
    status = 412
    message = "precondition failed"


def item_etag(item: ItemOut) -> str:
    """The entity tag, unquoted: a digest of the representation, so any change of a field
    (updated_at too, which every write moves) gives a new one. Strong: equal tags mean
    byte-for-byte equal bodies."""
    representation = orjson.dumps(item.model_dump(mode="json"))
    return hashlib.blake2b(representation, digest_size=16).hexdigest()


def etag_header(item: ItemOut) -> Headers:
    # Headers, not a dict: quart-schema dumps a returned dict through a new pydantic
    # TypeAdapter on every request.
    return Headers({"ETag": quote_etag(item_etag(item))})


def has_if_match() -> bool:
    # The header's presence decides, not whether it parses: a value naming no valid tag
    # is a precondition that can never hold, so a 412, never a silent unconditional write.
    return "If-Match" in request.headers


def if_match_is_star() -> bool:
    return request.if_match.star_tag


def if_match_names(item: ItemOut) -> bool:
    """If-Match uses the strong comparison: a weak tag (W/"...") never matches."""
    return request.if_match.contains(item_etag(item))


def if_none_match_names(item: ItemOut) -> bool:
    """If-None-Match uses the weak comparison; `*` matches any current item."""
    return request.if_none_match.contains_weak(item_etag(item))
