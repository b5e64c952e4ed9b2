"""Errors a sender can act on: each names the class, the size and the limit."""

from __future__ import annotations

from smdbus.classes import format_mask


class SmdError(Exception):
    """Base of every error the bus raises at a sender."""


class PayloadTooLarge(SmdError):
    """The payload is over the bus's limit (384 bytes by default, as lws_smd)."""

    def __init__(self, cls: int, size: int, limit: int) -> None:
        self.cls, self.size, self.limit = cls, size, limit
        super().__init__(
            f"payload of {size} bytes for class {format_mask(cls)} is over the limit of {limit}"
        )


class QueueFull(SmdError):
    """The queue holds ``depth`` undelivered messages: retry after the loop has run."""

    def __init__(self, cls: int, depth: int) -> None:
        self.cls, self.depth = cls, depth
        super().__init__(
            f"queue full: {depth} messages wait for delivery; "
            f"message of class {format_mask(cls)} refused"
        )
