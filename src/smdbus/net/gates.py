"""State-manager notifiers that hold the boot sequence for the network.

Two gates, as lws has them:

- :class:`ColdplugGate` refuses the move into IFACE_COLDPLUG until the route
  monitor's initial dump is in the cache (lws waits for its netlink dump
  before it can trust its routing table for DNS and connections).
- :class:`CpdGate` refuses the move into CPD_PRE_TIME until captive portal
  detection says OK. After *any* result the gate asks the manager to go on
  (as C's ``lws_system_cpd_set`` steps toward OPERATIONAL after any result);
  the manager asks the gate again, and only OK lets it through. So a device
  behind a captive portal, or with no internet, stays in DHCP, with the
  result on the bus, until a later check (a ``cpdcheck`` trigger, an
  ``ipacq``, a gateway change, a call) answers OK. (That is lws 4.3's rule;
  ``CpdGate(require_ok=False)`` gives 4.1's, where any result passes.)

A gate answers its notifier call with nonzero to refuse; it then owns the
retry and calls ``manager.resume()`` when its condition may have changed,
but only while it is the one holding the manager (``manager.held_by``), so
it never pushes a plan some other notifier is holding. Confirmation calls
(``current == target``) are always answered 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from smdbus.net.cpd import CaptivePortalDetector, CpdResult, CpdState

log = logging.getLogger("smdbus.net.gates")

# The state numbers, as lws numbers them (smdbus.system.state.State is an IntEnum
# with the same values; the gates compare numbers so they also work with a fake).
IFACE_COLDPLUG = 5
CPD_PRE_TIME = 7


class ManagerLike(Protocol):
    """The part of :class:`smdbus.system.state.StateManager` a gate uses."""

    held_by: Any

    def resume(self) -> bool: ...


class DumpSource(Protocol):
    """What the coldplug gate needs of :class:`smdbus.net.routes.RouteMonitor`."""

    @property
    def dump_done(self) -> bool: ...

    def add_dump_listener(self, listener: Callable[[Any], None]) -> Callable[[], None]: ...


class _Gate:
    """Shared: remember whom we refused, resume them when told."""

    name = "gate"

    def __init__(self) -> None:
        self._manager: ManagerLike | None = None
        self._link: Any = None
        self.refusals = 0

    def _hold(self, manager: ManagerLike, link: Any) -> int:
        self._manager, self._link = manager, link
        self.refusals += 1
        return 1

    def _resume(self) -> None:
        manager, link = self._manager, self._link
        if manager is None:
            return
        if manager.held_by is not link:
            return  # somebody else holds the plan (or nothing does): not ours to push
        self._manager = self._link = None
        try:
            manager.resume()
        except Exception:
            log.exception("%s: resuming the state manager failed", self.name)


class ColdplugGate(_Gate):
    """Holds IFACE_COLDPLUG until ``monitor`` has its initial dump."""

    name = "routes-coldplug"

    def __init__(self, monitor: DumpSource) -> None:
        super().__init__()
        self.monitor = monitor
        monitor.add_dump_listener(lambda _m: self._resume())

    def __call__(self, manager: ManagerLike, link: Any, current: int, target: int) -> int:
        if target != IFACE_COLDPLUG or current == target or self.monitor.dump_done:
            return 0
        log.info("holding IFACE_COLDPLUG until the routing table is dumped")
        return self._hold(manager, link)


class CpdGate(_Gate):
    """Holds CPD_PRE_TIME until captive portal detection says OK.

    When asked before any check has run, it starts one (the state machine is
    one of CPD's triggers). After a Captive or No internet result it does not
    start another by itself (that would probe the portal in a loop); the
    other triggers do.

    ``require_ok=False`` gives libwebsockets 4.1's rule instead (the one in
    Debian's 4.1.6): any result lets the boot through, so a captive device
    reaches OPERATIONAL and finds its TLS connections failing. The default
    is lws 4.3's rule: only OK passes.
    """

    name = "cpd"

    def __init__(self, detector: CaptivePortalDetector, *, require_ok: bool = True) -> None:
        super().__init__()
        self.detector = detector
        self.require_ok = require_ok
        detector.add_result_listener(self._on_result)

    def __call__(self, manager: ManagerLike, link: Any, current: int, target: int) -> int:
        if target != CPD_PRE_TIME or current == target:
            return 0
        d = self.detector
        if d.state is CpdState.OK or (not self.require_ok and d.state is not CpdState.UNKNOWN):
            return 0
        if d.state is CpdState.UNKNOWN and not d.running and d.last is None:
            try:
                d.trigger("state")
            except RuntimeError:
                log.error("cpd gate: no running loop to start a check on")
        log.info("holding CPD_PRE_TIME: captive portal detection is %s", d.state.value)
        return self._hold(manager, link)

    def _on_result(self, result: CpdResult, detector: CaptivePortalDetector) -> None:
        # As C: step on after any result; the gate itself lets only OK through.
        self._resume()
