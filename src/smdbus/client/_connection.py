"""An asyncio client of the smd proxy: one ``_lws_smd`` stream that survives the proxy.

Theory of operation. The client drives non-blocking Unix sockets with the
loop's reader/writer callbacks (no transport object: the client must know
exactly which bytes the kernel took, so a frame cut by a crash is sent again
whole). What exists only while connected (the socket, its decoder, its
create timer, the interest watch) lives in a :class:`~smdbus.client._link.Link`
that exists only while connected. One reconnect task makes one link at a
time and waits for it to end, so one failure leads to one reconnect however
many places notice it. States::

    IDLE --start--> CONNECTING --socket up, STREAMTYPE sent--> CREATING
    CREATING --CREATE_RESULT ok--> READY
    CONNECTING/CREATING/READY --refused, EOF, error, 3 s without CREATE_RESULT--> WAITING
    WAITING --reconnect_delay (1 s, as C)--> CONNECTING
    any --close()--> CLOSED

Rules:

- TX_PAYLOAD is written only in READY. Before that, and during an outage,
  sends go to the :class:`~smdbus.client._outbox.Outbox`, which is bounded;
  past the bound :meth:`Client.send` raises :class:`BufferFull`.
- Which proxy: our proxy marks its CREATE_RESULT (:mod:`smdbus.wire._control`).
  On our proxy bursts are batched: a send on the loop thread with nothing
  pending writes its frame straight to the socket and opens a *pass*;
  further sends in the same pass append to the outbox, which is written in
  one ``send`` call when the loop next turns (or at once when 16 KiB are
  waiting). On any other peer (a C proxy) the link is *paced*: one frame
  per write, one write per loop pass, and only once the proxy has read the
  last one (see :mod:`smdbus.client._link` for why).
- Who listens: on our proxy the link watches the proxy's union mask; a send
  of a class nobody listens to returns False and is not queued, as on the
  in-process bus. After a reconnect, the outage buffer is held (at most
  ``listen_grace``) until the classes it holds have listeners again.
- Confirmation: a message whose class is in the client's own mask comes
  back from the proxy (lws_smd's rule); that echo is the only confirmation
  the wire has. The client counts them; ``drain(confirm=True)`` and
  ``close(confirm=True)`` wait, within a bound, until they came back.
- Input is taken on the wire decoder's hot path: no event object per
  message; ``on_message`` is called straight from the parse loop
  (:meth:`~smdbus.wire.Decoder.dispatch`) and ``async for`` reads an inbox
  filled without a Python call per message (:meth:`~smdbus.wire.Decoder.collect`).
- Input goes to one *sink*: the inbox (``async for`` / :meth:`Client.receive`),
  an ``on_message`` callback, or a bus bridge. A sink that cannot take more
  makes the client stop reading the socket, which is how a slow consumer
  slows the proxy down instead of growing memory here.
- Every timer goes through the injected :class:`~smdbus.scheduler.Scheduler`.
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

from smdbus._escape import printable
from smdbus.classes import ALL_CLASSES, format_mask
from smdbus.client._bridge import Bridge
from smdbus.client._describe import keep_described
from smdbus.client._echo import EchoFilter
from smdbus.client._errors import (
    BufferFull,
    ClientClosed,
    NotNow,
    ProxyUnavailable,
    SendRefused,
)
from smdbus.client._interest import watch_interest
from smdbus.client._link import Link
from smdbus.client._outbox import Outbox, OutboxKey
from smdbus.errors import PayloadTooLarge
from smdbus.wire import (
    DEFAULT_ADDRESS,
    FLAGS_WHOLE,
    MAX_LABEL,
    PAYLOAD_HEAD,
    PAYLOAD_OVERHEAD,
    SMD_STREAMTYPE,
    WIRE_MAX_PAYLOAD,
    CreateResult,
    FrameType,
    RemoteProtocolError,
    RxPayload,
    StreamState,
    StreamType,
    format_address,
    is_our_proxy,
    parse_address,
)

if TYPE_CHECKING:
    from smdbus.bus import Bus
    from smdbus.scheduler import Scheduler, Timer

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
DEFAULT_LISTEN_GRACE = 2.0
"""Seconds the outage buffer waits after a reconnect for its classes to have listeners."""
DEFAULT_CONFIRM_TIMEOUT = 5.0
"""Seconds ``drain(confirm=True)`` waits for the echoes (the bound of a confirmation)."""

_FLUSH_AT = 16 * 1024  # write at once, without waiting for the loop's turn
_SPIN_PASSES = 100  # paced: loop passes to wait for the proxy to read before polling
_PACE_POLL = 0.001  # paced: seconds between looks at a proxy that stopped reading
_STOP_TIMEOUT = 1.0
"""close() waits this long at most for the tasks it cancelled (one loop pass, normally)."""
_RECV_SIZE = 64 * 1024
"""Bytes asked of each recv. Not more: CPython allocates the whole size for every call,
and at 128 KiB and up glibc hands that out and takes it back from the kernel each time
(measured here: a one-frame recv of 256 KiB costs ~19 us, of 64 KiB ~2.5 us)."""
_READ_ON = 4
"""Reads in one callback where the loop may drop the reader (uvloop), then a fresh
registration: 256 KiB, more than a default socket buffer (208 KiB) holds, so a dead proxy's
last bytes and its error are read in the one call uvloop makes after the error."""
_pack_head = PAYLOAD_HEAD.pack
_TX_PAYLOAD = int(FrameType.TX_PAYLOAD)  # plain ints: the send hot path packs them per message
_WHOLE = int(FLAGS_WHOLE)
_OPEN = StreamState.OPEN
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


class ClientState(enum.Enum):
    """Where a client is in its life (``Client.state``): not the wire's stream state."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CREATING = "creating"
    READY = "ready"
    WAITING = "waiting"
    CLOSED = "closed"


