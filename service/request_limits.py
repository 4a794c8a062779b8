"""Caps on how many values one request body may hold, checked before anything walks them.

A body under MAX_CONTENT_LENGTH can still hold 100,000 form fields or JSON keys, and every
one costs time on the event loop: parsing them (json.loads alone, 30-100 ms for 100,000
keys), then one pydantic error per unknown key (measured: 70,000 keys held a worker for
0.25-0.85 s). The largest body a route accepts holds a few dozen values (an article with
its 50 tags), so these caps stop only abuse, and both count on the raw bytes before any
parser runs, with C-speed byte methods only (a few ms per MB).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from quart.formparser import FormDataParser
from quart.wrappers.request import Body
from werkzeug.datastructures import MultiDict

from service.errors import APIError


class TooManyValues(APIError):
    status = 413
    message = "the request body holds too many values"


def check_json_values(body: bytes, limit: int) -> None:
    """Raise TooManyValues when the JSON text `body` holds more than `limit` keys and array
    items, counted before parsing it.

    Outside strings, an object or array of n entries has n - 1 commas and one opening
    bracket, so commas plus brackets count the entries (an empty one counts 1). Strings
    are found by their quotes once the escapes `\\\\` and `\\"` are gone (in valid JSON
    they occur only inside strings). Text that is not valid JSON gets some estimate, and
    its 400 if it is not refused here.
    """
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    too_many = TooManyValues(f"the JSON body holds more than {limit} keys and items")
    # Each entry has at most two strings (its key and its value), plus a top-level string.
    if (text.count(b'"') // 2 - 1) // 2 > limit:
        raise too_many
    if text.count(b",") + text.count(b"[") + text.count(b"{") <= limit:
        return  # even counting inside strings: every ordinary body ends here
    # Few strings (the test above), so few parts: the text outside them, exactly.
    outside = b"".join(text.split(b'"')[0::2])
    if outside.count(b",") + outside.count(b"[") + outside.count(b"{") > limit:
        raise too_many


class LimitedFormDataParser(FormDataParser):
    """Quart's parser, with MAX_FORM_PARTS (our MAX_FORM_FIELDS) applied to url-encoded
    forms too: Quart 0.22 applies it to multipart forms only (werkzeug's decoder)."""

    async def _parse_urlencoded(
        self, body: Body, mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> tuple[MultiDict, MultiDict]:
        text = (await body).decode()
        # parse_qsl's own max_num_fields counts "&" the same way, but answers a ValueError,
        # which the parser silences into an empty form.
        if self.max_form_parts is not None and text.count("&") >= self.max_form_parts:
            raise TooManyValues(f"the form holds more than {self.max_form_parts} fields")
        return self.cls(parse_qsl(text, keep_blank_values=True)), self.cls()

    parse_functions = {
        **FormDataParser.parse_functions,
        "application/x-www-form-urlencoded": _parse_urlencoded,
        "application/x-url-encoded": _parse_urlencoded,
    }
