"""Who sent each message: taps on the proxy's bus that learn the publishing connection.

The ``_lws_smd`` wire carries no sender, and the bus does not keep one: a
message is ``(class, timestamp_us, payload)``. Inside the proxy the sender is
known at the moment a connection's message goes onto the bus, so this module
attributes it there, for the tools that want it: ``{"op":"monitor"}`` on the
control stream (``smd monitor --sender``) and the web view's sequence view.

Rules:

- **Free when nobody watches.** With no tap, a connection publishes with
  ``Bus.send`` itself (:meth:`Monitors.send_for`, looked up once per read,
  not per message). With a tap, its messages of the tapped classes go
  through :meth:`Monitors._send`, which remembers ``payload -> connection``
  once queued; other classes still go straight to the bus.
- **Attribution by the payload object.** The bus queues and delivers the
  very bytes object it was given, in queue order; the taps' participant
  takes the sender of each message it receives from a FIFO per object
  (kept until delivered: an id cannot be reused meanwhile). A message with
  no record was sent in-process (``"local"``: the daemon and its
  participants); one queued before its class was tapped is ``"unknown"``. CPython
  shares one object for every 0- and 1-byte ``bytes``: should an in-process
  participant queue the same 0- or 1-byte payload between a connection's
  sending and its delivery, the two may swap senders (longer bodies are
  distinct objects).
- **Bounded.** Records exist only for queued messages in the tapped classes
  (at most the bus's ``queue_depth``); they go when the message is
  delivered, or all at once when the last tap goes.
- **Policy.** A control-stream monitor gets the classes it asks for *and*
  may receive (:meth:`smdbus.proxy._access.Access.effective`), recomputed on
  a policy reload.
- **Backpressure.** A monitor's records are written once per loop pass (one
  write); a monitor that does not read is not waited for (it holds back no
  publisher, its connection's mask being 0): once what waits for it passes
  :data:`MONITOR_BUFFER` it is disconnected, counted in
  ``monitor_disconnects`` with the reason in the log and ``smd peers``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from smdbus.proxy._fanout import rx_frame
from smdbus.proxy._owner import Owner
from smdbus.wire import control_reply

if TYPE_CHECKING:
    from smdbus.bus import Bus, Participant
    from smdbus.proxy._access import Access
    from smdbus.proxy._connection import Connection

Sender = dict[str, Any] | str
"""``{"id", "pid", "uid", "comm"}`` of a connection, ``"local"`` or ``"unknown"``."""
TapCallback = Callable[[int, int, bytes, Sender], None]
"""``(class, timestamp_us, payload, sender)``."""


class Host(Owner, Protocol):
    """What the monitors use of their proxy (a protocol: the proxy imports this module)."""

    @property
    def bus(self) -> Bus: ...
    @property
    def access(self) -> Access: ...


LOCAL = "local"
UNKNOWN = "unknown"
MONITOR_BUFFER = 1024 * 1024
"""Bytes waiting to be read by a control-stream monitor before it is disconnected."""


def sender_of(conn: Connection) -> dict[str, Any]:
    """A connection as a message's sender (its comm is escaped already)."""
    who = conn.who
    return {"id": conn.id, "pid": who.pid, "uid": who.uid, "comm": who.comm}


def _nothing(*message: object) -> None:
    """A control-stream tap's callback until :meth:`Monitors.watch` gives it its own
    (a function, not a lambda: mypyc emits C for a ``*args`` lambda that gcc rejects)."""


class Tap:
    """One watcher of the bus with senders: a mask and a callback."""

    __slots__ = ("asked", "callback", "conn", "frames", "mask")

    def __init__(self, mask: int, callback: TapCallback, conn: Connection | None = None) -> None:
        self.asked = mask
        self.mask = mask
        self.callback = callback
        self.conn = conn  # a control-stream monitor's connection
        self.frames: list[bytes] = []