# Enum members looked up as class attributes cost ~70 ns each in 3.11: hot paths use these.
_READY = ClientState.READY
_CLOSED = ClientState.CLOSED


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
    proxy: str = "unknown"
    """``smdbus`` (our proxy: batched), ``other`` (a C proxy: paced), ``unknown`` (offline)."""
    interest: int | None = None
    """The proxy's union mask as last told (None: unknown, every class is sent)."""
    unheard: int = 0
    """Sends refused (returned False) because nobody listened to the class."""
    confirmed: int = 0
    """Messages whose echo came back."""
    awaiting_confirmation: int = 0
    """Messages written whose echo has not come back yet."""
    unconfirmed: int = 0
    """Messages written whose echo never came (connection lost, expired, over the bound)."""


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
        listen_grace: float = DEFAULT_LISTEN_GRACE,
        on_message: OnMessage | None = None,
        echo_ttl: float = 10.0,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        name: str = SMD_STREAMTYPE,
    ) -> None:
        if not 0 <= mask <= 0xFFFFFFFF:
            raise ValueError(f"mask must fit 32 bits, got {mask:#x}")
        if reconnect_delay < 0 or create_timeout <= 0 or listen_grace < 0:
            raise ValueError(
                f"reconnect_delay and listen_grace must be >= 0 and create_timeout > 0, "
                f"got {reconnect_delay}, {listen_grace} and {create_timeout}"
            )
        if max_inbox < 1:
            raise ValueError(f"max_inbox must be positive, got {max_inbox}")
        self.address = parse_address(address)
        self.mask = mask
        self.stream_name = name
        self.reconnect_delay = reconnect_delay
        self.create_timeout = create_timeout
        self.listen_grace = listen_grace
        self.max_inbox = max_inbox
        self._clock: Clock = clock or _now_us
        self._scheduler = scheduler
        self._state = ClientState.IDLE
        self._lock = threading.Lock()
        self._outbox = Outbox(max_buffered, max_buffered_bytes)
        self._echo = EchoFilter(int(echo_ttl * 1_000_000), 4 * max_buffered + 1024, self._clock)
        self._confirm = EchoFilter(int(echo_ttl * 1_000_000), 4 * max_buffered + 1024, self._clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._link: Link | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        """Tasks of closed links (interest watch, describer), cancelled and not yet ended."""
        self._interest: int | None = None  # the proxy's union mask (None: unknown)
        self._denied = 0  # classes the proxy's policy refuses us, as it told (0 while unknown)
        self._label: str | None = None  # what this client says of itself (describe)
        self._described = False
        self._holding = False  # the outage buffer waits for listeners
        self._hold_timer: Timer | None = None
        self._flush_scheduled = False
        self._stalled_passes = 0  # paced: loop passes in a row the proxy had not read
        self._input_paused = False
        self._held: tuple[int, int, bytes] | None = None  # offered to the sink, not taken
        self._backlog: deque[tuple[int, int, bytes]] = deque()
        self._inbox: deque[Message] = deque()
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._ready_waiters: list[asyncio.Future[None]] = []
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._interest_waiters: list[asyncio.Future[None]] = []
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
        self._unheard = 0
        self._confirmed = 0
        self._reported_unconfirmed = 0  # confirm.expired already reported by drain(confirm)
        self.bridge_dropped = 0
        self._last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def connected(self) -> bool:
        """True while the stream exists at the proxy (CREATE_RESULT received)."""
        return self._state is ClientState.READY

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @property
    def interest(self) -> int | None:
        """The classes somebody listens to at the proxy, as last told (None: unknown)."""
        return self._interest

    async def start(self, wait: bool = True) -> None:
        """Begin connecting on the running loop.

        With ``wait``, return once the stream exists, or raise
        :class:`ProxyUnavailable` (and close) if the first attempt fails.
        Without, return at once; sends are buffered until the stream exists.
        """
        if self._state is not ClientState.IDLE:
            raise RuntimeError(f"client already started ({self._state.value})")
        self._loop = loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        if self._scheduler is None:
            # imported here: importing smdbus.system costs ~1 MiB and ~10 ms that a
            # program importing smdbus (the proxy among them) should not pay for it
            from smdbus.scheduler import LoopScheduler

            self._scheduler = LoopScheduler(loop)
        self._first = loop.create_future() if wait else None
        self._state = ClientState.CONNECTING
        self._runner = loop.create_task(self._run())
        self._runner.add_done_callback(self._run_ended)
        if self._first is not None:
            try:
                await self._first
            except ProxyUnavailable:
                await self.close(timeout=0)
                raise

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the stream exists (raises TimeoutError, ClientClosed)."""
        if self._state is ClientState.READY:
            return
        if self._state is ClientState.CLOSED:
            raise ClientClosed("client is closed")
        fut = self._require_loop().create_future()
        self._ready_waiters.append(fut)
        await asyncio.wait_for(fut, timeout)

    def describe(self, label: str | None) -> None:
        """Label this client's stream at the proxy (``smd peers`` shows it); None clears it.

        At most ``MAX_LABEL`` (120) characters. The label is sent at once if
        connected to our proxy, and again on every reconnect; a C proxy never
        hears it (see :mod:`smdbus.client._describe`). Any thread.
        """
        if label is not None and len(label) > MAX_LABEL:
            raise ValueError(f"a label is at most {MAX_LABEL} characters, got {len(label)}")
        self._label, self._described = label, True
        link = self._link
        if link is None or self._state is not _READY:
            return  # sent when the stream exists (_ready)
        if threading.get_ident() == self._thread_id:
            self._start_describer(link)
        else:
            link.loop.call_soon_threadsafe(self._start_describer, link)

    def _start_describer(self, link: Link) -> None:
        if link is not self._link or link.closed or not link.ours:
            return
        if link.describer is None:
            link.label_changed = changed = asyncio.Event()
            link.describer = link.loop.create_task(
                keep_described(self.address, lambda: self._label, changed)
            )
        elif link.label_changed is not None:
            link.label_changed.set()

    async def wait_listeners(self, cls: int, timeout: float | None = None) -> None:
        """Wait until the proxy says somebody listens to ``cls`` (raises TimeoutError).

        Returns at once when the proxy tells nobody who listens (a C proxy):
        then :meth:`send` queues everything anyway. Use it where a publisher
        must not have its first messages refused because the subscriber it
        expects has only just joined (the mask reaches the client one
        round trip after the join).
        """
        await asyncio.wait_for(self._until_heard(int(cls)), timeout)

    async def _until_heard(self, cls: int) -> None:
        while True:
            if self._state is ClientState.CLOSED:
                raise ClientClosed("client is closed")
            link = self._link
            if self._state is ClientState.READY and link is not None:
                self._want_interest(link)
                if not link.ours or (link.watch is None and self._interest is None):
                    return  # nobody will tell: everything is sent
            if self._interest is not None and cls & self._interest:
                return
            fut = self._require_loop().create_future()
            self._interest_waiters.append(fut)
            await fut

    async def close(self, timeout: float = 1.0, *, confirm: bool = False) -> int:
        """Flush what can be written within ``timeout``, then hang up and stop reconnecting.

        With ``confirm``, wait (within ``timeout``) until the messages written
        came back from the proxy, as :meth:`drain` does. Returns how many
        messages are not known to have arrived: with ``confirm``, those not
        confirmed; without, those dropped unsent.
        """
        if self._state is ClientState.CLOSED:
            return 0
        unconfirmed = 0
        if confirm:
            with contextlib.suppress(ClientClosed):
                unconfirmed = await self.drain(confirm=True, timeout=timeout)
        elif self._state is ClientState.READY and self._outbox.count and timeout > 0:
            with contextlib.suppress(TimeoutError, ClientClosed):
                await asyncio.wait_for(self._wait_outbox(0, 0), timeout)
        self._state = ClientState.CLOSED
        if self.bridge_obj is not None:
            self.bridge_obj.detach()
        self._cancel_hold()
        runner, self._runner = self._runner, None
        ending = set(self._stopping)  # those of links lost before
        if runner is not None and runner is not asyncio.current_task() and not runner.done():
            runner.cancel()
            ending.add(runner)
        link, self._link = self._link, None
        if link is not None:
            self._salvage(link)
            link.close("client closed")
            ending |= self._stopping
        here = asyncio.get_running_loop()
        ending = {t for t in ending if not t.done() and t.get_loop() is here}
        if ending:
            # let what was cancelled finish now: a loop that ends right after close()
            # would otherwise destroy it pending (bounded: a task that ignores its
            # cancellation is logged by asyncio, not waited for)
            await asyncio.wait(ending, timeout=_STOP_TIMEOUT)
        with self._lock:
            dropped = self._outbox.clear()
        if dropped:
            log.warning(
                "client for %s closed with %d unsent messages",
                format_address(self.address),
                dropped,
            )
        closed = ClientClosed("client is closed")
        for fut in [*self._ready_waiters, *self._drain_waiters, *self._interest_waiters]:
            if not fut.done():
                fut.set_exception(closed)
        self._ready_waiters.clear()
        self._drain_waiters.clear()
        self._interest_waiters.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(closed)
        self._wake_inbox()
        return unconfirmed if confirm else dropped

    async def __aenter__(self) -> Client:
        if self._state is ClientState.IDLE:
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
    ) -> bool:
        """Queue one message for the proxy (thread-safe, never blocks).

        Returns False, queueing nothing, when the proxy said nobody listens to
        ``cls`` (our proxy only; on a C proxy or while disconnected the
        client cannot know, and queues). Raises :class:`PayloadTooLarge` over
        383 bytes (the C proxy's limit), :class:`BufferFull` when the unsent
        buffer is at its bound, and :class:`ClientClosed` after :meth:`close`.
        """
        if type(payload) is not bytes:
            payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        return self._send(cls, payload, timestamp_us, False)

    def send_json(self, cls: int, obj: Any) -> bool:
        """Send ``obj`` as compact JSON, as lws's own messages are."""
        return self._send(cls, json.dumps(obj, separators=(",", ":")).encode(), None, False)

    def _send(self, cls: int, payload: bytes, ts: int | None, bridged: bool) -> bool:
        if type(cls) is not int:
            cls = int(cls)  # Class members are IntFlags: their & is slow Python code
        state = self._state
        if state is _CLOSED:
            raise ClientClosed(f"client is closed; message of class {format_mask(cls)} refused")
        size = len(payload)
        if size > WIRE_MAX_PAYLOAD:
            raise PayloadTooLarge(cls, size, WIRE_MAX_PAYLOAD)
        if not 0 < cls < 1 << 64:
            raise ValueError(f"class must be a non-empty 64-bit mask, got {cls:#x}")
        interest = self._interest
        if interest is not None:
            if cls & self._denied:
                raise SendRefused(cls, self._denied)
            if not cls & interest and state is _READY:
                self._unheard += 1  # nobody listens: refused, as lws_smd and the local bus do
                return False
        elif state is _READY:
            link = self._link
            if link is not None and not link.watch_wanted:
                self._want_interest(link)  # a sender: learn who listens from now on
        now = _monotonic_ns() // 1000 if self._clock is _now_us else self._clock()
        # TX_PAYLOAD: header, Secure Streams header (whole message, our time), SMD header
        frame = (
            _pack_head(
                _TX_PAYLOAD, PAYLOAD_OVERHEAD + size, _WHOLE, 0, now, cls, now if ts is None else ts
            )
            + payload
        )
        key: OutboxKey | None = (cls, payload, bridged) if cls & self.mask else None
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
            link = self._link
            if state is not _READY or link is None or link.writing:
                return True  # written on connecting, or by the writer callback
            if self._flush_scheduled:  # a pass is open: batch, unless a lot is waiting
                if held >= _FLUSH_AT and link.ours and threading.get_ident() == self._thread_id:
                    self._flush_locked()
            elif threading.get_ident() == self._thread_id:
                # a lone message goes now; later sends of this pass are batched (or paced)
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)  # type: ignore[union-attr]
                self._flush_locked()
            else:
                self._flush_scheduled = True
                self._loop.call_soon_threadsafe(self._flush)  # type: ignore[union-attr]
        finally:
            lock.release()
        return True

    async def drain(self, *, confirm: bool = False, timeout: float | None = None) -> int:
        """Flow control, or with ``confirm`` a confirmation of what was sent.

        Without ``confirm``: wait while the unsent buffer is over half its
        bound (flow control for fast senders; during an outage this waits
        for the reconnect). Returns 0.

        With ``confirm``: wait until everything was written and every written
        message whose class is in this client's mask came back from the
        proxy, or ``timeout`` (default 5 s) passed. Returns how many messages
        are not confirmed: still unsent or awaiting their echo at the
        timeout, plus those whose echo can no longer come (the connection
        was lost, or they expired) since the last confirming drain. Messages
        of classes outside the mask cannot be confirmed and are not counted.
        """
        ob = self._outbox
        if not confirm:
            if timeout is None:
                await self._wait_outbox(ob.max_messages // 2, ob.max_bytes // 2)
            else:
                await asyncio.wait_for(
                    self._wait_outbox(ob.max_messages // 2, ob.max_bytes // 2), timeout
                )
            return 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._wait_confirmed(), DEFAULT_CONFIRM_TIMEOUT if timeout is None else timeout
            )
        with self._lock:
            unsent = ob.count_keys(bridged=False)
        self._confirm.clear()  # the account is settled: late echoes are not matched
        expired = self._confirm.expired
        missing = unsent + expired - self._reported_unconfirmed
        self._reported_unconfirmed = expired
        return missing

    async def _wait_confirmed(self) -> None:
        ob = self._outbox
        confirm = self._confirm
        while ob.count or len(confirm):
            if self._state is ClientState.CLOSED:
                raise ClientClosed("client closed while confirming")
            fut = self._require_loop().create_future()
            self._drain_waiters.append(fut)
            await fut

    async def _wait_outbox(self, messages: int, nbytes: int) -> None:
        ob = self._outbox
        while ob.count > messages or ob.nbytes > nbytes:
            if self._state is ClientState.CLOSED:
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
        link = self._link
        ob = self._outbox
        if self._state is not _READY or link is None or self._holding or not ob.count:
            return
        paced = link.paced
        if paced and link.unread():
            self._next_pass(stalled=True)  # the C proxy has not read the last frame yet
            return
        link.read_on = link.poller  # a death with this unread leaves POLLERR (see _link)
        try:
            n = link.sock.send(ob.first() if paced else ob.data())
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._loop.call_soon(self._lost, link, f"write failed: {exc}")  # type: ignore[union-attr]
            return
        before = ob.count
        keys = ob.written(n)
        self._sent += before - ob.count
        if keys:
            for key in keys:
                (self._echo if key[2] else self._confirm).expect((key[0], key[1]))
        if paced:
            if ob.count:
                self._next_pass(stalled=False)
        elif ob.count:
            if not link.writing:
                link.writing = True
                self._loop.add_writer(link.fd, self._flush)  # type: ignore[union-attr]
        elif link.writing:
            link.writing = False
            self._loop.remove_writer(link.fd)  # type: ignore[union-attr]
        if self._drain_waiters:
            self._loop.call_soon(self._wake_drain)  # type: ignore[union-attr]

    def _next_pass(self, *, stalled: bool) -> None:
        """Paced: try the next frame when the loop turns again.

        A proxy that stops reading would make that a busy loop: after
        ``_SPIN_PASSES`` passes without progress, look only every ``_PACE_POLL`` s.
        """
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        self._stalled_passes = self._stalled_passes + 1 if stalled else 0
        if self._stalled_passes > _SPIN_PASSES:
            self._timers.call_later(_PACE_POLL, self._flush)
        else:
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]

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
            if self._state is ClientState.CLOSED:
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

    def _to_inbox(self, cls: int, ts: int, payload: bytes) -> bool:
        inbox = self._inbox
        inbox.append(_new(Message, (cls, ts, payload)))  # Message(...) without its Python __new__
        w = self._inbox_waiter
        if w is not None:
            self._inbox_waiter = None
            if not w.done():
                w.set_result(None)
        return len(inbox) < self.max_inbox

    def _to_callback(self, cls: int, ts: int, payload: bytes) -> bool:
        try:
            self._on_message(cls, ts, payload)  # type: ignore[misc]
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
        link = self._link
        if link is not None and link.reader_added:
            link.reader_added = False
            link.loop.remove_reader(link.fd)

    def resume_input(self) -> None:
        """Read again: first what was held back, then the socket. Call on the loop."""
        if self._state is ClientState.CLOSED:
            return
        self._input_paused = False
        self._pump()
        link = self._link
        if not self._input_paused and link is not None and not link.reader_added:
            link.reader_added = True
            link.loop.add_reader(link.fd, self._on_readable, link)

    def _on_readable(self, link: Link) -> None:
        """Read once; on a loop that may drop the reader, read on (:mod:`~smdbus.client._link`).

        Reading on stops when the socket has nothing more, at the error or
        EOF, when the sink stops input, or after ``_READ_ON`` reads: then a
        fresh registration (a new poll on uvloop) takes the rest, as a live
        proxy may write on and on.
        """
        if link is not self._link:
            return
        reads = 0
        while True:
            try:
                data = link.sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(link, f"read failed: {exc}")
                return
            if not data:
                self._lost(link, "the proxy closed the connection")
                return
            link.conn.receive_data(data)
            self._pump()
            read_on = link.read_on
            if read_on is None or not link.reader_added or link is not self._link:
                return
            if not read_on.poll(0):
                return
            reads += 1
            if reads == _READ_ON:
                loop = link.loop
                loop.remove_reader(link.fd)
                loop.add_reader(link.fd, self._on_readable, link)
                return

    def _check_confirm(self, cls: int, ts: int, payload: bytes) -> bool:
        """The sink while confirmations are awaited: count our own echo, then deliver."""
        confirm = self._confirm
        if confirm.is_echo((cls, payload)) and not confirm and self._drain_waiters:
            self._wake_drain()
        return self._sink(cls, ts, payload)

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
        link = self._link
        if link is None:
            return
        conn = link.conn
        decoder = conn.decoder  # its bulk paths run only while the stream is OPEN (below)
        next_event = conn.next_event
        callback = self._on_message if sink == self._to_callback else None
        inbox = self._inbox if sink == self._to_inbox else None
        confirm = self._confirm
        while True:
            ready = conn.state is _OPEN  # payloads are legal: take them in bulk
            checking = ready and bool(confirm)  # our own messages are on their way back
            if ready and inbox is not None and not checking:
                # async for / receive(): no Python call per message
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
                    if callback is not None and not checking:
                        self._received += decoder.dispatch(callback)
                    else:
                        fn = self._check_confirm if checking else sink
                        self._received += decoder.dispatch(fn, stop_on_false=True)
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
            try:
                ev = next_event()
            except RemoteProtocolError as exc:
                self._lost(link, str(exc))
                return
            if ev is None:
                return
            if type(ev) is RxPayload:
                self._received += 1  # dispatch takes these; only a leftover lands here
                try:
                    fn = self._check_confirm if confirm else sink
                    if not fn(ev.cls, ev.timestamp_us, ev.payload):
                        self.pause_input()
                        return
                except NotNow:
                    self._held = (ev.cls, ev.timestamp_us, ev.payload)
                    self.pause_input()
                    return
            elif type(ev) is CreateResult:
                if conn.state is _OPEN:
                    self._ready(link, ev.rideshare)
                else:
                    self._lost(
                        link,
                        f"the proxy refused the {self.stream_name} stream (result {ev.result})",
                    )
                if self._link is not link:  # the connection went away
                    return
            # CONNSTATE (CREATING/CONNECTING/CONNECTED), RX credit, metadata and perf
            # frames mean nothing for SMD: the protocol checked their order, that is all

    # -- connection management ----------------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("client not started: use 'await smdbus.connect(...)'")
        return self._loop

    @property
    def _timers(self) -> Scheduler:
        assert self._scheduler is not None, "started clients have a scheduler"
        return self._scheduler

    async def _run(self) -> None:
        """The one reconnect task: one link at a time, one wait between two.

        Whatever notices a failure (a read, a write, the create timer, a bad
        frame) only closes the current link; this task alone decides to try
        again, so a failure cannot start two attempts.
        """
        while self._state is not _CLOSED:
            self._state = ClientState.CONNECTING
            reason = await self._connect_once()
            if self._state is _CLOSED:
                return
            self._last_error = reason
            self._state = ClientState.WAITING
            first = self._first
            if first is not None and not first.done():
                first.set_exception(ProxyUnavailable(self.address, reason))
                return
            log.debug("attempt on %s ended: %s", format_address(self.address), printable(reason))
            await self._sleep(self.reconnect_delay)

    def _run_ended(self, task: asyncio.Task[None]) -> None:
        """The reconnect task ends only by close() or a failed first attempt; else say why."""
        if not task.cancelled() and task.exception() is not None:
            self._last_error = f"reconnect task failed: {task.exception()!r}"
            log.error(
                "client for %s stopped reconnecting",
                format_address(self.address),
                exc_info=task.exception(),
            )

    async def _sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = self._require_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        timer = self._timers.call_later(delay, wake)
        try:
            await fut
        finally:
            timer.cancel()

    async def _connect_once(self) -> str:
        """Open one link and wait until it ends; the reason it ended (or failed to open)."""
        loop = self._require_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await self._connect_unix(sock)
        except OSError as exc:
            sock.close()
            return f"connect failed: {exc.strerror or exc}"
        except asyncio.CancelledError:
            sock.close()
            raise
        link = Link(sock, loop, self._stopping)
        try:
            sock.send(link.conn.send(StreamType(self.stream_name, self.mask, os.getpid())))
        except OSError as exc:
            link.close("connect failed")
            return f"connect failed: {exc.strerror or exc}"
        self._link = link
        self._state = ClientState.CREATING
        link.create_timer = self._timers.call_later(
            self.create_timeout,
            lambda: self._lost(link, f"no CREATE_RESULT within {self.create_timeout:g} s"),
        )
        if not self._input_paused:
            link.reader_added = True
            loop.add_reader(link.fd, self._on_readable, link)
        return await link.ended

    async def _connect_unix(self, sock: socket.socket) -> None:
        """Connect a non-blocking Unix socket.

        A Unix connect completes at once or fails, except when the proxy's
        listen backlog is full (many clients at once): then the kernel says
        EAGAIN and the right thing is to try again shortly, within the
        create timeout.
        """
        now = self._timers.now
        deadline = now() + self.create_timeout
        delay = 0.001
        while True:
            try:
                sock.connect(self.address)
                return
            except BlockingIOError:
                if now() + delay > deadline:
                    raise OSError(errno.EAGAIN, "the proxy's listen backlog stayed full") from None
                await self._sleep(delay)  # on the scheduler, as every client timer
                delay = min(delay * 2, 0.05)

    def _ready(self, link: Link, rideshare: bytes) -> None:
        if link.create_timer is not None:
            link.create_timer.cancel()
            link.create_timer = None
        link.ours = is_our_proxy(rideshare)
        self._state = ClientState.READY
        if self._described:
            self._start_describer(link)  # a new connection at the proxy: label it again
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
        waiters = [*self._ready_waiters, *self._interest_waiters]  # interest: which proxy now
        self._ready_waiters, self._interest_waiters = [], []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        if link.ours and self._outbox.count and self.listen_grace > 0:
            # what waited out the outage waits for its listeners too (within the grace)
            self._want_interest(link)
            self._holding = True
            self._hold_timer = self._timers.call_later(
                self.listen_grace, lambda: self._release(link, timed_out=True)
            )
            return
        with self._lock:
            self._flush_locked()

    def _want_interest(self, link: Link) -> None:
        """Open the interest watch of ``link`` if it has none yet (any thread).

        Opened on first need (a send, a held outage buffer, :meth:`wait_listeners`),
        so a client that only receives costs the proxy one connection, not two.
        """
        if link.watch_wanted:
            return
        link.watch_wanted = True  # also on a C proxy: nothing to open, and not asked again
        if not link.ours:
            return
        if threading.get_ident() == self._thread_id:
            self._start_watch(link)
        else:
            link.loop.call_soon_threadsafe(self._start_watch, link)

    def _start_watch(self, link: Link) -> None:
        if link is self._link and not link.closed and link.watch is None:
            link.watch = link.loop.create_task(
                watch_interest(
                    self.address,
                    lambda mask: self._set_interest(link, mask),
                    lambda denied: self._set_denied(link, denied),
                )
            )

    def _set_denied(self, link: Link, denied: int) -> None:
        """The proxy told which classes its policy refuses us (send raises SendRefused)."""
        if link is self._link:
            self._denied = denied

    def _set_interest(self, link: Link, mask: int | None) -> None:
        """The proxy told its union mask (None: the watch is gone, so unknown)."""
        if link is not self._link:
            return
        self._interest = mask
        if mask is None:
            link.watch = None  # gone: nobody will tell any more
            self._denied = 0
        waiters, self._interest_waiters = self._interest_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        if self._holding:
            with self._lock:
                held = self._outbox.classes()
            if mask is None or not held & ~mask:
                self._release(link, timed_out=False)

    def _release(self, link: Link, *, timed_out: bool) -> None:
        """The held outage buffer goes out: its classes have listeners, or the grace is over."""
        if link is not self._link or not self._holding:
            return
        self._cancel_hold()
        interest = self._interest
        with self._lock:
            held = self._outbox.classes()
        unheard = held & ~interest if interest is not None else 0
        if timed_out and unheard:
            log.warning(
                "after %g s nobody listens to %s at %s: the %d buffered messages go out "
                "anyway, and the proxy refuses those of these classes",
                self.listen_grace,
                format_mask(unheard),
                format_address(self.address),
                self._outbox.count,
            )
        with self._lock:
            self._flush_locked()

    def _cancel_hold(self) -> None:
        self._holding = False
        timer, self._hold_timer = self._hold_timer, None
        if timer is not None:
            timer.cancel()

    def _lost(self, link: Link, reason: str) -> None:
        """``link`` failed: close it. The reconnect task, waiting on it, takes over."""
        if link is not self._link or self._state is _CLOSED:
            link.close(reason)
            return
        was_ready = self._state is ClientState.READY
        self._link = None
        self._state = ClientState.WAITING
        self._salvage(link)
        link.close(reason)
        with self._lock:
            self._outbox.rewind()
        self._echo.clear()
        self._confirm.clear()  # echoes of a dead connection never come
        self._interest = None
        self._cancel_hold()
        if was_ready:
            self._disconnects += 1
            self._disconnected_at = time.monotonic()
            log.warning(
                "connection to %s lost: %s; reconnecting in %g s",
                format_address(self.address),
                printable(reason),  # it may quote what the proxy sent
                self.reconnect_delay,
            )
        if self._drain_waiters:
            self._wake_drain()

    def _salvage(self, link: Link) -> None:
        """Messages already received on a dying link stay ours: keep them for the sink."""
        if link.conn.state is not _OPEN:
            return
        for ev in link.conn.decoder.events():
            if type(ev) is RxPayload:
                self._backlog.append((ev.cls, ev.timestamp_us, ev.payload))

    # -- bridging ----------------------------------------------------------

    def bridge(self, bus: Bus, export_mask: int | None = None, name: str | None = None) -> Bridge:
        """Join a local bus to the proxy's; see :class:`smdbus.client._bridge.Bridge`."""
        if self.bridge_obj is not None:
            raise RuntimeError("this client is already bridged to a bus")
        if self._on_message is not None:
            raise RuntimeError("a client with on_message cannot also bridge")
        self.bridge_obj = Bridge(self, bus, self.mask if export_mask is None else export_mask, name)
        return self.bridge_obj

    def send_bridged(self, cls: int, ts: int, payload: bytes) -> bool:
        """Send a local bus message on, expecting its echo if our mask matches it."""
        return self._send(cls, payload, ts, True)

    def is_echo(self, cls: int, payload: bytes) -> bool:
        """Whether a message from the proxy is the echo of one the bridge sent (used up)."""
        return self._echo.is_echo((cls, payload))

    # -- introspection -------------------------------------------------------

    def stats(self) -> ClientStats:
        with self._lock:
            buffered, nbytes = self._outbox.count, self._outbox.nbytes
        link = self._link if self._state is _READY else None
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
            proxy="unknown" if link is None else "smdbus" if link.ours else "other",
            interest=self._interest,
            unheard=self._unheard,
            confirmed=self._confirm.suppressed,
            awaiting_confirmation=len(self._confirm),
            unconfirmed=self._confirm.expired,
        )

    def __repr__(self) -> str:
        return (
            f"<Client {format_address(self.address)} mask={format_mask(self.mask)} "
            f"{self._state.value}>"
        )


