"""An asyncio client of the smd proxy: one ``_lws_smd`` stream that survives the proxy.

Theory of operation. The client owns a non-blocking Unix socket and drives it
with the loop's reader/writer callbacks (no transport object: the client must
know exactly which bytes the kernel took, so a frame cut by a crash is sent
again whole). States::

    IDLE --start--> CONNECTING --socket up, STREAMTYPE sent--> CREATING
    CREATING --CREATE_RESULT ok--> READY
    CONNECTING/CREATING/READY --refused, EOF, error, 3 s without CREATE_RESULT--> WAITING
    WAITING --reconnect_delay (1 s, as C)--> CONNECTING
    any --close()--> CLOSED

Rules:

- TX_PAYLOAD is written only in READY. Before that, and during an outage,
  sends go to the :class:`~smdbus.client.outbox.Outbox`, which is bounded;
  past the bound :meth:`Client.send` raises :class:`BufferFull`.
- A lone message is written at once; bursts are batched. A send on the
  loop thread with nothing pending writes its frame straight to the socket
  and opens a *pass*; further sends in the same pass append to the outbox,
  which is written in one ``send`` call when the loop next turns (or at once
  when 16 KiB are waiting, so a sender that never yields still moves data).
  Sends from other threads append and wake the loop.
- Input is taken on the wire decoder's hot path: no event object per
  message; ``on_message`` is called straight from the parse loop
  (:meth:`~smdbus.wire.Decoder.dispatch`) and ``async for`` reads an inbox
  filled without a Python call per message (:meth:`~smdbus.wire.Decoder.collect`).
- Input goes to one *sink*: the inbox (``async for`` / :meth:`Client.receive`),
  an ``on_message`` callback, or a bus bridge. A sink that cannot take more
  makes the client stop reading the socket, which is how a slow consumer
  slows the proxy down instead of growing memory here.
- :meth:`Client.send` is thread-safe; everything else runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from smdbus.classes import ALL_CLASSES, format_mask
from smdbus.client.echo import EchoFilter
from smdbus.client.errors import BufferFull, ClientClosed, ProxyUnavailable
from smdbus.client.outbox import EchoKey, Outbox
from smdbus.errors import PayloadTooLarge
from smdbus.wire import (
    DEFAULT_ADDRESS,
    MAX_BODY,
    SMD_STREAMTYPE,
    ConnState,
    CreateResult,
    DecodeError,
    Decoder,
    Role,
    RxPayload,
    format_address,
    parse_address,
    stream_type_frame,
)
from smdbus.wire.frames import PAYLOAD_HEAD

if TYPE_CHECKING:
    from smdbus.bus import Bus
    from smdbus.client.bridge import Bridge

log = logging.getLogger("smdbus.client")

DEFAULT_RECONNECT_DELAY = 1.0
"""Seconds between a drop and the next attempt, as the C client."""
DEFAULT_CREATE_TIMEOUT = 3.0
"""Seconds to wait for CREATE_RESULT, as the C client."""
DEFAULT_MAX_BUFFERED = 1000
"""Messages kept unsent (outage or a slow proxy) before sends are refused."""
DEFAULT_MAX_BUFFERED_BYTES = 512 * 1024
"""Bytes of frames kept unsent before sends are refused (1000 full-size messages fit)."""
DEFAULT_MAX_INBOX = 10_000
"""Received messages waiting for ``receive()`` before the client stops reading."""

_FLUSH_AT = 16 * 1024  # write at once, without waiting for the loop's turn
_RECV_SIZE = 64 * 1024
"""Bytes asked of each recv. Not more: CPython allocates the whole size for every call,
and at 128 KiB and up glibc hands that out and takes it back from the kernel each time
(measured here: a one-frame recv of 256 KiB costs ~19 us, of 64 KiB ~2.5 us)."""
_pack_head = PAYLOAD_HEAD.pack
_new = tuple.__new__
_monotonic_ns = time.monotonic_ns

OnMessage: TypeAlias = Callable[[int, int, bytes], object]
"""``on_message(cls, timestamp_us, payload)``, called on the client's loop."""
Clock: TypeAlias = Callable[[], int]
"""Monotonic microseconds."""


