"""The active span's ids, for log lines and response headers (OpenTelemetry API only)."""

from __future__ import annotations

from opentelemetry import trace


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) as 32 and 16 hex characters, or None outside a recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_traceparent() -> str | None:
    """The W3C `traceparent` naming the active span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
