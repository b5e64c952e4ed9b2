"""The proxy: a Unix socket whose connections become participants of one bus.

Rules:

- One :class:`~smdbus.proxy._connection.Connection` per client; this module
  owns what spans connections: listening and its security, admission, the
  fan-out groups (:mod:`smdbus.proxy._fanout`) and the RX frame cache they
  share, batching writes per loop pass, congestion (which
  classes are held back because a subscriber is behind) and the stall timer,
  counters, and the record of closed connections for ``smd peers``.
- Publishing is lossless: a full bus queue or a congested subscriber pauses
  the publisher; nothing is dropped and no publisher is disconnected.
- Publishing is fair: paused publishers wait in one FIFO
  (:mod:`smdbus.proxy._admission`) and are served, as soon as the bus
  queue has room, before any connection that did not wait.
- A subscriber is disconnected only when it stops reading (see
  :mod:`smdbus.proxy._flow`), its buffer passes ``max_buffer``, or all the
  subscribers' buffers together pass ``max_outbound`` (then the stalled ones
  holding most go first, then the largest); the reason is logged and counted,
  and what it had not been written counts as its ``dropped``.
- Accepting is ours, not ``asyncio.Server``'s: each connection is checked
  against the slots (:mod:`smdbus.proxy._slots`) and its uid's connection
  quota (:mod:`smdbus.proxy._access`) before it is served,
  and refused with a CREATE_RESULT failure (answered once its STREAMTYPE is
  in, which is discarded); out of descriptors
  (EMFILE), accepting pauses (until a connection closes, or a backoff on the
  loop's timer) instead of spinning on a listening socket that stays readable.
- Log lines about peers go through :class:`~smdbus.proxy._logs.PeerLog`
  (rate-limited per kind); their peer-supplied text is escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import grp
import itertools
import logging
import os
import resource
import socket
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from smdbus.bus import Bus
from smdbus.classes import ALL_CLASSES, format_mask
from smdbus.policy import AccessPolicy, read_identity
from smdbus.proxy._access import Access
from smdbus.proxy._admission import Admission
from smdbus.proxy._connection import REFUSAL, Connection
from smdbus.proxy._control import Control
from smdbus.proxy._fanout import Group
from smdbus.proxy._flow import Verdict
from smdbus.proxy._heap import fix_mmap_threshold
from smdbus.proxy._interest import InterestWatch
from smdbus.proxy._logs import PeerLog
from smdbus.proxy._monitor import Monitors
from smdbus.proxy._peerinfo import PeerInfo
from smdbus.proxy._settings import ProxySettings, connection_limit
from smdbus.proxy._slots import Slots
from smdbus.scheduler import LoopScheduler, Scheduler, Timer
from smdbus.wire import format_address, is_abstract, rx_payload_frame

log = logging.getLogger("smdbus.proxy")

ADMISSION_QUANTUM = 64
"""Messages a waiting publisher may publish in its turn at least (room allowing).