async def connect(
    address: str = DEFAULT_ADDRESS,
    mask: int = ALL_CLASSES,
    *,
    wait: bool = True,
    on_message: OnMessage | None = None,
    bus: Bus | None = None,
    export_mask: int | None = None,
    **settings: Any,
) -> Client:
    """Open a ``_lws_smd`` stream to the proxy at ``address`` receiving classes ``mask``.

    ``address``: ``@name`` (abstract, default ``@proxy.ss.lws``), ``+@name``
    (the C client's spelling) or a filesystem path. With ``wait`` (default)
    the call returns once the proxy created the stream, or raises
    :class:`ProxyUnavailable`; without, it returns at once and sends are
    buffered until the stream exists. ``bus`` bridges a local bus (see
    :class:`Bridge`). Settings: ``reconnect_delay`` (1.0 s),
    ``create_timeout`` (3.0 s), ``max_buffered`` (1000 messages),
    ``max_buffered_bytes`` (512 KiB), ``max_inbox`` (10 000), ``listen_grace``
    (2.0 s), ``echo_ttl``, ``clock``, ``scheduler`` (every timer; tests inject
    a ``ManualScheduler``).
    """
    client = Client(address, mask, on_message=on_message, **settings)
    if bus is not None:
        client.bridge(bus, export_mask)
    await client.start(wait)
    return client
