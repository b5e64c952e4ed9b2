"""The CPD probe's byte stream: plain TCP, or TLS run over memory BIOs by us.

Rules of this module:

- A :class:`Stream` has ``send(data)``, ``recv() -> bytes`` (``b""`` at the
  end) and ``close()``; the HTTP side (h11 in :mod:`smdbus.net._cpd`) does
  not know which kind it has.
- TLS is done with :class:`ssl.SSLObject` over two :class:`ssl.MemoryBIO`
  (the stdlib's sans-IO TLS), on top of a plain asyncio stream, not with
  asyncio's own TLS. So the daemon can import asyncio without ``ssl``
  (see :mod:`smdbus._nossl`): ``ssl`` and its 4 MiB of libssl/libcrypto are
  loaded when a probe is ``https``, not in every process.
- Making the connection, including the TLS handshake and the certificate
  check, is :func:`connect`; what fails there is a :class:`ConnectFailed`
  (the CPD's "connect" failure, worth retrying), except a name that does not
  resolve (``socket.gaierror``, raised as it is).
- An end of the TCP stream without TLS's close_notify reads as the end:
  the HTTP parser then decides whether what came was complete.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

READ_SIZE = 4096


class ConnectFailed(OSError):
    """The connection could not be made: refused, unreachable, or the TLS handshake failed."""


class Stream:
    """Plain TCP over an asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def recv(self) -> bytes:
        return await self._reader.read(READ_SIZE)

    def close(self) -> None:
        self._writer.close()


class TlsStream(Stream):
    """TLS over a plain stream, through an :class:`ssl.SSLObject` and two memory BIOs."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext,
        host: str,
    ) -> None:
        import ssl

        super().__init__(reader, writer)
        self._ssl = ssl
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=host)

    async def handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                break
            except self._ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    raise ConnectionResetError(
                        "the server closed during the TLS handshake"
                    ) from None
        await self._flush()

    async def send(self, data: bytes) -> None:
        self._tls.write(data)
        await self._flush()

    async def recv(self) -> bytes:
        while True:
            try:
                return self._tls.read(READ_SIZE)
            except self._ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    return b""
            except (self._ssl.SSLZeroReturnError, self._ssl.SSLEOFError):
                return b""

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            await super().send(data)

    async def _fill(self) -> bool:
        """Feed what the server sent to TLS; False at the end of the TCP stream."""
        data = await super().recv()
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True


async def connect(host: str, port: int, tls: ssl.SSLContext | None = None) -> Stream:
    """A stream to ``host:port``, with TLS (checked by ``tls``) if given one."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except socket.gaierror:
        raise
    except OSError as e:
        raise ConnectFailed(f"{host}:{port}: {e.strerror or e}") from e
    if tls is None:
        return Stream(reader, writer)
    stream = TlsStream(reader, writer, tls, host)
    try:
        await stream.handshake()
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        stream.close()
        raise ConnectFailed(f"TLS with {host}: {e}") from e
    except BaseException:
        stream.close()
        raise
    return stream
