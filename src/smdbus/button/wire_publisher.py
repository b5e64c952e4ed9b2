"""A publish-only connection to the proxy over the ``_lws_smd`` wire.

Just enough client for button tools to put events on a device's bus from
another process: STREAMTYPE with an empty mask (we want nothing back), wait
for CREATE_RESULT, then one TX_PAYLOAD per message. The general client, with
reconnects and an outage buffer, is :mod:`smdbus.client`; this stays small so
the replay tool has no more to go wrong than it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from smdbus.errors import SmdError
from smdbus.wire import (
    SMD_STREAMTYPE,
    CreateResult,
    DecodeError,
    Decoder,
    Role,
    format_address,
    parse_address,
    stream_type_frame,
    tx_payload_frame,
)

CONNECT_TIMEOUT_S = 3.0
"""As the C client: three seconds for the proxy's CREATE_RESULT."""


class ProxyLost(SmdError):
    """The proxy connection is gone; the message was not sent."""


class WirePublisher:
    """``send(cls, payload)`` onto a proxy's bus: fits :class:`~smdbus.button.driver.Publisher`."""

    def __init__(
        self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.address = address
        self._reader = reader
        self._writer = writer
        self.sent = 0

    @classmethod
    async def connect(cls, address: str, timeout: float = CONNECT_TIMEOUT_S) -> WirePublisher:
        """Connect and create the stream; raises OSError / TimeoutError / ConnectionError."""
        target = parse_address(address)
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(target), timeout)
        try:
            writer.write(stream_type_frame(SMD_STREAMTYPE, 0, pid=os.getpid() & 0xFFFFFFFF))
            created = await asyncio.wait_for(_create_result(reader), timeout)
        except TimeoutError:
            writer.close()
            raise TimeoutError(f"no CREATE_RESULT from {address} within {timeout:g} s") from None
        except BaseException:
            writer.close()
            raise
        if not created.ok:
            writer.close()
            raise ConnectionError(f"{address} refused the stream (result {created.result})")
        return cls(format_address(target), reader, writer)

    def send(self, cls: int, payload: bytes) -> bool:
        if self._writer.is_closing():
            raise ProxyLost(f"connection to {self.address} is closed")
        now_us = time.monotonic_ns() // 1000
        self._writer.write(tx_payload_frame(cls, now_us, payload, time_us=now_us))
        self.sent += 1
        return True

    async def close(self, linger: float = 1.0) -> None:
        """Flush, half-close, and read until the proxy closes (at most ``linger`` s).

        Closing a Unix socket with unread bytes (the proxy's CONNSTATE frames)
        would reset the connection; the proxy would then read ECONNRESET
        instead of a clean end after our last message.
        """
        with contextlib.suppress(OSError):
            await self._writer.drain()
            if self._writer.can_write_eof():
                self._writer.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    while await self._reader.read(4096):
                        pass
        self._writer.close()
        with contextlib.suppress(OSError):  # the proxy went first: we had drained already
            await self._writer.wait_closed()


async def _create_result(reader: asyncio.StreamReader) -> CreateResult:
    decoder = Decoder(Role.CLIENT)
    while data := await reader.read(4096):
        for event in decoder.feed(data):
            if isinstance(event, DecodeError):
                raise ConnectionError(f"bad frame from the proxy: {event}")
            if isinstance(event, CreateResult):
                return event
    raise ConnectionError("the proxy closed the connection before CREATE_RESULT")
