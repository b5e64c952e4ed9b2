"""Errors the client raises at its caller: each says what to do about it."""

from __future__ import annotations

from smdbus.classes import format_mask
from smdbus.errors import SmdError
from smdbus.wire import format_address


class ClientError(SmdError):
    """Base of the client's own errors."""


class BufferFull(ClientError):
    """The message cannot be accepted: the unsent buffer is at its bound.

    While disconnected this is the outage buffer; while connected it means the
    proxy reads slower than the program sends (``await client.drain()``).
    """

    def __init__(
        self,
        cls: int,
        size: int,
        *,
        count: int,
        nbytes: int,
        max_messages: int,
        max_bytes: int,
        connected: bool,
        address: str,
    ) -> None:
        self.cls, self.size = cls, size
        self.count, self.nbytes = count, nbytes
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self.connected = connected
        why = (
            "the proxy is not reading as fast as messages are sent (await drain())"
            if connected
            else f"the proxy at {format_address(address)} is unreachable"
        )
        super().__init__(
            f"send buffer full ({count}/{max_messages} messages, {nbytes}/{max_bytes} bytes): "
            f"{why}; message of class {format_mask(cls)} ({size} bytes) refused"
        )


class ProxyUnavailable(ClientError):
    """The first connection failed and the caller asked to wait for it."""

    def __init__(self, address: str, reason: str) -> None:
        self.address, self.reason = address, reason
        super().__init__(f"cannot reach the smd proxy at {format_address(address)}: {reason}")


class ClientClosed(ClientError):
    """The client was closed: nothing more is sent or received."""


class SendRefused(ClientError, PermissionError):
    """The proxy's policy does not let this process's user send the class (docs/security.md).

    Raised by ``send`` once the proxy has said so on the control stream; the
    proxy would drop the message (and count it) anyway.
    """

    def __init__(self, cls: int, denied: int) -> None:
        self.cls, self.denied = cls, denied
        super().__init__(
            f"the proxy's policy does not let this user send {format_mask(cls & denied)}: "
            f"message refused (may not send: {format_mask(denied)})"
        )


class NotNow(Exception):
    """Raised by a sink that cannot take a message yet; it is offered again later."""
