"""A proxy connection that any event loop drives: descriptors, interest, a service call.

Why this exists: :class:`~smdbus.client.Client` lives on asyncio. A GLib, Qt or plain
``selectors`` application joins the proxy with this instead, without asyncio and
without a thread, the way libwebsockets joins a foreign loop (README.coding, "External
Polling Loop support"): the host watches what :meth:`PolledClient.watches` lists and
calls :meth:`PolledClient.service` when one of them is ready or when the timeout the
last call returned has passed (see :mod:`smdbus.hostloop`).

Rules:

- The same stream as the asyncio client: STREAMTYPE first, TX_PAYLOAD only once the
  proxy answered CREATE_RESULT (state READY), reconnecting ``reconnect_delay`` (1 s, as
  C) after a drop, giving up on an attempt after ``create_timeout`` (3 s, as C). Before
  READY and during an outage, sends wait in the bounded
  :class:`~smdbus.client._outbox.Outbox`; past the bound :meth:`send` raises
  :class:`~smdbus.client._errors.BufferFull`. A frame cut by a dying connection is sent
  again whole.
- Everything runs in :meth:`service`, on the host loop's thread, and never blocks:
  reads until the socket is empty (at most ``_READS_PER_SERVICE`` reads, so a flooding
  proxy cannot starve the host), writes what the socket takes, runs the timers against
  the injected clock.
- :meth:`send` is thread-safe. On the loop's thread it writes a lone message at once;
  from another thread it appends and sets the :class:`~smdbus._wakeup.Wakeup` (once per
  batch), whose descriptor is among the watches, so the host loop wakes and writes.
- Input goes to ``on_message(cls, timestamp_us, payload)``, straight from the wire
  decoder's parse loop (:meth:`~smdbus.wire.Decoder.dispatch`). A callback that raises
  is logged and counted; the stream goes on.
- A malformed frame from the proxy ends the connection (logged with the decoder's
  message, escaped) and the client reconnects.

Theory of operation: the state, the timers and the buffers are plain attributes;
:meth:`service` runs the timers, then reads, then writes, then returns the next
deadline. The socket changes with each connection, so the host re-reads
:meth:`watches` after each call (the wake-up descriptor stays the same).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import threading
import time
from typing import Any

from smdbus._wakeup import Wakeup
from smdbus.classes import ALL_CLASSES, format_mask
from smdbus.client._connection import (
    DEFAULT_CREATE_TIMEOUT,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_RECONNECT_DELAY,
    ClientState,
    Clock,
    OnMessage,
)
from smdbus.client._errors import BufferFull, ClientClosed
from smdbus.client._outbox import Outbox
from smdbus.errors import PayloadTooLarge
from smdbus.wire import (
    DEFAULT_ADDRESS,
    SMD_STREAMTYPE,
    WIRE_MAX_PAYLOAD,
    CreateResult,
    DecodeError,
    Decoder,
    Role,
    RxPayload,
    format_address,
    parse_address,
    stream_type_frame,
    tx_payload_frame,
)

log = logging.getLogger("smdbus.client.polled")

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_RECV_SIZE = 64 * 1024
_READS_PER_SERVICE = 16
"""Reads per service call at most (1 MiB): then the host's other sources get a turn."""


def _now_us() -> int:
    return time.monotonic_ns() // 1000