class Monitors:
    """The proxy's taps, and the record of who sent the messages they are waiting for."""

    def __init__(self, proxy: Host) -> None:
        self.proxy = proxy
        self.mask = 0  # the classes some tap wants: only those are attributed
        self._taps: list[Tap] = []
        self._by_conn: dict[Connection, Tap] = {}
        self._senders: dict[int, tuple[bytes, deque[Connection]]] = {}
        self._before: dict[int, bytes] = {}  # queued before their class was tapped: unknown
        self._participant: Participant | None = None
        self._dirty: list[Tap] = []
        self._flush_scheduled = False

    @property
    def count(self) -> int:
        """Taps open (control-stream monitors and in-process ones)."""
        return len(self._taps)

    # -- the publish path --------------------------------------------------------

    def send_for(self, conn: Connection) -> Callable[[int, bytes], Any]:
        """How ``conn`` puts a message on the bus now (``Bus.send`` while nobody watches)."""
        if not self.mask:
            return self.proxy.bus.send
        return partial(self._send, conn)

    def _send(self, conn: Connection, cls: int, payload: bytes) -> bool:
        if not cls & self.mask:
            return self.proxy.bus.send(cls, payload)
        if type(payload) is not bytes:
            payload = bytes(payload)  # the object the bus will queue, and deliver
        if not self.proxy.bus.send(cls, payload):
            return False
        key = id(payload)
        record = self._senders.get(key)
        if record is None:
            self._senders[key] = (payload, deque((conn,)))
        else:
            record[1].append(conn)
        return True

    # -- taps --------------------------------------------------------------------

    def tap(self, mask: int, callback: TapCallback) -> Tap:
        """Call ``callback`` with each message of ``mask`` and its sender (in-process users)."""
        return self._add(Tap(mask, callback))

    def untap(self, tap: Tap) -> None:
        if tap not in self._taps:
            return
        self._taps.remove(tap)
        if tap.conn is not None:
            self._by_conn.pop(tap.conn, None)
        if tap in self._dirty:
            self._dirty.remove(tap)
        self._rebuild()

    def watch(self, conn: Connection, asked: int) -> None:
        """``{"op":"monitor","mask":M}`` on the control stream: stream what it may receive."""
        old = self._by_conn.get(conn)
        if old is not None:
            self.untap(old)
        tap = Tap(asked, _nothing, conn)
        tap.callback = partial(self._record, tap)
        tap.mask = self.proxy.access.effective(conn, asked)
        self._add(tap)
        conn.on_message(0, time.monotonic_ns() // 1000, control_reply({"monitor": tap.mask}))

    def forget(self, conn: Connection) -> None:
        tap = self._by_conn.get(conn)
        if tap is not None:
            self.untap(tap)

    def reapply(self) -> None:
        """The policy was reloaded: each monitor gets what it may receive now."""
        for tap in self._taps:
            if tap.conn is not None:
                tap.mask = self.proxy.access.effective(tap.conn, tap.asked)
        self._rebuild()

    def _add(self, tap: Tap) -> Tap:
        self._taps.append(tap)
        if tap.conn is not None:
            self._by_conn[tap.conn] = tap
        self._rebuild()
        return tap

    def _rebuild(self) -> None:
        """The union of the taps' masks, and the one bus participant that receives it."""
        bus = self.proxy.bus
        mask = 0
        for tap in self._taps:
            mask |= tap.mask
        if mask == self.mask:
            return
        if self._participant is not None:
            bus.unregister(self._participant)
            self._participant = None
        self.mask = mask
        if mask:
            self._participant = bus.register(mask, self._deliver, name="proxy monitor")
            # The new participant gets what is queued: what was not attributed (queued
            # before, or of a class nobody tapped then) has an unknown sender; records of
            # what left the queue meanwhile (nobody else wanted it) are not waited for.
            queued = bus.queued_payloads()
            alive = {id(p) for p in queued}
            for records in (self._senders, self._before):
                for key in [k for k in records if k not in alive]:
                    del records[key]
            for p in queued:
                if id(p) not in self._senders:
                    self._before[id(p)] = p
        else:
            self._senders.clear()
            self._before.clear()

    # -- delivery ----------------------------------------------------------------

    def _deliver(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        key = id(payload)
        sender: Sender = LOCAL
        record = self._senders.get(key)
        if record is not None and record[0] is payload:
            conns = record[1]
            sender = sender_of(conns.popleft())
            if not conns:
                del self._senders[key]
        elif self._before.pop(key, None) is payload:
            sender = UNKNOWN
        for tap in self._taps:
            if tap.mask & cls:
                tap.callback(cls, timestamp_us, payload, sender)

    def _record(
        self, tap: Tap, cls: int, timestamp_us: int, payload: bytes, sender: Sender
    ) -> None:
        """One message for a control-stream monitor: a JSON record, written at the pass end."""
        reply = control_reply(
            {"msg": {"cls": cls, "ts": timestamp_us, "hex": payload.hex(), "from": sender}}
        )
        if not tap.frames:
            self._dirty.append(tap)
        tap.frames.append(rx_frame(0, timestamp_us, reply))
        if not self._flush_scheduled and self.proxy.loop is not None:
            self._flush_scheduled = True
            self.proxy.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for tap in dirty:
            frames, tap.frames = tap.frames, []
            conn = tap.conn
            if conn is None or conn.state == "closed":
                continue
            data = b"".join(frames)
            waiting = conn.buffered()
            if waiting + len(data) > MONITOR_BUFFER:
                self.proxy.count("monitor_disconnects")
                conn.abort(
                    f"monitor not reading: {waiting} bytes waiting and {len(data)} more, "
                    f"over {MONITOR_BUFFER}"
                )
                continue
            conn.deliver(data, len(frames))