class Message(NamedTuple):
    """One SMD message from the proxy."""

    cls: int
    timestamp_us: int
    """CLOCK_MONOTONIC µs when the message was created (comparable across processes)."""
    payload: bytes


class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CREATING = "creating"
    READY = "ready"
    WAITING = "waiting"
    CLOSED = "closed"


# Enum members looked up as class attributes cost ~70 ns each in 3.11: hot paths use these.
_READY = State.READY
_CLOSED = State.CLOSED


@dataclass(frozen=True)
class ClientStats:
    """Counters of one client (see ``Client.stats()``)."""

    state: str
    connects: int
    disconnects: int
    sent: int
    received: int
    buffered: int
    buffered_bytes: int
    refused: int
    echoes_suppressed: int
    bridge_dropped: int
    last_error: str | None


class NotNow(Exception):
    """Raised by a sink that cannot take a message yet; it is offered again later."""


def _now_us() -> int:
    return time.monotonic_ns() // 1000


class Client:
    """One connection to an smd proxy, kept up by reconnecting.

    Use :func:`smdbus.client.connect` to make and start one.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        mask: int = ALL_CLASSES,
        *,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        create_timeout: float = DEFAULT_CREATE_TIMEOUT,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        max_inbox: int = DEFAULT_MAX_INBOX,
        on_message: OnMessage | None = None,
        echo_ttl: float = 10.0,
        clock: Clock | None = None,
        name: str = SMD_STREAMTYPE,
    ) -> None:
        if not 0 <= mask <= 0xFFFFFFFF:
            raise ValueError(f"mask must fit 32 bits, got {mask:#x}")
        if reconnect_delay < 0 or create_timeout <= 0:
            raise ValueError(
                f"reconnect_delay must be >= 0 and create_timeout > 0, "
                f"got {reconnect_delay} and {create_timeout}"
            )
        if max_inbox < 1:
            raise ValueError(f"max_inbox must be positive, got {max_inbox}")
        self.address = parse_address(address)
        self.mask = mask
        self.stream_name = name
        self.reconnect_delay = reconnect_delay
        self.create_timeout = create_timeout
        self.max_inbox = max_inbox
        self._clock: Clock = clock or _now_us
        self._state = State.IDLE
        self._lock = threading.Lock()
        self._outbox = Outbox(max_buffered, max_buffered_bytes)
        self._echo = EchoFilter(int(echo_ttl * 1_000_000), 4 * max_buffered + 1024, self._clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._sock: socket.socket | None = None
        self._fd = -1
        self._decoder: Decoder | None = None
        self._flush_scheduled = False
        self._writing = False  # a writer callback waits for the socket
        self._input_paused = False
        self._reader_added = False
        self._held: tuple[int, int, bytes] | None = None  # offered to the sink, not taken
        self._backlog: deque[tuple[int, int, bytes]] = deque()
        self._inbox: deque[Message] = deque()
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._ready_waiters: list[asyncio.Future[None]] = []
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._on_message = on_message
        self._sink: Callable[[int, int, bytes], bool] = (
            self._to_inbox if on_message is None else self._to_callback
        )
        self.bridge_obj: Bridge | None = None
        self._disconnected_at: float | None = None
        # counters
        self._connects = 0
        self._disconnects = 0
        self._sent = 0
        self._received = 0
        self._refused = 0
        self.bridge_dropped = 0
        self._last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def connected(self) -> bool:
        """True while the stream exists at the proxy (CREATE_RESULT received)."""
        return self._state is State.READY

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    async def start(self, wait: bool = True) -> None:
        """Begin connecting on the running loop.

        With ``wait``, return once the stream exists, or raise
        :class:`ProxyUnavailable` (and close) if the first attempt fails.
        Without, return at once; sends are buffered until the stream exists.
        """
        if self._state is not State.IDLE:
            raise RuntimeError(f"client already started ({self._state.value})")
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._first = self._loop.create_future() if wait else None
        self._attempt()
        if self._first is not None:
            try:
                await self._first
            except ProxyUnavailable:
                await self.close(timeout=0)
                raise

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the stream exists (raises TimeoutError, ClientClosed)."""
        if self._state is State.READY:
            return
        if self._state is State.CLOSED:
            raise ClientClosed("client is closed")
        fut = self._require_loop().create_future()
        self._ready_waiters.append(fut)
        await asyncio.wait_for(fut, timeout)

    async def close(self, timeout: float = 1.0) -> None:
        """Flush what can be written within ``timeout``, then hang up and stop reconnecting."""
        if self._state is State.CLOSED:
            return
        if self._state is State.READY and self._outbox.count and timeout > 0:
            with contextlib.suppress(TimeoutError, ClientClosed):
                await asyncio.wait_for(self._wait_outbox(0, 0), timeout)
        self._state = State.CLOSED
        if self.bridge_obj is not None:
            self.bridge_obj.detach()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connect_task is not None:
            self._connect_task.cancel()
        self._hang_up()
        with self._lock:
            dropped = self._outbox.clear()
        if dropped:
            log.warning(
                "client for %s closed with %d unsent messages",
                format_address(self.address),
                dropped,
            )
        closed = ClientClosed("client is closed")
        for fut in [*self._ready_waiters, *self._drain_waiters]:
            if not fut.done():
                fut.set_exception(closed)
        self._ready_waiters.clear()
        self._drain_waiters.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(closed)
        self._wake_inbox()

    async def __aenter__(self) -> Client:
        if self._state is State.IDLE:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending -----------------------------------------------------------

    def send(
        self,
        cls: int,
        payload: bytes | bytearray | memoryview | str,
        *,
        timestamp_us: int | None = None,
    ) -> None:
        """Queue one message for the proxy (thread-safe, never blocks).

        Raises :class:`PayloadTooLarge` over 383 bytes (the C proxy's limit),
        :class:`BufferFull` when the unsent buffer is at its bound, and
        :class:`ClientClosed` after :meth:`close`.
        """
        if type(payload) is not bytes:
            payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        self._send(cls, payload, timestamp_us, None)

    def send_json(self, cls: int, obj: Any) -> None:
        """Send ``obj`` as compact JSON, as lws's own messages are."""
        self._send(cls, json.dumps(obj, separators=(",", ":")).encode(), None, None)

    def _send(self, cls: int, payload: bytes, ts: int | None, key: EchoKey | None) -> None:
        state = self._state
        if state is _CLOSED:
            raise ClientClosed(f"client is closed; message of class {format_mask(cls)} refused")
        size = len(payload)
        if size > MAX_BODY:
            raise PayloadTooLarge(cls, size, MAX_BODY)
        if not 0 < cls < 1 << 64:
            raise ValueError(f"class must be a non-empty 64-bit mask, got {cls:#x}")
        now = _monotonic_ns() // 1000 if self._clock is _now_us else self._clock()
        # TX_PAYLOAD: header, Secure Streams header (whole message, our time), SMD header
        frame = _pack_head(0xAD, 32 + size, 3, 0, now, cls, now if ts is None else ts) + payload
        lock = self._lock
        lock.acquire()  # not "with": that costs twice as much, and this runs per message
        try:
            outbox = self._outbox
            held = outbox.offer(frame, key)
            if held < 0:
                self._refused += 1
                raise BufferFull(
                    cls,
                    size,
                    count=outbox.count,
                    nbytes=outbox.nbytes,
                    max_messages=outbox.max_messages,
                    max_bytes=outbox.max_bytes,
                    connected=state is _READY,
                    address=self.address,
                )
            if state is not _READY or self._writing:
                return  # written on connecting, or by the writer callback
            if self._flush_scheduled:  # a pass is open: batch, unless a lot is waiting
                if held >= _FLUSH_AT and threading.get_ident() == self._thread_id:
                    self._flush_locked()
            elif threading.get_ident() == self._thread_id:
                # a lone message goes now; later sends of this pass are batched
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)  # type: ignore[union-attr]
                self._flush_locked()
            else:
                self._flush_scheduled = True
                self._loop.call_soon_threadsafe(self._flush)  # type: ignore[union-attr]
        finally:
            lock.release()

    async def drain(self) -> None:
        """Wait while the unsent buffer is over half its bound (flow control for fast senders).

        During an outage this waits for the reconnect.
        """
        ob = self._outbox
        await self._wait_outbox(ob.max_messages // 2, ob.max_bytes // 2)

    async def _wait_outbox(self, messages: int, nbytes: int) -> None:
        ob = self._outbox
        while ob.count > messages or ob.nbytes > nbytes:
            if self._state is State.CLOSED:
                raise ClientClosed("client closed while draining")
            fut = self._require_loop().create_future()
            self._drain_waiters.append(fut)
            await fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        """Write what the socket takes; hold the lock (sends from threads append meanwhile)."""
        sock = self._sock
        ob = self._outbox
        if self._state is not _READY or sock is None or not ob.count:
            return
        try:
            n = sock.send(ob.data())
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._loop.call_soon(self._lost, f"write failed: {exc}")  # type: ignore[union-attr]
            return
        before = ob.count
        keys = ob.written(n)
        self._sent += before - ob.count
        if keys:
            expect = self._echo.expect
            for key in keys:
                expect(key)
        if ob.count:
            if not self._writing:
                self._writing = True
                self._loop.add_writer(self._fd, self._flush)  # type: ignore[union-attr]
        elif self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)  # type: ignore[union-attr]
        if self._drain_waiters:
            self._loop.call_soon(self._wake_drain)  # type: ignore[union-attr]

    def _wake_drain(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- receiving ---------------------------------------------------------

    async def receive(self) -> Message:
        """The next message (raises :class:`ClientClosed` once closed and empty)."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise ClientClosed("client is closed") from None

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Message:
        inbox = self._inbox
        while not inbox:
            if self._state is State.CLOSED:
                raise StopAsyncIteration
            if self._sink != self._to_inbox:
                raise RuntimeError(
                    "this client hands its messages to a bridge or callback, not to receive()"
                )
            fut = self._require_loop().create_future()
            self._inbox_waiter = fut
            await fut
        msg = inbox.popleft()
        if self._input_paused and len(inbox) <= self.max_inbox // 2 and self._held is None:
            self.resume_input()
        return msg

    def _to_inbox(self, cls: int, ts: int, body: bytes) -> bool:
        inbox = self._inbox
        inbox.append(_new(Message, (cls, ts, body)))  # Message(...) without its Python __new__
        w = self._inbox_waiter
        if w is not None:
            self._inbox_waiter = None
            if not w.done():
                w.set_result(None)
        return len(inbox) < self.max_inbox

    def _to_callback(self, cls: int, ts: int, body: bytes) -> bool:
        try:
            self._on_message(cls, ts, body)  # type: ignore[misc]
        except NotNow:
            raise
        except Exception:
            log.exception("on_message failed on a %s message", format_mask(cls))
        return True

    def _wake_inbox(self) -> None:
        w = self._inbox_waiter
        if w is not None:
            self._inbox_waiter = None
            if not w.done():
                w.set_result(None)

    def set_sink(self, sink: Callable[[int, int, bytes], bool]) -> None:
        """Hand every incoming message to ``sink`` (used by the bridge).

        ``sink`` returns False to make the client stop reading after this
        message, or raises :class:`NotNow` to have it offered again once
        :meth:`resume_input` is called.
        """
        self._sink = sink
        while self._inbox:  # what arrived before keeps its order
            m = self._inbox.pop()
            self._backlog.appendleft((m.cls, m.timestamp_us, m.payload))
        self._wake_inbox()

    def pause_input(self) -> None:
        """Stop reading the socket (the proxy then slows the senders down)."""
        self._input_paused = True
        if self._reader_added:
            self._reader_added = False
            self._loop.remove_reader(self._fd)  # type: ignore[union-attr]

    def resume_input(self) -> None:
        """Read again: first what was held back, then the socket. Call on the loop."""
        if self._state is State.CLOSED:
            return
        self._input_paused = False
        self._pump()
        if not self._input_paused and self._sock is not None and not self._reader_added:
            self._reader_added = True
            self._loop.add_reader(self._fd, self._on_readable)  # type: ignore[union-attr]

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"read failed: {exc}")
            return
        if not data:
            self._lost("the proxy closed the connection")
            return
        self._decoder.feed(data)  # type: ignore[union-attr]
        self._pump()

    def _pump(self) -> None:
        """Offer held, backlogged and decoded messages to the sink until it says stop."""
        sink = self._sink
        item: tuple[int, int, bytes] | None = None
        try:
            while True:
                if self._held is not None:
                    item, self._held = self._held, None
                elif self._backlog:
                    item = self._backlog.popleft()
                else:
                    break
                if not sink(*item):
                    self.pause_input()
                    return
        except NotNow:
            self._held = item
            self.pause_input()
            return
        decoder = self._decoder
        if decoder is None:
            return
        next_event = decoder.next_event
        callback = self._on_message if sink == self._to_callback else None
        inbox = self._inbox if sink == self._to_inbox else None
        while True:
            ready = self._state is _READY  # before CREATE_RESULT, payloads are errors (below)
            if ready and inbox is not None:  # async for / receive(): no Python call per message
                room = self.max_inbox - len(inbox)
                n = decoder.collect(inbox.append, Message, room) if room > 0 else 0
                if n:
                    self._received += n
                    self._wake_inbox()
                if len(inbox) >= self.max_inbox:
                    self.pause_input()
                    return
            elif ready:
                try:
                    if callback is not None:
                        self._received += decoder.dispatch(callback)
                    else:
                        self._received += decoder.dispatch(sink, stop_on_false=True)
                        if decoder.stopped_by_sink:
                            self.pause_input()
                            return
                except NotNow:
                    self._received += decoder.dispatched
                    self._held = decoder.interrupted
                    self.pause_input()
                    return
                except Exception:
                    self._received += decoder.dispatched
                    cls = decoder.interrupted[0] if decoder.interrupted else 0
                    log.exception("on_message failed on a %s message", format_mask(cls))
                    continue
            ev = next_event()
            if ev is None:
                return
            if type(ev) is RxPayload:
                if self._state is not State.READY:
                    self._lost("the proxy sent a message before CREATE_RESULT")
                    return
                self._received += 1  # dispatch takes these; only a leftover lands here
                try:
                    if not sink(ev.cls, ev.timestamp, ev.body):
                        self.pause_input()
                        return
                except NotNow:
                    self._held = (ev.cls, ev.timestamp, ev.body)
                    self.pause_input()
                    return
            else:
                self._control(ev)
                if self._decoder is not decoder:  # the connection went away
                    return

    def _control(self, ev: object) -> None:
        if type(ev) is CreateResult:
            if self._state is not State.CREATING:
                self._lost("the proxy sent a second CREATE_RESULT")
            elif ev.result != 0:
                self._lost(f"the proxy refused the {self.stream_name} stream (result {ev.result})")
            else:
                self._ready()
        elif type(ev) is ConnState:
            pass  # CREATING/CONNECTING/CONNECTED: informational for SMD
        elif type(ev) is DecodeError:
            self._lost(f"bad frame from the proxy: {ev.message}")
        # RX credit, metadata and perf frames mean nothing for SMD: ignored

    # -- connection management ----------------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("client not started: use 'await smdbus.connect(...)'")
        return self._loop

    def _attempt(self) -> None:
        self._timer = None
        if self._state is State.CLOSED:
            return
        self._state = State.CONNECTING
        self._connect_task = self._require_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = self._require_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await self._connect_unix(sock)
            sock.send(stream_type_frame(self.stream_name, self.mask, os.getpid()))
        except OSError as exc:
            sock.close()
            self._failed(f"connect failed: {exc.strerror or exc}")
            return
        except asyncio.CancelledError:
            sock.close()
            raise
        finally:
            self._connect_task = None
        if self._state is State.CLOSED:
            sock.close()
            return
        self._sock = sock
        self._fd = sock.fileno()
        self._decoder = Decoder(Role.CLIENT)
        self._state = State.CREATING
        self._timer = loop.call_later(self.create_timeout, self._create_timed_out)
        if not self._input_paused:
            self._reader_added = True
            loop.add_reader(self._fd, self._on_readable)

    async def _connect_unix(self, sock: socket.socket) -> None:
        """Connect a non-blocking Unix socket.

        A Unix connect completes at once or fails, except when the proxy's
        listen backlog is full (many clients at once): then the kernel says
        EAGAIN and the right thing is to try again shortly, within the
        create timeout.
        """
        deadline = time.monotonic() + self.create_timeout
        delay = 0.001
        while True:
            try:
                sock.connect(self.address)
                return
            except BlockingIOError:
                if time.monotonic() + delay > deadline:
                    raise OSError(errno.EAGAIN, "the proxy's listen backlog stayed full") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _create_timed_out(self) -> None:
        self._timer = None
        self._lost(f"no CREATE_RESULT within {self.create_timeout:g} s")

    def _ready(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._state = State.READY
        self._connects += 1
        if self._disconnected_at is not None:
            log.info(
                "reconnected to %s after %.3f s",
                format_address(self.address),
                time.monotonic() - self._disconnected_at,
            )
            self._disconnected_at = None
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        waiters, self._ready_waiters = self._ready_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        with self._lock:
            self._flush_locked()

    def _lost(self, reason: str) -> None:
        """The connection is gone (or never came up): clean up and schedule the next try."""
        if self._state is State.CLOSED:
            return
        was_ready = self._state is State.READY
        self._hang_up()
        with self._lock:
            self._outbox.rewind()
        self._echo.clear()
        if was_ready:
            self._disconnects += 1
            self._disconnected_at = time.monotonic()
            log.warning(
                "connection to %s lost: %s; reconnecting in %g s",
                format_address(self.address),
                reason,
                self.reconnect_delay,
            )
        self._failed(reason)

    def _failed(self, reason: str) -> None:
        self._last_error = reason
        if self._state is State.CLOSED:
            return
        if self._first is not None and not self._first.done():
            self._first.set_exception(ProxyUnavailable(self.address, reason))
            return
        log.debug("attempt on %s failed: %s", format_address(self.address), reason)
        self._state = State.WAITING
        self._timer = self._require_loop().call_later(self.reconnect_delay, self._attempt)

    def _hang_up(self) -> None:
        if self._timer is not None and self._state is not State.WAITING:
            self._timer.cancel()
            self._timer = None
        sock, self._sock = self._sock, None
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            # messages already received stay ours: keep them for the sink
            for ev in decoder.events():
                if type(ev) is RxPayload:
                    self._backlog.append((ev.cls, ev.timestamp, ev.body))
        if sock is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            if self._reader_added:
                loop.remove_reader(self._fd)
            if self._writing:
                loop.remove_writer(self._fd)
        self._reader_added = False
        self._writing = False
        self._fd = -1
        sock.close()

    # -- bridging ----------------------------------------------------------

    def bridge(self, bus: Bus, export_mask: int | None = None, name: str | None = None) -> Bridge:
        """Join a local bus to the proxy's; see :class:`smdbus.client.bridge.Bridge`."""
        from smdbus.client.bridge import Bridge

        if self.bridge_obj is not None:
            raise RuntimeError("this client is already bridged to a bus")
        if self._on_message is not None:
            raise RuntimeError("a client with on_message cannot also bridge")
        self.bridge_obj = Bridge(self, bus, self.mask if export_mask is None else export_mask, name)
        return self.bridge_obj

    def send_bridged(self, cls: int, ts: int, payload: bytes) -> None:
        """Send a local bus message on, expecting its echo if our mask matches it."""
        self._send(cls, payload, ts, (cls, payload) if cls & self.mask else None)

    def is_echo(self, cls: int, body: bytes) -> bool:
        """Whether a message from the proxy is the echo of one the bridge sent (used up)."""
        return self._echo.is_echo((cls, body))

    # -- introspection -------------------------------------------------------

    def stats(self) -> ClientStats:
        with self._lock:
            buffered, nbytes = self._outbox.count, self._outbox.nbytes
        return ClientStats(
            state=self._state.value,
            connects=self._connects,
            disconnects=self._disconnects,
            sent=self._sent,
            received=self._received,
            buffered=buffered,
            buffered_bytes=nbytes,
            refused=self._refused,
            echoes_suppressed=self._echo.suppressed,
            bridge_dropped=self.bridge_dropped,
            last_error=self._last_error,
        )

    def __repr__(self) -> str:
        return (
            f"<Client {format_address(self.address)} mask={format_mask(self.mask)} "
            f"{self._state.value}>"
        )