With 16 flooders beside a paced publisher, 64 kept the flooders' rate
(an even split of the room, 15 a turn, cost a third of it) and the paced
one's longest gap far under 100 ms (bench/proxy_faults.py fair).
"""

COUNTERS = (
    "accepted",
    "refused_max_connections",
    "refused_per_uid",
    "accept_paused",
    "protocol_errors",
    "first_frame_timeouts",
    "published",
    "held_queue",
    "held_congestion",
    "held_quota",
    "refused_policy",
    "quota_disconnects",
    "stalled",
    "slow_disconnects",
    "stall_disconnects",
    "write_failures",
    "dropped_write_failed",
    "control_queries",
    "control_refused",
    "control_abandoned",
    "control_records",
    "monitor_disconnects",
    "budget_disconnects",
    "dropped_messages",
    "log_suppressed",
)

ACCEPT_BATCH = 64
"""Connections accepted per loop pass at most: a connect flood cannot hold the loop."""
ACCEPT_BACKOFF = (0.05, 2.0)
"""First and longest pause of accepting after EMFILE (doubling while it repeats)."""
MAX_REFUSING = 16
"""Refused sockets kept open at once, for their STREAMTYPE to arrive before the answer."""
REFUSE_WAIT = 1.0
"""Seconds a refused socket waits for its STREAMTYPE before it is answered anyway."""
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@functools.lru_cache(maxsize=256)
def mask_label(mask: int) -> str:
    """Class names for a mask of a few bits, ``ALL``, or hex (a C client's 0x1dcd6500)."""
    if mask == ALL_CLASSES:
        return "ALL"
    if mask.bit_count() <= 4:
        return format_mask(mask)
    return f"{mask:#010x}"


def _remove_reader(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """``loop.remove_reader(fd)``, its result not looked at, on any loop.

    typeshed says it returns a bool; uvloop's returns None, and the compiled
    build (mypyc) checks a bool it is promised even where nobody reads it: a
    TypeError on uvloop, raised when the proxy stopped accepting (at a full
    house, and on close: ``smd proxy`` exited 1 on SIGTERM) or answered a
    refused client. Called through ``Any``, nothing is promised or checked.
    """
    remove: Any = loop.remove_reader
    remove(fd)


def _peer_info(proxy: Proxy, c: Connection) -> PeerInfo:
    who = c.who
    return PeerInfo(
        id=c.id,
        state=c.state,
        streamtype=c.streamtype,
        pid=who.pid,
        uid=who.uid,
        gid=who.gid,
        groups=tuple(sorted(who.groups)),
        comm=who.comm,
        client_pid=c.client_pid,
        mask=c.mask,
        mask_names=mask_label(c.mask),
        asked=c.asked,
        connected_at=c.connected_at,
        published=c.published,
        delivered=c.delivered if c.state == "closed" else c.msgs_out + c.out_msgs - c.queued(),
        queued=0 if c.state == "closed" else c.queued(),
        buffered=c.buffered(),
        dropped=c.dropped,
        refused=proxy.access.refused(c),
        held=c.held,
        congested=c.congested,
        stalled=c.stalled,
        reason=c.close_reason,
        closed_at=c.closed_at,
        label=proxy.control.labels.get(c),
    )


class Proxy:
    """The cross-process bus broker.

    ``bus``: share an existing bus (the daemon does, so local participants see
    the proxy's traffic); by default the proxy makes its own. ``scheduler``:
    every timer of the proxy (a new connection's first-frame timeout, the
    stall checks, a quota's wait, accept's back-off, a refusal's wait) and, unless
    ``clock`` is given, its clock (:mod:`smdbus.scheduler`; by default the
    loop's: tests drive a manual one). ``clock``: monotonic seconds for the stall
    checks and the quotas (tests inject one).
    ``sock``: a listening socket somebody else bound (systemd socket
    activation); the proxy serves it and, at close, leaves its file alone.
    ``access``: who may send and receive what, and the per-uid quotas
    (:mod:`smdbus.policy`; None: the defaults, with root and ``daemon_uid``,
    this process's uid unless told, privileged). ``also``: more listening
    sockets somebody else bound (systemd's second ``ListenStream=``, typically
    ``@proxy.ss.lws`` beside a filesystem socket): served by the same
    accept path, so under the same slots, policy and quotas.
    """

    def __init__(
        self,
        settings: ProxySettings | None = None,
        *,
        bus: Bus | None = None,
        clock: Callable[[], float] | None = None,
        sock: socket.socket | None = None,
        access: AccessPolicy | None = None,
        daemon_uid: int | None = None,
        also: Sequence[socket.socket] = (),
        scheduler: Scheduler | None = None,
    ) -> None:
        self.settings = settings or ProxySettings()
        self._inherited = sock
        self._also = list(also)  # more listening sockets (systemd's), served the same way
        # Its own bus carries no more than the wire's payload limit (383, one below
        # the in-process 384): a larger message could not reach any client.
        self.bus = (
            bus
            if bus is not None
            else Bus(queue_depth=self.settings.queue_depth, max_payload=self.settings.max_payload)
        )
        if clock is None:
            clock = scheduler.now if scheduler is not None else time.monotonic
        self.clock = clock
        self.scheduler: Scheduler | None = scheduler
        """Where the proxy's timers are set (the loop's, from :meth:`start`, unless given)."""
        # none given: the loop's, made at each start (a restart may be on another loop)
        self._loop_scheduler = scheduler is None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.congested_mask = 0
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._listener: socket.socket | None = None
        self._listeners: list[socket.socket] = []  # the listener, then the others
        self._accepting = False
        self._accept_timer: Timer | None = None
        self._accept_backoff = ACCEPT_BACKOFF[0]
        self._serving: asyncio.Future[None] | None = None
        self._refusing: dict[socket.socket, Timer] = {}
        self.daemon_uid = os.getuid() if daemon_uid is None else daemon_uid
        """The proxy's own uid: privileged in the reserved slots and in the policy's ledger."""
        self.slots = Slots(
            self.settings.max_connections,
            min(self.settings.reserved_connections, self.settings.max_connections // 2),
            {0, self.daemon_uid},
        )
        self.logs = PeerLog(log, clock)
        # outbound bytes of all connections, as seen at their last write (drains
        # are seen late, so this is an upper bound until make_room measures again)
        self.outbound = 0
        self.outbound_peak = 0
        self.buffering: dict[Connection, int] = {}
        """Connections whose transport held bytes at their last write, with how many."""
        self._budget_check_scheduled = False
        self._bound_bus = False
        self._next_id = 1
        self._connections: dict[int, Connection] = {}
        self._history: deque[PeerInfo] = deque(maxlen=self.settings.history)
        self._groups: dict[int, Group] = {}
        self._dirty: list[Group] = []
        self._flush_scheduled = False
        self._in_read = False  # within a read that delivers and flushes itself (read_begins)
        self._congested: set[Connection] = set()
        self._held: list[Connection] = []
        self.admission: Admission[Connection] = Admission(ADMISSION_QUANTUM)
        self._admission_armed = False
        self.turn: Connection | None = None  # the publisher whose turn it is (in _admit)
        self.allowance = 0  # what it may still publish in its turn
        self.control = Control(self)
        self.access = Access(
            self,
            access,
            self.daemon_uid,
            self.settings.max_connections_per_uid,
        )
        self._stall_timer: Timer | None = None
        # one RX frame built per message, shared by every group it goes to
        self.shared_frames = False  # more than one group: a message may reach several
        self.pass_us = 0  # the RX frames' time field: read once per flush pass
        self._rx_key: tuple[int, int] = (0, 0)
        self._rx_payload: bytes | None = None
        self._rx_frame = b""
        self.interest = InterestWatch(self.bus)
        self.monitors = Monitors(self)
        """Who sent each message, for the tools that watch (:mod:`smdbus.proxy._monitor`)."""

    # -- lifecycle ---------------------------------------------------------

    @property
    def address(self) -> str:
        return self.settings.address

    async def start(self) -> None:
        """Bind the bus to this loop and start listening."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        if self._loop_scheduler:
            self.scheduler = LoopScheduler(loop)
        if self.bus.loop is None:
            self.bus.bind(loop)
            self._bound_bus = True
        elif self.bus.loop is not loop:
            raise RuntimeError("the proxy's bus is bound to another event loop")
        self.interest.open()  # close() stopped it watching the bus
        self._listener = self._listen()
        for extra in self._also:
            extra.setblocking(False)
        self._listeners = [self._listener, *self._also]
        self._serving = loop.create_future()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        slots = self.slots
        slots.limit = connection_limit(self.settings.max_connections, nofile)
        slots.reserved = min(self.settings.reserved_connections, slots.limit // 2)
        if slots.limit < self.settings.max_connections:
            log.warning(
                "max_connections %d lowered to %d: RLIMIT_NOFILE is %d (raise LimitNOFILE)",
                self.settings.max_connections,
                slots.limit,
                nofile,
            )
        self._resume_accepting()
        log.info(
            "proxy listening on %s (mode %s, %d connections, %d of them reserved)",
            format_address(self.address),
            "abstract" if is_abstract(self.address) else oct(self.settings.mode),
            slots.limit,
            slots.reserved,
        )

    async def close(self) -> None:
        """Stop listening, deliver what is queued, hang up every connection, release the address.

        Clients learn of the shutdown by the close, after the messages sent
        before it (DESTROYING, typically): the bus is drained and the batched
        frames are handed to the transports, which flush them before closing.
        """
        # Stop watching the listener while it is still ours: _stop_accepting() needs it to
        # remove the reader, and a closed descriptor left in the loop's selector hides the
        # next socket that gets its number (a proxy restarted in the same loop never
        # accepted).
        self._stop_accepting()
        listener, self._listener = self._listener, None
        if listener is not None:
            for each in self._listeners:
                each.close()
            self._listeners = []
        for sock in list(self._refusing):
            self._refuse_now(sock)
        if self._bound_bus or self.bus.loop is asyncio.get_running_loop():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.bus.drain()
        if self._dirty:
            self._flush_all()
        for conn in list(self._connections.values()):
            conn.close("proxy shutting down")
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if listener is not None:
            if self._serving is not None and not self._serving.done():
                self._serving.set_result(None)
            if not is_abstract(self.address) and self._inherited is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address)
        self.interest.close()
        if self._bound_bus:
            self.bus.unbind()
            self._bound_bus = False

    async def serve_forever(self) -> None:
        """Serve until :meth:`close`."""
        if self._listener is None:
            await self.start()
        assert self._serving is not None
        await asyncio.shield(self._serving)

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _listen(self) -> socket.socket:
        """A bound, listening socket with the configured permissions."""
        if self._inherited is not None:
            self._inherited.setblocking(False)
            return self._inherited
        address = self.address
        shown = format_address(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if not is_abstract(address):
                self._clear_stale(address)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {shown}: {exc.strerror}") from None
            if not is_abstract(address):
                os.chmod(address, self.settings.mode)
                group = self.settings.group
                if group is not None:
                    gid = group if isinstance(group, int) else grp.getgrnam(group).gr_gid
                    os.chown(address, -1, gid)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _clear_stale(path: str) -> None:
        """Remove a socket file left by a dead proxy; refuse to take a live one's."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody answers: stale
            return
        finally:
            probe.close()
        raise OSError(f"{path} is in use by a running proxy")

    # -- connections -------------------------------------------------------

    def _resume_accepting(self) -> None:
        if self._accept_timer is not None:
            self._accept_timer.cancel()
            self._accept_timer = None
        if self._listener is not None and not self._accepting and self.loop is not None:
            for listener in self._listeners:
                self.loop.add_reader(listener.fileno(), self._on_acceptable, listener)
            self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accept_timer is not None:
            self._accept_timer.cancel()
            self._accept_timer = None
        if self._accepting and self._listener is not None and self.loop is not None:
            for listener in self._listeners:
                _remove_reader(self.loop, listener.fileno())
        self._accepting = False

    def _on_acceptable(self, listener: socket.socket) -> None:
        """A listening socket is readable: accept a batch, each checked against the slots."""
        if self._listener is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause_accepting(exc)
                return
            self._accept_backoff = ACCEPT_BACKOFF[0]
            self._accepted(sock)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors (or another accept error): stop, retry later, say so once."""
        self._stop_accepting()
        self.count("accept_paused")
        delay = self._accept_backoff
        self._accept_backoff = min(delay * 2, ACCEPT_BACKOFF[1])
        if self.scheduler is not None:
            self._accept_timer = self.scheduler.call_later(delay, self._resume_accepting)
        what = "out of descriptors" if exc.errno in _OUT_OF_DESCRIPTORS else "accept failed"
        self.logs.warning(
            "accept",
            "%s (%s; %d connections open, RLIMIT_NOFILE %d): not accepting for %g s "
            "or until a connection closes",
            what,
            exc.strerror or exc,
            self.slots.open,
            resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            delay,
        )

    def descriptor_freed(self) -> None:
        """A connection's socket is closed: accepting may go on if it was paused for EMFILE."""
        if self._accept_timer is not None and self.loop is not None:
            self._accept_timer.cancel()
            self._accept_timer = self.loop.call_soon(self._resume_accepting)

    def _accepted(self, sock: socket.socket) -> None:
        """A new socket: refuse it at once (CREATE_RESULT failure) or serve it."""
        who = read_identity(sock)  # uid, gid, groups, pid, comm (smdbus.policy)
        uid = who.uid
        refused = self.slots.take(uid)
        if refused is None:
            why = self.access.admit(who)  # the one per-uid connection count: the quota's
            if why is not None:
                self.slots.give_back()
                refused = ("refused_per_uid", why)
        if refused is not None:
            counter, reason = refused
            self.count(counter)
            self.logs.warning("refused", "refused %s: %s", who.label(), reason)
            self._refuse(sock)
            return
        sock.setblocking(False)
        conn = Connection(self, self._next_id)
        self._next_id += 1
        conn.who = who
        self.access.apply(conn)
        self._connections[conn.id] = conn
        self.count("accepted")
        assert self.loop is not None
        task = self.loop.create_task(self.loop.connect_accepted_socket(lambda: conn, sock))
        task.add_done_callback(lambda t: self._transport_failed(t, conn, sock))

    def _refuse(self, sock: socket.socket) -> None:
        """Answer CREATE_RESULT failure and hang up, once the client's STREAMTYPE is in.

        Answering first would race the client's own first write: meeting a
        closed socket (EPIPE), it may never read the answer. So a refused
        socket waits (bounded: :data:`MAX_REFUSING` of them, :data:`REFUSE_WAIT`
        each) until it has sent something, which is read and discarded.
        """
        sock.setblocking(False)
        if (
            self._drained(sock)
            or len(self._refusing) >= MAX_REFUSING
            or self.loop is None
            or self.scheduler is None
        ):
            self._answer_refusal(sock)
            return
        self._refusing[sock] = self.scheduler.call_later(
            REFUSE_WAIT, functools.partial(self._refuse_now, sock)
        )
        self.loop.add_reader(sock.fileno(), self._refuse_now, sock)

    def _refuse_now(self, sock: socket.socket) -> None:
        timer = self._refusing.pop(sock, None)
        if timer is not None:
            timer.cancel()
            if self.loop is not None:
                _remove_reader(self.loop, sock.fileno())
        self._drained(sock)
        self._answer_refusal(sock)

    @staticmethod
    def _drained(sock: socket.socket) -> bool:
        """Read what the client sent so far; True once it sent something or hung up."""
        try:
            sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            pass
        return True

    def _answer_refusal(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.send(REFUSAL)
        sock.close()
        self.descriptor_freed()

    def _transport_failed(
        self, task: asyncio.Task[Any], conn: Connection, sock: socket.socket
    ) -> None:
        problem = "cancelled" if task.cancelled() else task.exception()
        if problem is not None:
            conn.abort(f"could not serve the socket: {problem}")
            sock.close()

    def open_connections(self) -> list[Connection]:
        return list(self._connections.values())

    def set_access(self, policy: AccessPolicy) -> None:
        """A reloaded policy: in force for every connection at once, none dropped."""
        self.access.set_policy(policy)
        self.monitors.reapply()

    def forget(self, conn: Connection) -> None:
        """A connection has closed: keep its record, drop it from every set."""
        if self._connections.pop(conn.id, None) is None:
            return
        self.slots.give_back()
        left = self.buffering.pop(conn, 0)
        self.outbound -= left
        self.access.queued(conn, -left)
        if conn in self._congested:
            self._congested.discard(conn)
            self._recompute_congestion()
        if conn in self._held:
            self._held.remove(conn)
        self.admission.discard(conn)
        # the record keeps its label and its refusals: made before they are let go
        self._history.append(_peer_info(self, conn))
        self.control.forget(conn)
        self.monitors.forget(conn)
        self.interest.discard(conn)
        self.access.gone(conn)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def join(self, conn: Connection) -> Group:
        """Make an ``_lws_smd`` connection a receiver of its mask's messages."""
        group = self._groups.get(conn.mask)
        if group is None:
            group = self._groups[conn.mask] = Group(self, conn.mask)
            group.participant = self.bus.register(
                conn.mask, group.on_message, name=f"proxy mask {mask_label(conn.mask)}"
            )
            self.shared_frames = len(self._groups) > 1
        elif group.frames:
            group.flush()  # what was delivered before it joined is not its
        group.members[conn] = None
        return group

    def leave(self, conn: Connection, group: Group) -> None:
        group.members.pop(conn, None)
        if group.members or self._groups.get(group.mask) is not group:
            return
        del self._groups[group.mask]
        group.frames.clear()
        self.shared_frames = len(self._groups) > 1
        if group.participant is not None:
            self.bus.unregister(group.participant)
            group.participant = None

    def published_now(self, n: int = 1) -> None:
        """Messages went onto the bus from a connection: flush after their delivery."""
        self.counters["published"] += n
        if not self._flush_scheduled and not self._in_read and self.loop is not None:
            # The bus scheduled its delivery already; this runs right after it,
            # in the same loop pass, so the frames go out without another pass.
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_all)

    # -- admission: fair turns for publishers waiting for room ---------------

    def room(self, conn: Connection) -> int:
        """Messages ``conn`` may put on the bus queue now: none while others wait their turn."""
        bus = self.bus
        room = bus.queue_depth - bus.queue_length
        if conn is self.turn:
            return min(room, self.allowance)
        return 0 if self.admission else room

    def wait_for_room(self, conn: Connection) -> None:
        """A held publisher joins the line; turns are given when the bus queue has room."""
        self.admission.wait(conn)
        if not self._admission_armed:
            self._admission_armed = True
            self.bus.when_room(self._admit)

    def _admit(self) -> None:
        """The bus queue emptied: give turns, head first, until the room is used up.

        Runs from the bus right after a delivery, so the waiting publishers
        take the room before any connection's input of the same loop pass.
        """
        self._admission_armed = False
        admission = self.admission
        bus = self.bus
        try:
            while (turn := admission.next(bus.queue_depth - bus.queue_length)) is not None:
                self.turn, self.allowance = turn
                self.turn.resume()  # publishes up to its share, then waits again if it has more
        finally:
            self.turn = None
            if admission and not self._admission_armed:
                self._admission_armed = True
                bus.when_room(self._admit)

    # -- delivery ----------------------------------------------------------

    def rx_frame(self, cls: int, timestamp_us: int, payload: bytes) -> bytes:
        """The RX_PAYLOAD frame of a message, built once for all the groups it reaches."""
        if payload is self._rx_payload and self._rx_key == (cls, timestamp_us):
            return self._rx_frame
        frame = rx_payload_frame(cls, timestamp_us, payload, self.pass_us)
        self._rx_payload = payload
        self._rx_key = (cls, timestamp_us)
        self._rx_frame = frame
        return frame

    def read_begins(self) -> bool:
        """A connection's read is about to publish: deliver and write it before the read ends.

        One loop pass per read (issue 17): the bus does not schedule its
        delivery nor the proxy its flush; :meth:`read_ends` runs both, in the
        read's own callback. Returns False (the caller just processes) when a
        read is already being handled so (a publisher resumed by the admission
        within it) or the bus is not ours to deliver here (bound elsewhere).
        """
        if self._in_read or not self.bus.defer_delivery():
            return False
        self._in_read = True
        return True

    def read_ends(self) -> None:
        """Deliver what the read published and write the frames it made: one write per member.

        Publishers the admission resumes meanwhile (the queue emptied) publish
        as at any other time: their messages go in the next loop pass.
        """
        try:
            self.bus.deliver_now()
            if self._dirty:
                self._flush_all()
        finally:
            self._in_read = False
            if self.bus.queue_length and not self._flush_scheduled and self.loop is not None:
                # what they published: the bus delivers it in the next pass, flushed after
                self._flush_scheduled = True
                self.loop.call_soon(self._flush_all)

    def mark_dirty(self, group: Group) -> None:
        """A group has frames to write: flush at the end of this loop pass."""
        if not self._dirty:  # the first of this pass
            self.pass_us = time.monotonic_ns() // 1000
        self._dirty.append(group)
        if not self._flush_scheduled and not self._in_read and self.loop is not None:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for group in dirty:
            group.flush()
        self._rx_payload = None  # do not pin the last payload

    # -- congestion: lossless towards subscribers that keep reading ----------

    def congestion_changed(self, conn: Connection) -> None:
        if conn.congested:
            self._congested.add(conn)
        else:
            self._congested.discard(conn)
            if conn.state == "control":
                self.control.wake(conn)
        self._recompute_congestion()

    def _recompute_congestion(self) -> None:
        mask = 0
        for c in self._congested:
            if not c.stalled:
                mask |= c.mask
        released = self.congested_mask & ~mask
        self.congested_mask = mask
        if released and self._held:
            held, self._held = self._held, []
            for c in held:  # they wait for their turn like any held publisher
                self.wait_for_room(c)
        self._watch_stalls()

    def _watch_stalls(self) -> None:
        """While some subscriber is congested, a stall check is due (one timer at a time).

        A method of its own, not an ``if`` at each caller: a caller that cleared the
        timer and then called code that may set it again would have mypy narrow
        ``_stall_timer`` to None, which a compiled build (mypyc) enforces at run time.
        """
        if self._congested and self._stall_timer is None and self.scheduler is not None:
            self._stall_timer = self.scheduler.call_later(
                self._check_interval(), self._check_stalls
            )

    def _check_interval(self) -> float:
        return min(self.settings.stall_grace, self.settings.stall_timeout) / 2

    def hold_for_congestion(self, conn: Connection) -> None:
        if conn not in self._held:
            self._held.append(conn)

    def _check_stalls(self) -> None:
        """Every few tenths of a second while some subscriber is over high water."""
        self._stall_timer = None
        now = self.clock()
        changed = False
        for c in list(self._congested):
            verdict = c.outflow.check(now, c.bytes_sent())
            if verdict is Verdict.DEAD:
                self.count("stall_disconnects")
                c.abort(
                    f"stalled subscriber: read nothing for {c.outflow.idle(now):.1f} s "
                    f"with {c.buffered()} bytes waiting (stall_timeout "
                    f"{self.settings.stall_timeout:g} s)"
                )
                changed = True  # forget() recomputed already; keep looking
            elif verdict is Verdict.STALLED and not c.stalled:
                c.stalled = True
                self.count("stalled")
                self.logs.warning(
                    "stalled",
                    "%s stopped reading (%d bytes waiting): no longer holding publishers back",
                    c.describe(),
                    c.buffered(),
                )
                changed = True
            elif verdict is Verdict.FLOWING and c.stalled:
                c.stalled = False
                changed = True
        if changed:
            self._recompute_congestion()
        self._watch_stalls()

    # -- the outbound budget: memory bounded for all connections together ------

    def outbound_changed(self, conn: Connection, buffered: int) -> None:
        """``conn``'s transport holds ``buffered`` bytes after a write.

        Past its uid's ``outbound`` quota (:mod:`smdbus.proxy._access`) the
        connection is disconnected at the end of the pass.
        """
        delta = buffered - self.buffering.get(conn, 0)
        self.outbound += delta
        self.access.queued(conn, delta)
        if buffered:
            if not self.buffering:
                # a write buffer starts to grow: from now on, freed ones go back to
                # the system (heap.py; once per process, ctypes loaded only now)
                fix_mmap_threshold()
            self.buffering[conn] = buffered
        else:
            self.buffering.pop(conn, None)
        if self.outbound > self.outbound_peak:
            self.outbound_peak = self.outbound
        if self.outbound > self.settings.max_outbound and not self._budget_check_scheduled:
            # not now: a group may be writing to its members; at the end of the pass
            self._budget_check_scheduled = True
            if self.loop is not None:
                self.loop.call_soon(self._scheduled_budget_check)

    def _scheduled_budget_check(self) -> None:
        self._budget_check_scheduled = False
        self.make_room(0)

    def make_room(self, incoming: int) -> None:
        """Bring the outbound bytes, with ``incoming`` more, within ``max_outbound``.

        Called by a connection before a write that would go over, and at the end
        of a pass that went over. Not later: in one pass a group writes the same
        bytes to every member, so a thousand members that do not read would
        overshoot by a thousand copies.

        ``outbound`` counts each buffer as of its last write; they have drained
        since, so they are measured again first, and only what is still over
        costs connections: the stalled ones holding most first, then the
        largest of the others, down to three quarters of the budget, so that
        the next writes do not measure everything again.
        """
        buffering = self.buffering
        for c in list(buffering):
            buffering[c] = c.buffered()
            if not buffering[c]:
                del buffering[c]
        total = self.outbound = sum(buffering.values())
        budget = self.settings.max_outbound
        if total + incoming <= budget:
            return
        target = budget - budget // 4 - incoming
        ranked = sorted(buffering, key=lambda c: (not c.stalled, -buffering[c]))
        now = self.clock()
        for c in ranked:
            if self.outbound <= target:
                break
            how = f"stalled ({c.outflow.idle(now):.2f} s)" if c.stalled else "the largest"
            self._drop_for_budget(c, total, how)

    def _drop_for_budget(self, c: Connection, total: int, how: str) -> None:
        self.count("budget_disconnects")
        c.abort(
            f"outbound budget: {total} bytes waiting for all subscribers, over "
            f"max_outbound {self.settings.max_outbound}; this one {how} held {c.buffered()}"
        )

    # -- introspection -----------------------------------------------------

    def peers(self, *, include_closed: bool = True) -> list[PeerInfo]:
        """Open connections, then (by default) the recently closed ones."""
        out = [_peer_info(self, c) for c in self._connections.values()]
        if include_closed:
            out.extend(self._history)
        return out

    def open_peers(self, after: int, limit: int) -> list[PeerInfo]:
        """Up to ``limit`` open connections whose id is above ``after``, in id order."""
        later = (c for ident, c in self._connections.items() if ident > after)
        return [_peer_info(self, c) for c in itertools.islice(later, limit)]

    def connections(self) -> Iterable[Connection]:
        """The open connections, in id order (a ``describe`` finds the asker's own)."""
        return self._connections.values()

    def closed_peers(self) -> list[PeerInfo]:
        """The recently closed connections, oldest first."""
        return list(self._history)

    def stats(self) -> dict[str, Any]:
        return {
            "address": format_address(self.address),
            "connections": len(self._connections),
            "outbound": sum(c.buffered() for c in self.buffering),
            "outbound_peak": self.outbound_peak,
            "congested_mask": self.congested_mask,
            "bus_queue": self.bus.queue_length,
            "waiting": len(self.admission),
            "queries": self.control.active,
            "monitors": self.monitors.count,
            "refused_by_class": dict(self.access.by_class),
            **self.counters,
            "log_suppressed": self.logs.suppressed,
        }

    def control_query(self, conn: Connection, payload: bytes) -> None:
        """A query on the control stream (:mod:`smdbus.proxy._control`)."""
        self.control.query(conn, payload)
