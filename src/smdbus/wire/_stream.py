"""A minimal asyncio connection to a proxy, for the command-line tools.

The one module of :mod:`smdbus.wire` that does I/O: a thin adapter putting the
sans-IO :class:`~smdbus.wire._protocol.Connection` on an asyncio stream. It opens
one stream, waits for CREATE_RESULT, then sends and receives messages; no
reconnecting, no outage buffer, no bridging (that is :mod:`smdbus.client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from types import TracebackType

from smdbus.wire._address import DEFAULT_ADDRESS, format_address, parse_address
from smdbus.wire._blocking import created, next_event
from smdbus.wire._decoder import Role
from smdbus.wire._events import RxPayload, StreamType, TxPayload
from smdbus.wire._frames import SMD_STREAMTYPE, WIRE_MAX_PAYLOAD
from smdbus.wire._protocol import Connection


class WireStream:
    """One open stream to a proxy. Make it with :meth:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: Connection,
        address: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = conn
        self.address = address

    @classmethod
    async def connect(
        cls,
        address: str = DEFAULT_ADDRESS,
        mask: int = 0,
        *,
        streamtype: str = SMD_STREAMTYPE,
        timeout: float = 3.0,
        max_payload: int = WIRE_MAX_PAYLOAD,
    ) -> WireStream:
        """Connect, create the stream and wait for the proxy's CREATE_RESULT.

        Raises ``ConnectionError`` (naming the address) when there is no proxy,
        it refuses the stream, or it does not answer within ``timeout`` (C: 3 s).
        """
        address = parse_address(address)  # "@name", "+@name" or a kernel address
        shown = format_address(address)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await _open(address)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot connect to the proxy at {shown}: {exc}") from None
        conn = Connection(Role.CLIENT, max_payload=max_payload)
        stream = cls(reader, writer, conn, address)
        writer.write(conn.send(StreamType(streamtype, mask, os.getpid())))
        try:
            async with asyncio.timeout(timeout):
                await stream._created()
        except TimeoutError:
            await stream.close()
            raise ConnectionError(
                f"proxy at {shown} sent no CREATE_RESULT in {timeout:g} s"
            ) from None
        except ConnectionError:
            await stream.close()
            raise
        return stream

    async def _created(self) -> None:
        while True:
            event = next_event(self._conn)
            if event is None:
                await self._read()
            elif created(self._conn, event, self.address) is not None:
                return

    async def _read(self) -> None:
        data = await self._reader.read(1 << 18)
        if not data:
            raise ConnectionResetError(f"proxy at {format_address(self.address)} hung up")
        self._conn.receive_data(data)

    async def send(self, cls: int, payload: bytes, timestamp_us: int = 0) -> None:
        """Send one message (TX_PAYLOAD) and wait until the socket took it."""
        self.send_nowait(cls, payload, timestamp_us)
        await self._writer.drain()

    def send_nowait(self, cls: int, payload: bytes, timestamp_us: int = 0) -> None:
        """Queue one message for writing; call :meth:`drain` now and then."""
        self._writer.write(self._conn.send(TxPayload(cls, timestamp_us, payload)))

    async def drain(self) -> None:
        await self._writer.drain()

    async def receive(self) -> RxPayload:
        """The next message from the proxy (CONNSTATE and the like are skipped)."""
        while True:
            event = next_event(self._conn)
            if event is None:
                await self._read()
            elif type(event) is RxPayload:
                return event

    def __aiter__(self) -> WireStream:
        return self

    async def __anext__(self) -> RxPayload:
        try:
            return await self.receive()
        except ConnectionResetError:
            raise StopAsyncIteration from None

    def close_nowait(self) -> None:
        """Close the socket without waiting (for code that may not await: a coroutine being
        closed because its loop is gone)."""
        self._writer.close()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> WireStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams on a socket connected here: any loop serves it.

    ``asyncio.open_unix_connection(address)`` leaves the connect to the loop,
    and uvloop's refuses an abstract address (EINVAL), the proxy's default.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, address)
        return await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
    except BaseException:
        sock.close()
        raise
