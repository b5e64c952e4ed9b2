"""Errors a sender can act on: each names the class, the size and the limit."""

from __future__ import annotations

from smdbus.classes import format_mask


class SmdError(Exception):
    """Base of every error the bus raises at a sender."""


IN_PROCESS_LIMIT = 384
"""lws_smd's payload limit in one process (``LWS_SMD_MAX_PAYLOAD``; ``smdbus.bus.MAX_PAYLOAD``)."""
WIRE_LIMIT = 383
"""The C proxy's limit for a payload on the ``_lws_smd`` wire, one less (``WIRE_MAX_PAYLOAD``)."""


def _which_limit(limit: int) -> str:
    if limit == WIRE_LIMIT:
        return f"the wire's limit, through a proxy; a bus in one process takes {IN_PROCESS_LIMIT}"
    if limit == IN_PROCESS_LIMIT:
        return f"the in-process bus's limit; through a proxy it is {WIRE_LIMIT}"
    return "this bus's max_payload"


class PayloadTooLarge(SmdError):
    """The payload is over the limit: 384 bytes on a bus in one process (as lws_smd), 383 on
    the wire to a proxy (as libwebsockets' C proxy). The message says which applies."""

    def __init__(self, cls: int, size: int, limit: int) -> None:
        self.cls, self.size, self.limit = cls, size, limit
        super().__init__(
            f"payload of {size} bytes for class {format_mask(cls)} is over the limit of {limit} "
            f"({_which_limit(limit)})"
        )


class QueueFull(SmdError):
    """The queue holds ``depth`` undelivered messages: retry after the loop has run."""

    def __init__(self, cls: int, depth: int) -> None:
        self.cls, self.depth = cls, depth
        super().__init__(
            f"queue full: {depth} messages wait for delivery; "
            f"message of class {format_mask(cls)} refused"
        )
