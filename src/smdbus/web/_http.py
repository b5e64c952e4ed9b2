"""HTTP/1.1 on asyncio streams, through h11: the thin adapter under the web view.

Rules
-----
- h11 (sans I/O, the HTTP half of httpx) turns bytes into request events and
  responses into bytes; this module only moves bytes between it and asyncio
  streams, on the daemon's own loop. Why h11 and not aiohttp: docs/web.md
  (import time and memory, measured).
- Bounded, whoever connects: at most ``max_clients`` connections (more get
  503 and are closed, counted in ``refused``); request heads up to
  :data:`MAX_HEAD` bytes, bodies up to :data:`MAX_BODY` (413); a request
  must arrive within :data:`HEAD_TIMEOUT` s, and an idle keep-alive
  connection is closed after :data:`IDLE_TIMEOUT` s.
- A handler returns a :class:`Response`, or a :class:`Stream` (Server-Sent
  Events): the head goes out and the stream's ``run`` gets a writer until the
  client goes away or the stream ends; the connection ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import h11

log = logging.getLogger("smdbus.web")

MAX_HEAD = 16 * 1024
MAX_BODY = 4096
HEAD_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names; a repeated header keeps its last value."""
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


class StreamWriter:
    """What a :class:`Stream` writes to; ``buffered`` says how far the client is behind."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        self._conn = conn
        self._writer = writer
        self.closed = asyncio.get_running_loop().create_future()

    def write(self, data: bytes) -> None:
        if self.closed.done():
            return
        out = self._conn.send(h11.Data(data=data))
        if out:
            self._writer.write(out)

    def buffered(self) -> int:
        transport = self._writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def close(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass
class Stream:
    """An endless response: ``run(writer)`` is awaited until it returns or the client leaves."""

    run: Callable[[StreamWriter], Awaitable[None]]
    content_type: str = "text/event-stream"


Handler = Callable[[Request], Awaitable[Response | Stream]]

_REASONS = {
    200: b"OK",
    204: b"No Content",
    302: b"Found",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    503: b"Service Unavailable",
}

_COMMON = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]


class HttpServer:
    """Serves ``handler`` on any number of listening sockets (TCP and Unix)."""

    def __init__(self, handler: Handler, *, max_clients: int) -> None:
        self.handler = handler
        self.max_clients = max_clients
        self.servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.refused = 0
        self.requests = 0

    @property
    def connections(self) -> int:
        return len(self._writers)

    async def listen_tcp(self, host: str, port: int) -> int:
        """Listen on ``host:port``; returns the port (useful with 0)."""
        server = await asyncio.start_server(self._accept, host, port, limit=MAX_HEAD)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def listen_unix(self, path: str) -> None:
        server = await asyncio.start_unix_server(self._accept, path, limit=MAX_HEAD)
        self.servers.append(server)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._writers) >= self.max_clients:
            self.refused += 1
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\n"
                b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            writer.close()
            return
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # close() ends us; asyncio logs a cancelled connection task as an error
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        first = True
        while True:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT if first else IDLE_TIMEOUT):
                    request = await self._read(conn, reader)
            except TimeoutError:
                if conn.their_state is h11.SEND_BODY or (
                    conn.their_state is h11.IDLE and conn.our_state is h11.IDLE and first
                ):
                    self._send(conn, writer, Response(408, b"request timeout\n"))
                return
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint
                with contextlib.suppress(h11.LocalProtocolError):
                    self._send(conn, writer, Response(status, f"{e}\n".encode()))
                return
            except _TooLarge:
                self._send(conn, writer, Response(413, b"request body too large\n"))
                return
            if request is None:
                return
            first = False
            self.requests += 1
            try:
                result = await self.handler(request)
            except Exception:
                log.exception("web: handler failed for %s %s", request.method, request.path)
                result = Response(503, b"internal error\n")
            if isinstance(result, Stream):
                await self._stream(conn, reader, writer, result)
                return
            self._send(conn, writer, result)
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(MAX_HEAD)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return _request(head, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None
            else:  # PAUSED: the client pipelined; we answer one at a time
                return None

    def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, r: Response) -> None:
        headers = [
            *_COMMON,
            (b"content-type", r.content_type.encode()),
            (b"content-length", str(len(r.body)).encode()),
            *((k.encode(), v.encode()) for k, v in r.headers),
        ]
        reason = _REASONS.get(r.status, b"")
        out = conn.send(h11.Response(status_code=r.status, headers=headers, reason=reason))
        if r.body:
            out = (out or b"") + (conn.send(h11.Data(data=r.body)) or b"")
        out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        writer.write(out)

    async def _stream(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: Stream,
    ) -> None:
        headers = [*_COMMON, (b"content-type", stream.content_type.encode())]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
        out = StreamWriter(conn, writer)
        runner = asyncio.ensure_future(stream.run(out))
        gone = asyncio.ensure_future(_until_eof(reader))
        try:
            await asyncio.wait([runner, gone, out.closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            out.close()
            for f in (runner, gone):
                f.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await f


class _TooLarge(Exception):
    pass


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Wait for the client to hang up (what it sends on a stream is read and ignored)."""
    while await reader.read(4096):
        pass


def _request(head: h11.Request, body: bytes) -> Request:
    target = head.target.decode("ascii", "replace")
    parts = urlsplit(target)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
    return Request(
        method=head.method.decode("ascii", "replace"),
        path=parts.path,
        query=dict(parse_qsl(parts.query)),
        headers=headers,
        body=body,
    )
