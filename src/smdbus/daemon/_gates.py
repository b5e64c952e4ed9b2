"""The boot gates: state-manager notifiers that hold one move until its work is done.

Every gate of the daemon lives here, on one base (:class:`Gate`):

=================  ===============  ==================================================
gate               holds the move   until
=================  ===============  ==================================================
ColdplugGate       IFACE_COLDPLUG   the route monitor has its initial dump (lws waits
                                    for its netlink dump before it trusts its routes)
DhcpGate           DHCP             an interface holds a usable address (or
                                    ``timeout`` seconds passed, when one is set)
CpdGate            CPD_PRE_TIME     captive portal detection has a result (lws 4.1,
                                    ``require_ok=False``), or says OK (lws 4.3)
TimeGate           TIME_VALID       the wall clock is valid (asked over SNTP)
PolicyGate         POLICY_VALID     a valid policy is in place; and it reloads the
                                    policy when the manager leaves POLICY_INVALID
=================  ===============  ==================================================

Rules, the same for every gate:

- A gate looks only at its own move and answers 0 (pass) or nonzero (hold).
  Confirmation calls (``current == target``) always get 0.
- A gate that holds owns the retry: when its condition may have changed it calls
  ``manager.resume()``, but only while it is the one holding the manager
  (``manager.held_by is link``), so it never pushes a plan another notifier holds.
- States are :class:`~smdbus.system._state.State` members, never bare numbers.
- Every timer (DHCP's give-up, SNTP's retry) goes through the injected
  :class:`~smdbus.scheduler.Scheduler`, so tests move time by hand; without
  one a gate uses the running loop's (:class:`~smdbus.scheduler.LoopScheduler`).
- Progress goes to ``on_note(level, text)`` (the daemon's view and log).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from smdbus.daemon._sntp import SntpAnswer, SntpError
from smdbus.daemon._timecheck import WallClock, iso_time, sntp_query
from smdbus.scheduler import LoopScheduler, Scheduler, Timer, sleep
from smdbus.system import State

if TYPE_CHECKING:
    from smdbus.net import Address, CaptivePortalDetector, CpdResult, RouteTable

log = logging.getLogger("smdbus.daemon.gates")

Note = Callable[[str, str], None]


class ManagerLike(Protocol):
    """The part of :class:`smdbus.system._state.StateManager` a gate uses."""

    held_by: Any

    def resume(self) -> bool: ...


class DumpSource(Protocol):
    """What the coldplug gate needs of :class:`smdbus.net._routes.RouteMonitor`."""

    @property
    def dump_done(self) -> bool: ...

    def add_dump_listener(self, listener: Callable[[Any], None]) -> Callable[[], None]: ...


class Gate:
    """Shared by every gate: remember whom we held, resume them when told, note progress."""

    name = "gate"

    def __init__(self, on_note: Note | None = None, scheduler: Scheduler | None = None) -> None:
        self._manager: ManagerLike | None = None
        self._link: Any = None
        self._note: Note = on_note or (lambda level, text: None)
        self._scheduler = scheduler
        self.refusals = 0

    @property
    def scheduler(self) -> Scheduler:
        """The injected scheduler, or the running loop's (asked for on first use)."""
        if self._scheduler is None:
            self._scheduler = LoopScheduler(asyncio.get_running_loop())
        return self._scheduler

    def _hold(self, manager: ManagerLike, link: Any) -> int:
        self._manager, self._link = manager, link
        self.refusals += 1
        return 1

    @property
    def holding(self) -> bool:
        return self._manager is not None and self._manager.held_by is self._link

    def _resume(self) -> None:
        manager, link = self._manager, self._link
        if manager is None or manager.held_by is not link:
            return  # somebody else holds the plan (or nothing does): not ours to push
        self._manager = self._link = None
        try:
            manager.resume()
        except Exception:
            log.exception("%s gate: resuming the state manager failed", self.name)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the scheduler's clock (a manual one in tests)."""
        await sleep(self.scheduler, seconds)


# -- IFACE_COLDPLUG --------------------------------------------------------------------


class ColdplugGate(Gate):
    """Holds IFACE_COLDPLUG until ``monitor`` has its initial dump."""

    name = "routes-coldplug"

    def __init__(self, monitor: DumpSource, on_note: Note | None = None) -> None:
        super().__init__(on_note)
        self.monitor = monitor
        monitor.add_dump_listener(lambda _m: self._resume())

    def __call__(self, manager: ManagerLike, link: Any, current: int, target: int) -> int:
        if target != State.IFACE_COLDPLUG or current == target or self.monitor.dump_done:
            return 0
        log.info("holding IFACE_COLDPLUG until the routing table is dumped")
        return self._hold(manager, link)


# -- DHCP ------------------------------------------------------------------------------


