"""The distributor: participants, the union mask, the queue and delivery.

Rules (lws_smd's; docs/bus.md states them for users):

- A message reaches every participant whose mask shares a bit with its class,
  the sender included. A class nobody listens to is refused at send time and
  no work is done.
- Sending never delivers: delivery runs later on the bus's event loop, so a
  callback that sends does not recurse.
- A message waits in the queue until every interested participant had it.
  Interest is counted as C counts refcounts: a participant registering later
  still gets queued messages it matches; when the last interested participant
  leaves, the message is discarded and a later registrant never sees it.
- Delivery is round-robin: each pass gives every participant its next message.

Theory of operation. The queue is a deque of ``[cls, timestamp_us, payload,
exclude]`` records (small lists, no class of their own). Delivery runs in
*rounds*: a round takes the queue as it stands and delivers it; what callbacks
send meanwhile waits for the next round. While the queued messages all share
one class and none excludes anybody (the common case), C's passes deliver
message by message to the same participant list, so the loop walks the round
once and calls a cached list of callbacks per class. Otherwise (``_slow``) it
runs C's per-participant passes literally. A message holds its place in the
queue until delivered: the walk pops each one once delivered, the passes pop
the round when it ends.

Leaving. Unregistering swaps the leaver's callback for a counting stand-in
(``_skip``) inside cached lists, so a list being walked needs no check per
delivery and the walk can still say how many deliveries really happened. A
queued message nobody wants any more is marked in its own record (its
``exclude`` becomes ``_GONE``), never by an identity kept elsewhere: a mark
lives and dies with its message, so it cannot outlive it and fall on a later
one. ``_ndiscarded``, the number of marked messages still queued (they hold
no place), is kept by the loop thread; an unregister from another thread marks
at once and has the loop count again. A message counts as ``discarded`` when it
leaves the queue having reached nobody.

A participant registered during a round gets the messages of that round whose
delivery has not begun, and everything after (C would also give it the ones
begun but not finished).

Loops. Delivery runs from one loop thread: asyncio's (``bind``: a send wakes it
with ``call_soon``, or ``call_soon_threadsafe`` from another thread), or any
other loop's (``fileno``/``service``: a send sets a :class:`Wakeup` descriptor,
the host loop calls ``service``, which runs the very same ``_deliver``). Either
way the wake-up happens once per batch (``_scheduled``), and everything else in
this module is the same code, so the semantics cannot drift between loops.

Delivering inline. A caller that is itself a callback of the bound asyncio loop,
not of the bus (the proxy reading a socket), may take the wake-up on itself:
:meth:`Bus.defer_delivery` marks delivery as scheduled, so its sends wake nobody,
and :meth:`Bus.deliver_now`, before that callback returns, runs ``_deliver``.
What it sent is then delivered in the same loop pass instead of the next one (a
``call_soon`` costs the loop another pass: another ``epoll_wait`` per read).
Sending still never delivers, and a callback of the bus that sends still does
not recurse: ``_deliver`` refuses to re-enter, and the delivery running outside
takes what was sent (it loops until the queue is empty).

Bounds. Counters are kept per class value, and a peer picks the value (64 bits
on the wire): every single-bit class below 2**64 has its own row, other values
get rows up to ``MAX_CLASS_ROWS`` and are then counted together under
``OTHER_CLASSES``, their bits ORed into ``folded_mask``. The cache of callback
lists per class keeps at most ``_MAX_FANS`` entries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from smdbus._wakeup import Wakeup
from smdbus.classes import class_names, format_mask
from smdbus.errors import PayloadTooLarge, QueueFull

log = logging.getLogger("smdbus.bus")

COMPILED = not __file__.endswith(".py")
"""True when this module runs as the optional mypyc build (scripts/build-speedups.sh)."""

MAX_PAYLOAD = 384
"""lws_smd's payload limit, bytes."""
DEFAULT_QUEUE_DEPTH = 40
DEFAULT_TTL = 2.0

Callback: TypeAlias = Callable[[int, int, bytes], None]
"""``callback(cls, timestamp_us, payload)``: called on the bus's loop thread."""
Clock: TypeAlias = Callable[[], int]
"""Monotonic microseconds."""

_Message: TypeAlias = "list[Any]"
"""``[cls, timestamp_us, payload, exclude]``: a list so that discarding can mark the
record itself (``exclude`` becomes ``_GONE``). Typed loosely on purpose: a compiled build
(mypyc) boxes and unboxes typed items at each use."""
_Fan: TypeAlias = "tuple[list[Callback], list[Participant], list[int]]"