class PolledClient:
    """One connection to an smd proxy, kept up by reconnecting, driven by a host loop."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        mask: int = ALL_CLASSES,
        *,
        on_message: OnMessage | None = None,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        create_timeout: float = DEFAULT_CREATE_TIMEOUT,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
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
        self.address = parse_address(address)
        self.mask = mask
        self.stream_name = name
        self.on_message = on_message
        self._reconnect_us = int(reconnect_delay * 1_000_000)
        self._create_us = int(create_timeout * 1_000_000)
        self._clock: Clock = clock or _now_us
        self._state = ClientState.IDLE
        self._lock = threading.Lock()
        self._outbox = Outbox(max_buffered, max_buffered_bytes)
        self._wakeup = Wakeup()
        self._woken = False  # the wake-up is set and not yet consumed by service()
        self._thread_id = 0
        self._sock: socket.socket | None = None
        self._decoder = Decoder(Role.CLIENT)
        self._hello = b""  # the unwritten rest of STREAMTYPE
        self._deadline: int | None = None  # µs: next attempt (WAITING) or give up (CREATING)
        # counters
        self.connects = 0
        self.disconnects = 0
        self.sent = 0
        self.received = 0
        self.refused = 0
        self.callback_errors = 0
        self.last_error: str | None = None

    # -- what the host loop needs ----------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is ClientState.CLOSED

    def watches(self) -> list[tuple[int, int]]:
        """``(descriptor, READ|WRITE)`` pairs to watch now; read again after each service."""
        if self._state is ClientState.CLOSED:
            return []
        out = [(self._wakeup.fileno(), _READ)]
        sock = self._sock
        if sock is not None:
            want = _READ
            if self._hello or (self._state is ClientState.READY and self._outbox.count):
                want |= _WRITE
            out.append((sock.fileno(), want))
        return out

    def start(self) -> None:
        """Begin connecting, from the host loop's thread (does not block)."""
        if self._state is not ClientState.IDLE:
            raise RuntimeError(f"client already started ({self._state.value})")
        self._thread_id = threading.get_ident()
        self._attempt()

    def service(self) -> float | None:
        """Do what is due without blocking; the seconds until the next timer, or None.

        Call it when a watched descriptor is ready or the last returned timeout passed.
        """
        if self._state is ClientState.CLOSED:
            return None
        self._thread_id = threading.get_ident()
        if self._woken:
            with self._lock:  # with send(): a wake-up set meanwhile is never lost
                self._woken = False
                self._wakeup.clear()
        deadline = self._deadline
        if deadline is not None and self._clock() >= deadline:
            self._deadline = None
            if self._state is ClientState.WAITING:
                self._attempt()
            else:
                self._lost(f"no CREATE_RESULT within {self._create_us / 1e6:g} s")
        if self._sock is not None:
            self._read()
        if self._sock is not None:
            self._write()
        deadline = self._deadline
        if deadline is None:
            return None
        left = deadline - self._clock()
        return left / 1_000_000 if left > 0 else 0.0

    # -- sending -----------------------------------------------------------------

    def send(self, cls: int, payload: bytes | bytearray | memoryview | str) -> None:
        """Queue one message for the proxy (thread-safe, never blocks).

        Raises :class:`PayloadTooLarge` over 383 bytes, :class:`BufferFull` when the
        unsent buffer is at its bound, :class:`ClientClosed` after :meth:`close`.
        """
        if type(payload) is not bytes:
            payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        cls = int(cls)
        if self._state is ClientState.CLOSED:
            raise ClientClosed(f"client is closed; message of class {format_mask(cls)} refused")
        if len(payload) > WIRE_MAX_PAYLOAD:
            raise PayloadTooLarge(cls, len(payload), WIRE_MAX_PAYLOAD)
        if not 0 < cls < 1 << 64:
            raise ValueError(f"class must be a non-empty 64-bit mask, got {cls:#x}")
        now = self._clock()
        frame = tx_payload_frame(cls, now, payload, time_us=now)
        with self._lock:
            if self.closed:  # by the loop thread, meanwhile
                raise ClientClosed(f"client is closed; message of class {format_mask(cls)} refused")
            ob = self._outbox
            first = not ob.count
            if ob.offer(frame) < 0:
                self.refused += 1
                raise BufferFull(
                    cls,
                    len(payload),
                    count=ob.count,
                    nbytes=ob.nbytes,
                    max_messages=ob.max_messages,
                    max_bytes=ob.max_bytes,
                    connected=self._state is ClientState.READY,
                    address=self.address,
                )
            if self._state is not ClientState.READY or not first:
                return  # written on READY, or with the batch already waiting
            if threading.get_ident() == self._thread_id:
                self._flush_locked()  # a lone message goes at once
                if not ob.count:
                    return
            if not self._woken:  # the host learns of the new interest (WRITE) through it
                self._woken = True
                self._wakeup.set()

    def send_json(self, cls: int, obj: Any) -> None:
        """Send ``obj`` as compact JSON, as lws's own messages are."""
        self.send(cls, json.dumps(obj, separators=(",", ":")).encode())

    @property
    def buffered(self) -> int:
        """Messages not yet written whole to the proxy."""
        return self._outbox.count

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Write what the socket takes now, then hang up; unsent messages are counted, logged."""
        if self._state is ClientState.CLOSED:
            return
        if self._state is ClientState.READY:
            self._write()
        self._hang_up()
        self._state = ClientState.CLOSED
        self._deadline = None
        with self._lock:  # with send(): no wake-up is set on a closed descriptor
            dropped = self._outbox.clear()
            self._wakeup.close()
        if dropped:
            log.warning(
                "client for %s closed with %d unsent messages",
                format_address(self.address),
                dropped,
            )

    # -- the connection ------------------------------------------------------------

    def _attempt(self) -> None:
        """Connect without blocking: a Unix connect completes at once or fails."""
        self._state = ClientState.CONNECTING
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            # EAGAIN: the proxy's listen backlog is full; the next attempt may get in.
            why = "listen backlog full" if exc.errno == errno.EAGAIN else str(exc)
            self._wait(f"connect failed: {why}")
            return
        self._sock = sock
        self._decoder = Decoder(Role.CLIENT)
        self._hello = stream_type_frame(self.stream_name, self.mask, os.getpid())
        self._state = ClientState.CREATING
        self._deadline = self._clock() + self._create_us
        self._write()

    def _read(self) -> None:
        sock = self._sock
        decoder = self._decoder
        for _ in range(_READS_PER_SERVICE):
            if self._sock is not sock:  # dropped or closed, by a callback maybe
                return
            try:
                data = sock.recv(_RECV_SIZE)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(f"read failed: {exc}")
                return
            if not data:
                self._lost("the proxy hung up")
                return
            decoder.feed(data)
            if not self._handle_input(decoder):
                return

    def _handle_input(self, decoder: Decoder) -> bool:
        """Take every complete frame; False when the connection was dropped."""
        sink = self._deliver
        while True:
            if self._state is ClientState.READY:
                self.received += decoder.dispatch(sink, stop_on_false=True)
            if self._decoder is not decoder or self._state is ClientState.CLOSED:
                return False  # a callback closed the client
            event = decoder.next_event()
            if event is None:
                return True
            if isinstance(event, CreateResult):
                if not event.ok:
                    self._lost(f"the proxy refused the stream (result {event.result})")
                    return False
                if self._state is ClientState.CREATING:
                    self._state = ClientState.READY
                    self._deadline = None
                    self.connects += 1
                    log.info("stream created at %s", format_address(self.address))
            elif isinstance(event, DecodeError):
                self._lost(f"bad frame from the proxy: {event.message!r}")
                return False
            elif isinstance(event, RxPayload):  # one the fast path did not take
                self.received += 1
                self._deliver(event[0], event[1], event[2])
            # CONNSTATE and the like carry nothing the SMD stream needs

    def _deliver(self, cls: int, timestamp_us: int, payload: bytes) -> bool:
        """Hand one message to ``on_message``; False once the client is closed (stop)."""
        cb = self.on_message
        if cb is not None:
            try:
                cb(cls, timestamp_us, payload)
            except Exception:
                self.callback_errors += 1
                log.exception("on_message failed on a %s message", format_mask(cls))
        return self._state is not ClientState.CLOSED

    def _write(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            if self._hello:
                n = sock.send(self._hello)
                self._hello = self._hello[n:]
                if self._hello:
                    return
            if self._state is ClientState.READY:
                with self._lock:
                    self._flush_locked()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"write failed: {exc}")

    def _flush_locked(self) -> None:
        """Write what the socket takes from the outbox; with the lock held."""
        sock = self._sock
        ob = self._outbox
        if sock is None or not ob.count:
            return
        try:
            n = sock.send(ob.data())
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the next service() reads the error or EOF and reconnects
        before = ob.count
        ob.written(n)
        self.sent += before - ob.count

    def _lost(self, reason: str) -> None:
        if self._state is ClientState.CLOSED:
            return
        if self._state is ClientState.READY:
            self.disconnects += 1
        self._hang_up()
        self._wait(reason)

    def _wait(self, reason: str) -> None:
        self.last_error = reason
        log.info("proxy at %s: %s", format_address(self.address), reason)
        self._state = ClientState.WAITING
        self._deadline = self._clock() + self._reconnect_us

    def _hang_up(self) -> None:
        sock, self._sock = self._sock, None
        self._hello = b""
        with self._lock:
            self._outbox.rewind()
        if sock is not None:
            sock.close()