def usable_addresses(table: RouteTable) -> list[tuple[str, Address]]:
    """Addresses a device can talk from: not loopback or link-local, on a link that is up."""
    links = table.links
    out: list[tuple[str, Address]] = []
    for a in table.addresses:
        try:
            ip = ipaddress.ip_address(a.address)
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue
        if a.scope not in (0, 200):  # global or site; host (254) and link (253) are not enough
            continue
        link = links.get(a.ifindex)
        if link is not None and not link.up:
            continue
        name = link.name if link is not None and link.name else f"if{a.ifindex}"
        out.append((name, a))
    return out


class DhcpGate(Gate):
    """Holds DHCP until an interface holds a usable address (seen through rtnetlink).

    ``table`` is the route monitor's cache; call :meth:`changed` after each
    batch of kernel events. With ``timeout`` > 0 the gate gives up waiting
    after that many seconds on the scheduler's clock (logged, and said on the
    view) and lets the boot go on; 0 waits for ever, as C does. Without a
    table (no route monitor) the gate cannot see addresses and says so, then
    lets the boot pass.
    """

    name = "dhcp"

    def __init__(
        self,
        table: RouteTable | None,
        *,
        timeout: float = 0.0,
        on_note: Note | None = None,
        unavailable: str | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        super().__init__(on_note, scheduler)
        self.table = table
        self.timeout = timeout
        self.unavailable = unavailable
        self.gave_up = False
        self.address: tuple[str, Address] | None = None
        self._timer: Timer | None = None
        self._waiting_noted = False

    def __call__(self, manager: ManagerLike, link: Any, current: int, target: int) -> int:
        if target != State.DHCP or current == target:
            return 0
        if self.table is None:
            if not self.gave_up:
                self.gave_up = True
                self._note(
                    "warning", f"DHCP: cannot see addresses ({self.unavailable}); stepping on"
                )
            return 0
        found = usable_addresses(self.table)
        if found:
            self._take(found[0])
            return 0
        if self.gave_up:
            return 0
        if not self._waiting_noted:
            self._waiting_noted = True
            forever = "for ever, as C" if not self.timeout else f"up to {self.timeout:g} s"
            self._note("info", f"DHCP: waiting for an interface with a usable address ({forever})")
        if self.timeout and self._timer is None:
            self._timer = self.scheduler.call_later(self.timeout, self._expired)
        return self._hold(manager, link)

    def _take(self, found: tuple[str, Address]) -> None:
        if self.address != found:
            name, a = found
            self._note("info", f"DHCP: {name} holds {a.address}/{a.prefixlen}")
        self.address = found
        self._cancel_timer()

    def changed(self) -> None:
        """The table changed: resume the boot if an address is now usable."""
        if self.table is None or not self.holding:
            return
        found = usable_addresses(self.table)
        if found:
            self._take(found[0])
            self._resume()

    def _expired(self) -> None:
        self._timer = None
        self.gave_up = True
        self._note(
            "warning",
            f"DHCP: no usable address after {self.timeout:g} s (gates.dhcp_timeout); stepping on",
        )
        self._resume()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._cancel_timer()


# -- CPD_PRE_TIME ----------------------------------------------------------------------


class CpdGate(Gate):
    """Holds CPD_PRE_TIME for captive portal detection, by lws 4.3's rule or 4.1's.

    When asked before any check has run, it starts one (the state machine is
    one of CPD's triggers). After *any* result the gate asks the manager to go
    on (as C's ``lws_system_cpd_set`` steps toward OPERATIONAL after any
    result), and the manager asks the gate again:

    - ``require_ok=True`` (the default, lws 4.3; ``gates.cpd = "ok"``): only OK
      passes. A device behind a captive portal or with no internet stays in
      DHCP with the result on the bus until a later check (a ``cpdcheck``
      trigger, an ``ipacq``, a gateway change, a call) says OK. The gate does
      not start another check by itself (that would probe the portal in a loop).
    - ``require_ok=False`` (lws 4.1, Debian's 4.1.6; ``gates.cpd = "result"``,
      the daemon's default): the finished check passes whatever it said, so a
      device with no internet still reaches OPERATIONAL, with
      ``{"type":"cpd","result":"No internet"}``
      on the bus for whoever needs the internet to decide.
    """

    name = "cpd"

    def __init__(
        self,
        detector: CaptivePortalDetector,
        *,
        require_ok: bool = True,
        on_note: Note | None = None,
    ) -> None:
        super().__init__(on_note)
        self.detector = detector
        self.require_ok = require_ok
        self._remove = detector.add_result_listener(self._on_result)

    def replace(self, detector: CaptivePortalDetector) -> None:
        """Follow a new detector (a new policy)."""
        self._remove()
        self.detector = detector
        self._remove = detector.add_result_listener(self._on_result)

    def _passes(self) -> bool:
        from smdbus.net import CpdState

        d = self.detector
        if self.require_ok:
            return d.state is CpdState.OK
        return d.last is not None and not d.running

    def __call__(self, manager: ManagerLike, link: Any, current: int, target: int) -> int:
        if target != State.CPD_PRE_TIME or current == target or self._passes():
            return 0
        d = self.detector
        if not d.running and d.last is None:
            try:
                d.trigger("state")
            except RuntimeError:
                log.error("cpd gate: no running loop to start a check on")
                if not self.require_ok:
                    return 0  # no result can come: 4.1's rule does not wait for one
        log.info("holding CPD_PRE_TIME: captive portal detection is %s", d.state.value)
        return self._hold(manager, link)

    def _on_result(self, result: CpdResult, detector: CaptivePortalDetector) -> None:
        # Listeners run inside the check's task, which still counts as running:
        # resume once it has finished.
        try:
            asyncio.get_running_loop().call_soon(self._resume)
        except RuntimeError:
            self._resume()


# -- TIME_VALID ------------------------------------------------------------------------


class TimeGate(Gate):
    """Holds TIME_VALID until the clock is valid, asking an NTP server until it is.

    ``server`` is called each attempt so a changed NTP_SERVER blob is used at
    the next try; a failed or useless answer is retried every
    ``retry_interval`` seconds on the scheduler's clock, for as long as the
    clock stays invalid (a device that cannot trust its clock cannot check
    certificates, so it does not step on, as C). See :mod:`smdbus.daemon._timecheck`.
    """

    name = "time"

    def __init__(
        self,
        clock: WallClock,
        set_clock: Callable[[int], object],
        server: Callable[[], str],
        *,
        port: int = 123,
        timeout: float = 2.0,
        retry_interval: float = 5.0,
        on_note: Note | None = None,
        query: Callable[..., Any] = sntp_query,
        scheduler: Scheduler | None = None,
    ) -> None:
        super().__init__(on_note, scheduler)
        self.clock = clock
        self._set_clock = set_clock
        self._server = server
        self.port = port
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._query = query
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0
        self.last_answer: SntpAnswer | None = None
        self.last_error: str | None = None

    def __call__(self, manager: ManagerLike, link: Any, current: int, target: int) -> int:
        if target != State.TIME_VALID or current == target or self.clock.valid():
            return 0
        if self._task is None or self._task.done():
            self._note(
                "info",
                f"clock reads {iso_time(self.clock.now())}, before "
                f"{iso_time(self.clock.valid_after)}: asking {self._server()} over SNTP",
            )
            self._task = asyncio.get_running_loop().create_task(self._sync(), name="sntp")
        return self._hold(manager, link)

    async def _sync(self) -> None:
        while not self.clock.valid():
            server = self._server()
            self.attempts += 1
            try:
                answer = await self._query(
                    server, self.port, timeout=self.timeout, now=self.clock.now
                )
            except (OSError, TimeoutError, SntpError) as e:
                self.last_error = f"{server}:{self.port}: {e}"
                self._note(
                    "warning",
                    f"SNTP attempt {self.attempts} failed: {self.last_error}; "
                    f"retry in {self.retry_interval:g} s",
                )
                await self._sleep(self.retry_interval)
                continue
            self.last_answer = answer
            corrected = answer.corrected + (self.clock.now() - answer.received)
            self._set_clock(int(corrected * 1e6))
            self._note(
                "info",
                f"clock set from {server} (stratum {answer.stratum}, "
                f"offset {answer.offset:+.3f} s, delay {answer.delay * 1000:.1f} ms): "
                f"now {iso_time(self.clock.now())}",
            )
            if not self.clock.valid():
                self.last_error = (
                    f"{server} says {iso_time(answer.corrected)}, still before "
                    f"{iso_time(self.clock.valid_after)}"
                )
                self._note("warning", f"{self.last_error}; retry in {self.retry_interval:g} s")
                await self._sleep(self.retry_interval)
        self._resume()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- POLICY_VALID / POLICY_INVALID -----------------------------------------------------


class PolicyGate(Gate):
    """Holds leaving POLICY_INVALID until the policy is reloaded; holds POLICY_VALID without one.

    ``reload`` does the work (read, validate, apply) and returns True when a
    valid policy is in place (the new one, or the previous one kept after a
    failed reload).
    """

    name = "policy"

    def __init__(self, reload: Callable[[], Awaitable[bool]], on_note: Note | None = None) -> None:
        super().__init__(on_note)
        self._reload = reload
        self.valid = True
        self.stale = False
        self.reloads = 0

    def __call__(self, manager: ManagerLike, link: Any, current: int, target: int) -> int:
        if current == target:
            if target == State.POLICY_INVALID:
                self.stale = True
            return 0
        if current == State.POLICY_INVALID and target == State.INITIALIZED and self.stale:
            return link.hold(self._do_reload())  # type: ignore[no-any-return]
        if target == State.POLICY_VALID and not self.valid:
            self._note("error", "POLICY_VALID held: no valid policy")
            return self._hold(manager, link)
        return 0

    async def _do_reload(self) -> None:
        self.reloads += 1
        self.valid = await self._reload()
        self.stale = False