# Counter slots per class.
_SENT, _NOBODY, _FULL, _DELIVERED, _EXPIRED, _DISCARDED = range(6)

MAX_CLASS_ROWS = 128
"""Counter rows for class values that are not a single bit (several bits, 0, 2**64 and
above); single-bit classes below 2**64 always get a row of their own (at most 64)."""
OTHER_CLASSES = -1
"""The key in :meth:`Bus.stats` under which class values beyond ``MAX_CLASS_ROWS`` are
counted together (see :attr:`Bus.folded_mask`)."""
_MAX_FANS = 128
"""Callback lists cached per class; past it the oldest is dropped (and rebuilt on use)."""
_BITS64 = (1 << 64) - 1


_MAX_FORMATS = 256
"""printf format strings remembered (bytes form or None); beyond that, formats are not cached."""


def _format_text(fmt: str, args: tuple[Any, ...]) -> bytes:
    """printf the str way; bytes arguments go in raw, as they do in bytes formatting and in C."""
    if any(isinstance(a, (bytes, bytearray)) for a in args):
        text_args = tuple(
            bytes(a).decode("utf-8", "surrogateescape") if isinstance(a, (bytes, bytearray)) else a
            for a in args
        )
        return (fmt % text_args).encode("utf-8", "surrogateescape")
    return (fmt % args).encode()


class Participant:
    """A registered interest: a mask and a callback. Returned by :meth:`Bus.register`."""

    __slots__ = ("active", "callback", "mask", "name")

    def __init__(self, mask: int, callback: Callback, name: str) -> None:
        self.mask = mask
        self.callback = callback
        self.name = name
        self.active = True

    def __repr__(self) -> str:
        return f"<Participant {self.name!r} mask={format_mask(self.mask)}>"


_GONE: Final = Participant(0, lambda cls, timestamp_us, payload: None, "(discarded)")
"""Put in a queued record's ``exclude`` slot: nobody gets the message. Never registered."""
_GONE.active = False


@dataclass(frozen=True)
class ClassStats:
    """Counters for one class value (a message's full class, usually one bit)."""

    sent: int
    refused_nobody_listens: int
    refused_queue_full: int
    delivered: int
    expired: int
    discarded: int
    queued: int


@dataclass(frozen=True)
class ParticipantInfo:
    name: str
    mask: int


class Bus:
    """An lws_smd distributor bound to one loop.

    ``async with bus:`` binds it to the running asyncio loop; ``with bus.running():``
    gives it a loop thread of its own; ``bus.fileno()`` and ``bus.service()`` let any
    other loop drive it (selectors, GLib: docs/loops.md). Sends are accepted before
    binding and delivered once the loop runs.
    """

    def __init__(
        self,
        queue_depth: int = DEFAULT_QUEUE_DEPTH,
        ttl: float = DEFAULT_TTL,
        *,
        max_payload: int = MAX_PAYLOAD,
        clock: Clock | None = None,
    ) -> None:
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be at least 1, got {queue_depth}")
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.queue_depth = queue_depth
        self.ttl = ttl
        self.max_payload = max_payload
        self._ttl_us = int(ttl * 1_000_000)
        self._clock_ns: Callable[[], int] = (
            time.monotonic_ns if clock is None else (lambda: clock() * 1000)
        )
        self._lock = threading.Lock()
        self._queue: deque[_Message] = deque()
        self._participants: list[Participant] = []
        self._union = 0
        self._fan: dict[int, _Fan] = {}
        self._counters: dict[int, list[int]] = {}
        self._other = [0, 0, 0, 0, 0, 0]  # the OTHER_CLASSES row
        self._folded = 0
        self._multi_rows = 0
        # _slow: the fast walk is not C's order (mixed classes or exclusions
        # queued). _queue_cls: the one class queued otherwise.
        self._slow = False
        self._queue_cls = 0
        self._ndiscarded = 0  # marked (_GONE) messages still in the queue
        self._recount_due = False
        self._walking: _Fan | None = None  # the callback list a delivery run is walking
        self._skipped = 0  # calls to _skip: deliveries that did not happen
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: Wakeup | None = None  # bound to a host loop (fileno/service)
        self._loop_thread = 0
        self._scheduled = False
        self._delivering = False
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._room_waiters: list[Callable[[], None]] = []
        self._byte_formats: dict[str, bytes | None] = {}
        self._union_watchers: list[Callable[[int], None]] = []

    # -- participants ------------------------------------------------------

    def register(self, mask: int, callback: Callback, name: str | None = None) -> Participant:
        """Add a participant; it also gets already-queued messages it matches."""
        mask = int(mask)  # an IntFlag here would make every send's mask test slow Python code
        if mask <= 0:
            raise ValueError(f"a participant's mask must have a bit set, got {mask:#x}")
        label = name or str(getattr(callback, "__qualname__", "participant"))
        p = Participant(mask, callback, label)
        with self._lock:
            self._participants = [*self._participants, p]
            before = self._union
            self._union |= mask
            self._fan = {}
        if self._union != before:
            self._union_changed()
        return p

    def unregister(self, participant: Participant) -> None:
        """Remove a participant; its share of queued messages is given up at once."""
        before = self._union
        self._unregister(participant)
        if self._union != before:
            self._union_changed()

    def watch_union(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(union_mask)`` whenever :attr:`union_mask` changes.

        Called on the thread that registered or unregistered, outside the
        bus's lock (the proxy tells its clients who listens; see
        :mod:`smdbus.wire._control`).
        """
        self._union_watchers.append(callback)

    def unwatch_union(self, callback: Callable[[int], None]) -> None:
        if callback in self._union_watchers:
            self._union_watchers.remove(callback)

    def _union_changed(self) -> None:
        union = self._union
        for watcher in list(self._union_watchers):
            watcher(union)

    def _unregister(self, participant: Participant) -> None:
        loop = self._loop
        wakeup = self._wakeup
        with self._lock:
            if not participant.active:
                return
            participant.active = False
            self._participants = [p for p in self._participants if p is not participant]
            union = 0
            for p in self._participants:
                union |= p.mask
            self._union = union
            # A new cache first, then the stand-ins: a walk notices the change right
            # after the message during which the stand-in may have been called.
            cached = list(self._fan.values())
            if self._walking is not None:  # the walk's list, maybe no longer cached
                cached.append(self._walking)
            self._fan = {}
            for cbs, parts, _ in cached:
                for i, p in enumerate(parts):
                    if p is participant:
                        cbs[i] = self._skip
            if not self._queue or not self._discard_orphans():
                return
            if (loop is None and wakeup is None) or threading.get_ident() == self._loop_thread:
                self._ndiscarded = self._count_marked()
                return
            # The loop pops without the lock: it counts the marks itself, at its next
            # round or turn, whichever comes first.
            self._recount_due = True
        if loop is None:
            self._wake_host()  # the host loop's next service() recounts
        else:
            loop.call_soon_threadsafe(self._recount)

    def _skip(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        """Stands in for a participant that left while a callback list was being walked."""
        self._skipped += 1

    def _discard_orphans(self) -> int:
        """Mark queued messages nobody wants any more (C frees them at refcount 0).

        With the lock held. They count as discarded when they leave the queue, unless
        they reached somebody meanwhile (a message in the middle of its delivery).
        """
        participants = self._participants
        marked = 0
        for m in list(self._queue):
            cls, exclude = m[0], m[3]
            if exclude is _GONE:
                continue
            if not any(p.mask & cls and p is not exclude for p in participants):
                m[3] = _GONE
                marked += 1
        return marked

    def _count_marked(self) -> int:
        return sum(1 for m in list(self._queue) if m[3] is _GONE)

    def _recount(self) -> None:
        """On the loop: count the marks again after an unregister from another thread."""
        self._recount_due = False
        self._ndiscarded = self._count_marked()

    def _wanted_besides(self, cls: int, exclude: Participant) -> bool:
        return any(p.mask & cls and p is not exclude for p in self._participants)

    def queued_payloads(self) -> list[bytes]:
        """The payload objects waiting in the queue, oldest first (the proxy's sender records)."""
        return [m[2] for m in list(self._queue)]

    def participants(self) -> list[ParticipantInfo]:
        return [ParticipantInfo(p.name, p.mask) for p in self._participants]

    @property
    def union_mask(self) -> int:
        """The classes somebody listens to: anything else is refused at send."""
        return self._union

    # -- sending -----------------------------------------------------------

    def send(self, cls: int, payload: bytes | bytearray | memoryview | str) -> bool:
        """Queue a message for delivery from the loop.

        Returns False, doing nothing, when nobody listens to ``cls``. Raises
        :class:`PayloadTooLarge` or :class:`QueueFull`; nothing is dropped silently.
        """
        if type(cls) is not int:
            cls = int(cls)  # Class members are IntFlags: their & is slow Python code
        if not cls & self._union:
            return self._refuse_nobody(cls)
        if type(payload) is not bytes:
            payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(cls, len(payload), self.max_payload)
        # The enqueue below is written out in send() and printf(): it is the hot path.
        q = self._queue
        if len(q) >= self.queue_depth:
            self._refuse_full(cls)
        if cls != self._queue_cls:
            if q:
                self._slow = True
            self._queue_cls = cls
        q.append([cls, self._clock_ns() // 1000, payload, None])
        if not self._scheduled:
            self._wake()
        return True

    def printf(self, cls: int, fmt: str, *args: Any) -> bool:
        """Format C-printf style (``%d``, ``%s``, ``%%``) and send, as lws_smd_msg_printf.

        Nothing is formatted when nobody listens.
        """
        if type(cls) is not int:
            cls = int(cls)
        if not cls & self._union:
            return self._refuse_nobody(cls)
        bfmt = self._byte_formats.get(fmt)
        if bfmt is not None:
            try:
                payload = bfmt % args  # bytes formatting: about 4x cheaper than str + encode
            except TypeError:  # a str argument: this format goes the str way from now on
                self._byte_formats[fmt] = None
                payload = _format_text(fmt, args)
        elif fmt in self._byte_formats:
            payload = _format_text(fmt, args)
        else:
            payload = self._format_first(fmt, args)
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(cls, len(payload), self.max_payload)
        q = self._queue
        if len(q) >= self.queue_depth:
            self._refuse_full(cls)
        if cls != self._queue_cls:
            if q:
                self._slow = True
            self._queue_cls = cls
        q.append([cls, self._clock_ns() // 1000, payload, None])
        if not self._scheduled:
            self._wake()
        return True

    def _format_first(self, fmt: str, args: tuple[Any, ...]) -> bytes:
        """Format with a new format string, learning whether bytes formatting suits it."""
        try:
            bfmt: bytes | None = fmt.encode("ascii")
        except UnicodeEncodeError:
            bfmt = None
        if len(self._byte_formats) < _MAX_FORMATS:
            self._byte_formats[fmt] = bfmt
        if bfmt is not None:
            try:
                return bfmt % args
            except TypeError:
                self._byte_formats[fmt] = None
        return _format_text(fmt, args)

    def send_json(self, cls: int, obj: Any) -> bool:
        """Send ``obj`` as compact JSON (no spaces, as lws's own messages)."""
        cls = int(cls)
        if not cls & self._union:
            return self._refuse_nobody(cls)
        return self.send(cls, json.dumps(obj, separators=(",", ":")).encode())

    def forward(
        self,
        cls: int,
        timestamp_us: int,
        payload: bytes,
        exclude: Participant | None = None,
    ) -> bool:
        """Queue a message that came from elsewhere, keeping its timestamp.

        ``exclude`` (the participant that brought it in) does not get it back,
        as C does for messages from a proxied stream.
        """
        cls = int(cls)
        if not cls & self._union:
            return self._refuse_nobody(cls)
        payload = bytes(payload)
        if len(payload) > self.max_payload:
            raise PayloadTooLarge(cls, len(payload), self.max_payload)
        if exclude is not None and not self._wanted_besides(cls, exclude):
            return self._refuse_nobody(cls)
        q = self._queue
        if len(q) >= self.queue_depth:
            self._refuse_full(cls)
        if exclude is not None or (q and cls != self._queue_cls):
            self._slow = True
        self._queue_cls = cls
        q.append([cls, timestamp_us, payload, exclude])
        if not self._scheduled:
            self._wake()
        return True

    def _refuse_nobody(self, cls: int) -> bool:
        with self._lock:
            self._count(cls)[_NOBODY] += 1
        return False

    def _refuse_full(self, cls: int) -> None:
        if len(self._queue) - self._ndiscarded < self.queue_depth:
            return  # discarded messages wait for removal by the loop: they hold no place
        with self._lock:
            self._count(cls)[_FULL] += 1
        raise QueueFull(cls, self.queue_depth)

    def _wake(self) -> None:
        """Schedule delivery on the loop (once per batch, not per message)."""
        loop = self._loop
        if loop is None:
            if self._wakeup is not None:
                self._scheduled = True
                self._wake_host()
            return  # bind() schedules what is queued
        self._scheduled = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._deliver)
        else:
            loop.call_soon_threadsafe(self._deliver)

    def _wake_host(self) -> None:
        """Make the host loop's descriptor readable, from any thread.

        Under the lock so that :meth:`unbind` cannot close the descriptor (and the
        kernel give its number to another file) between reading it here and writing.
        """
        with self._lock:
            wakeup = self._wakeup
            if wakeup is not None:
                wakeup.set()

    # -- delivery (loop thread only) ----------------------------------------

    def _deliver(self, rounds: int = -1) -> bool:
        """Deliver everything queued, including what callbacks send meanwhile.

        With ``rounds`` >= 0, stops after that many rounds (a host loop's budget) and
        returns True if messages are left; they stay scheduled (``_scheduled`` set).
        """
        if self._delivering:  # re-entered through a nested loop run; the outer call finishes
            return False
        self._delivering = True
        q = self._queue
        try:
            while True:
                self._expire()
                if self._recount_due:
                    self._recount()
                if not q:
                    # Senders append without the lock: clear the flag first, then look
                    # again, so a message appended meanwhile is never left waiting.
                    self._scheduled = False
                    if q:
                        self._scheduled = True
                        continue
                    self._slow = False
                    break
                if not rounds:
                    return True
                rounds -= 1
                if self._slow or q[0][3] is not None:
                    self._deliver_passes()
                else:
                    self._deliver_run(q[0][0])
        except BaseException:
            # Only a BaseException that is not an Exception (KeyboardInterrupt,
            # SystemExit, ...) gets here: callbacks' Exceptions are logged inside.
            # It goes through, and the bus stays able to deliver: what is queued
            # (the round it interrupted included) is scheduled again.
            self._rescue()
            raise
        finally:
            self._delivering = False
        self._notify_idle()
        return False

    def _rescue(self) -> None:
        """Schedule again what a BaseException left queued when it stopped a delivery.

        The round it stopped stays in the queue from the message in hand on (a
        run pops each message once delivered; passes pop the round at its end),
        so nothing queued is lost; participants that had some of it before the
        exception get those messages again (at-least-once across it). C's passes
        take the next round, whatever it holds, since their bookkeeping was lost.
        """
        self._scheduled = False
        if self._queue:
            self._slow = True
            self._wake()

    def _deliver_run(self, cls: int) -> None:
        """Deliver a round of messages of class ``cls``, message by message, to cached lists.

        The round is the queue as it stands now; a message is popped once delivered, so
        until then it holds its place. When the participants change, the list is rebuilt
        after the message in hand and the round goes on. Stops early only at a message
        that needs C's passes (another class or an exclusion, which only threads sending
        at the same instant can queue here), which the caller then looks at.
        """
        q = self._queue
        popleft = q.popleft
        it = iter(list(q))
        while True:
            fans = self._fan
            fan = fans.get(cls) or self._build_fan(cls, fans)
            cbs = fan[0]
            if not cbs:
                self._discard_run(it, cls)
                return
            self._walking = fan
            skipped = self._skipped
            n = 0
            changed = False
            try:
                if len(cbs) == 1:
                    cb = cbs[0]
                    for mcls, ts, payload, exclude in it:
                        if mcls != cls or exclude is not None:
                            if exclude is _GONE:
                                self._pop_discarded()
                                continue
                            return
                        try:
                            cb(mcls, ts, payload)  # mcls: boxed already (see _Message)
                        except Exception:
                            self._callback_failed(cb, fan, cls)
                        n += 1
                        if self._fan is not fans:
                            changed = True
                            break
                        popleft()
                else:
                    for mcls, ts, payload, exclude in it:
                        if mcls != cls or exclude is not None:
                            if exclude is _GONE:
                                self._pop_discarded()
                                continue
                            return
                        for cb in cbs:
                            try:
                                cb(mcls, ts, payload)
                            except Exception:
                                self._callback_failed(cb, fan, cls)
                        n += 1
                        if self._fan is not fans:
                            changed = True
                            break
                        popleft()
            finally:
                self._walking = None
                counters = fan[2]
                counters[_SENT] += n
                counters[_DELIVERED] += n * len(cbs) - (self._skipped - skipped)
            if not changed:
                return
            # The participants changed during the message in hand (q[0]): any stand-in
            # called was called for it alone.
            m = popleft()
            if m[3] is _GONE:
                self._ndiscarded -= 1
            if self._skipped - skipped == len(cbs):
                counters[_DISCARDED] += 1

    def _pop_discarded(self) -> None:
        """Pop the marked message at the head of the queue, counting it."""
        m = self._queue.popleft()
        self._ndiscarded -= 1
        c = self._count(m[0])
        c[_SENT] += 1
        c[_DISCARDED] += 1

    def _discard_run(self, it: Iterator[_Message], cls: int) -> None:
        """Nobody listens to ``cls`` any more: the rest of the run reached nobody."""
        q = self._queue
        c = self._count(cls)
        for m in it:
            if m[0] != cls or (m[3] is not None and m[3] is not _GONE):
                return
            q.popleft()
            if m[3] is _GONE:
                self._ndiscarded -= 1
            c[_SENT] += 1
            c[_DISCARDED] += 1

    def _deliver_passes(self) -> None:
        """C's algorithm for a round: each pass, every participant gets its next message.

        Participants registered during the round join at the next pass with the
        messages of the round whose delivery has not begun.
        """
        q = self._queue
        self._slow = False  # raised again by sends that need it while we deliver
        batch = list(q)
        got = [0] * len(batch)  # deliveries per message: 0 at the end means discarded
        participants = self._participants
        wanted: list[tuple[Participant, list[int]]] = []
        self._want(wanted, participants, batch, got)
        cursor = [0] * len(wanted)
        more = True
        while more:
            more = False
            for j, (p, mine) in enumerate(wanted):
                k = cursor[j]
                if k >= len(mine):
                    continue
                if not p.active:  # left during the round: gives up the rest
                    cursor[j] = len(mine)
                    continue
                cursor[j] = k + 1
                more = more or k + 1 < len(mine)
                i = mine[k]
                cls, ts, payload, _ = batch[i]
                got[i] += 1
                try:
                    p.callback(cls, ts, payload)
                except Exception:
                    log.exception("participant %r failed on a %s message", p.name, format_mask(cls))
                self._count(cls)[_DELIVERED] += 1
            if self._participants is not participants:
                known = {p for p, _ in wanted}
                participants = self._participants
                joined = [p for p in participants if p not in known]
                before = len(wanted)
                self._want(wanted, joined, batch, got)
                cursor += [0] * (len(wanted) - before)
                more = more or len(wanted) > before
        for m, n in zip(batch, got, strict=True):
            q.popleft()
            c = self._count(m[0])
            c[_SENT] += 1
            if m[3] is _GONE:
                self._ndiscarded -= 1
            if not n:
                c[_DISCARDED] += 1

    @staticmethod
    def _want(
        wanted: list[tuple[Participant, list[int]]],
        participants: list[Participant],
        batch: list[_Message],
        got: list[int],
    ) -> None:
        """Add each participant's share of the round: messages not begun, not excluded."""
        for p in participants:
            mine = [
                i
                for i, m in enumerate(batch)
                if m[0] & p.mask and m[3] is not p and m[3] is not _GONE and not got[i]
            ]
            if mine and p.active:
                wanted.append((p, mine))

    def _expire(self) -> None:
        """Drop queued messages older than the TTL (counted, never silent)."""
        q = self._queue
        if not q:
            return
        horizon = self._clock_ns() // 1000 - self._ttl_us
        while q and q[0][1] < horizon:
            m = q.popleft()
            c = self._count(m[0])
            c[_SENT] += 1
            if m[3] is _GONE:
                self._ndiscarded -= 1
                c[_DISCARDED] += 1
            else:
                c[_EXPIRED] += 1

    def _build_fan(self, cls: int, fans: dict[int, _Fan]) -> _Fan:
        """The callback list for ``cls``, cached in ``fans`` (the cache the caller checks)."""
        parts = [p for p in self._participants if p.mask & cls]
        fan: _Fan = ([p.callback for p in parts], parts, self._count(cls))
        if len(fans) >= _MAX_FANS:  # a peer picks the classes: bounded, oldest out
            del fans[next(iter(fans))]
        fans[cls] = fan
        return fan

    def _callback_failed(self, cb: Callback, fan: _Fan, cls: int) -> None:
        name = next((p.name for p in fan[1] if p.callback is cb), repr(cb))
        log.exception("participant %r failed on a %s message", name, format_mask(cls))

    def _count(self, cls: int) -> list[int]:
        c = self._counters.get(cls)
        if c is None:
            c = self._new_row(cls)
        return c

    def _new_row(self, cls: int) -> list[int]:
        """A counter row for a class value seen first, or the shared row past the bound."""
        if 0 < cls <= _BITS64 and not cls & (cls - 1):
            return self._counters.setdefault(cls, [0, 0, 0, 0, 0, 0])
        if self._multi_rows < MAX_CLASS_ROWS:
            self._multi_rows += 1
            return self._counters.setdefault(cls, [0, 0, 0, 0, 0, 0])
        self._folded |= cls & _BITS64
        return self._other

    def _notify_idle(self) -> None:
        if self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for f in waiters:
                if not f.done():
                    f.set_result(None)
        if self._room_waiters:
            room, self._room_waiters = self._room_waiters, []
            for cb in room:
                try:
                    cb()
                except Exception:  # one failing waiter must not cost the others theirs
                    name = getattr(cb, "__qualname__", None) or repr(cb)
                    log.exception("when_room waiter %r failed", name)

    # -- waiting -----------------------------------------------------------

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once on the loop after the queue next empties.

        Used by producers that pause on :class:`QueueFull` (the proxy stops
        reading a publisher's socket) to resume without polling.
        """
        self._room_waiters.append(callback)
        if not self._queue:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._notify_idle)
            elif self._wakeup is not None:
                self._wake_host()  # service() calls the waiters once the queue is empty

    def defer_delivery(self) -> bool:
        """Sends from now on wake nobody: the caller delivers them with :meth:`deliver_now`.

        For a callback of the bus's own asyncio loop that sends and wants the
        messages delivered before it returns, in the same loop pass (the proxy,
        per read of a socket). It must call :meth:`deliver_now` (in a
        ``finally``): until then delivery counts as scheduled, so no send
        schedules it (nor does :meth:`drain`), and without the call nothing
        queued is ever delivered. Returns False, changing nothing, when
        the bus is not bound to an asyncio loop on this thread.
        """
        if self._loop is None or threading.get_ident() != self._loop_thread:
            return False
        self._scheduled = True
        return True

    def deliver_now(self) -> None:
        """Deliver what is queued, here and now: the end of :meth:`defer_delivery`.

        Within a delivery (a callback of the bus called it) it does nothing: the
        delivery running takes everything queued before it ends.
        """
        self._deliver()

    async def drain(self) -> None:
        """Wait until every queued message has been delivered (or expired)."""
        loop = self._require_loop()
        if asyncio.get_running_loop() is not loop:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.drain(), loop))
            return
        while self._queue or self._delivering:
            fut: asyncio.Future[None] = loop.create_future()
            self._idle_waiters.append(fut)
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._deliver)
            await fut

    def drain_sync(self, timeout: float | None = None) -> None:
        """:meth:`drain` for threads other than the loop's (e.g. under :meth:`running`)."""
        loop = self._require_loop()
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("drain_sync() would deadlock on the bus's own loop thread")
        asyncio.run_coroutine_threadsafe(self.drain(), loop).result(timeout)

    # -- binding to a loop -------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def bind(self, loop: asyncio.AbstractEventLoop, thread_id: int | None = None) -> None:
        """Deliver from ``loop`` (running on ``thread_id``, default this thread)."""
        with self._lock:
            if self._wakeup is not None:
                raise RuntimeError("bus is bound to a host loop (fileno/service): unbind() first")
            if self._loop is not None and self._loop is not loop:
                raise RuntimeError("bus is already bound to another event loop")
            self._loop = loop
            self._loop_thread = thread_id if thread_id is not None else threading.get_ident()
            pending = bool(self._queue) and not self._scheduled
            if pending:
                self._scheduled = True
        if pending:
            loop.call_soon_threadsafe(self._deliver)

    def unbind(self) -> None:
        """Stop delivering from the loop (asyncio or host); a host descriptor is closed."""
        with self._lock:
            self._loop = None
            self._loop_thread = 0
            self._scheduled = False
            wakeup, self._wakeup = self._wakeup, None
            if wakeup is not None:
                wakeup.close()

    # -- binding to a host loop (selectors, GLib, ...: see docs/loops.md) ----

    def fileno(self, *, pipe: bool = False) -> int:
        """The descriptor a host loop watches for reading: readable when delivery is due.

        The first call binds the bus to the calling thread's loop (an eventfd; a pipe
        where there is none, or with ``pipe``); later calls return the same descriptor.
        A send, from any thread, makes it readable once per batch; the loop then calls
        :meth:`service`. ``unbind()`` closes it.
        """
        with self._lock:
            if self._loop is not None:
                raise RuntimeError("bus is bound to an asyncio loop: it has no descriptor")
            wakeup = self._wakeup
            if wakeup is None:
                self._wakeup = wakeup = Wakeup(pipe=pipe)
                self._loop_thread = threading.get_ident()
                if self._queue or self._room_waiters:  # sent before binding: due now
                    self._scheduled = True
                    wakeup.set()
            return wakeup.fileno()

    def watches(self) -> list[tuple[int, int]]:
        """``[(fileno(), READ)]``: the shape :class:`~smdbus.hostloop.PolledClient` has too."""
        return [(self.fileno(), 1)]  # selectors.EVENT_READ

    def service(self, rounds: int | None = None) -> float | None:
        """Deliver what is due, without blocking; the seconds until the next deadline.

        Call it from the host loop's thread when :meth:`fileno` is readable or the
        timeout it last returned has passed (the first call binds, as ``fileno()``
        does). It delivers as the asyncio binding does (rounds until the queue is
        empty, what callbacks send included), or at most ``rounds`` rounds; what is
        left keeps the descriptor readable. Returns the seconds until the oldest
        message still queued expires (its TTL), or None with nothing queued.
        """
        wakeup = self._wakeup
        if wakeup is None:  # the first call binds, as fileno() does
            self.fileno()
            wakeup = self._wakeup
            assert wakeup is not None
        self._loop_thread = threading.get_ident()
        wakeup.clear()  # before delivering: a send from now on sets it again
        if self._deliver(-1 if rounds is None else rounds):
            wakeup.set()
        return self.next_deadline()

    def next_deadline(self) -> float | None:
        """Seconds until the oldest queued message expires (0.0 if overdue), None if none."""
        q = self._queue
        if not q:
            return None
        try:
            oldest = q[0][1]
        except IndexError:  # delivered meanwhile by the loop thread
            return None
        left_us = oldest + self._ttl_us + 1 - self._clock_ns() // 1000
        return left_us / 1_000_000 if left_us > 0 else 0.0

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            if self._wakeup is not None:
                raise RuntimeError("bus is bound to a host loop: its service() delivers")
            raise RuntimeError("bus is not bound to a loop: use 'async with bus' or bus.running()")
        return self._loop

    async def __aenter__(self) -> Bus:
        self.bind(asyncio.get_running_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                await self.drain()
        finally:
            self.unbind()

    @contextmanager
    def running(self) -> Iterator[Bus]:
        """Run the bus on a loop thread of its own, for programs that are not async."""
        from smdbus.runtime import LoopThread

        runner = LoopThread(name="smdbus-loop")
        runner.start()
        self.bind(runner.loop, runner.thread_id)
        try:
            yield self
            self.drain_sync()
        finally:
            self.unbind()
            runner.stop()

    # -- introspection -----------------------------------------------------

    @property
    def queue_length(self) -> int:
        """Messages waiting for delivery (a send fails at ``queue_depth``)."""
        return len(self._queue) - self._ndiscarded

    @property
    def folded_mask(self) -> int:
        """The bits of the class values counted together under ``OTHER_CLASSES`` (ORed)."""
        return self._folded

    def stats(self) -> dict[int, ClassStats]:
        """Counters per class value, including what is queued right now.

        Class values past the bound (``MAX_CLASS_ROWS``) are counted together under
        ``OTHER_CLASSES``; :attr:`folded_mask` says which bits they carried.
        """
        rows: dict[int, tuple[list[int], list[int]]] = {}  # key: (counters, [queued, gone])
        for m in list(self._queue):
            c = self._count(m[0])
            key = OTHER_CLASSES if c is self._other else m[0]
            row = rows.setdefault(key, (c, [0, 0]))
            row[1][1 if m[3] is _GONE else 0] += 1
        for cls, c in list(self._counters.items()):
            rows.setdefault(cls, (c, [0, 0]))
        if any(self._other) or OTHER_CLASSES in rows:
            rows.setdefault(OTHER_CLASSES, (self._other, [0, 0]))
        out: dict[int, ClassStats] = {}
        for key in [*sorted(k for k in rows if k != OTHER_CLASSES), OTHER_CLASSES]:
            if key not in rows:
                continue
            c, (queued, gone) = rows[key]
            out[key] = ClassStats(
                sent=c[_SENT] + queued + gone,
                refused_nobody_listens=c[_NOBODY],
                refused_queue_full=c[_FULL],
                delivered=c[_DELIVERED],
                expired=c[_EXPIRED],
                discarded=c[_DISCARDED] + gone,
                queued=queued,
            )
        return out

    def describe(self) -> str:
        """A few lines for people: participants, queue and counters."""
        lines = [f"queue {self.queue_length}/{self.queue_depth}, ttl {self.ttl:g} s"]
        for p in self._participants:
            lines.append(f"  participant {p.name!r}: {format_mask(p.mask)}")
        for cls, s in self.stats().items():
            name = (
                f"other classes (past {MAX_CLASS_ROWS}, bits {format_mask(self._folded)})"
                if cls == OTHER_CLASSES
                else "|".join(class_names(cls)) or "0"
            )
            lines.append(
                f"  {name}: sent {s.sent}, delivered {s.delivered}, "
                f"nobody {s.refused_nobody_listens}, full {s.refused_queue_full}, "
                f"expired {s.expired}, discarded {s.discarded}, queued {s.queued}"
            )
        return "\n".join(lines)
