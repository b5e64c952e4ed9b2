"""The daemon's own boot gates: DHCP, CPD (any result), the policy.

Each gate is a state-manager notifier that only cares about one move. It
answers 0 (let it pass) or 1 (hold: the gate now owns the retry), and when
its condition may have changed it resumes the manager, but only if it is
the one holding it (``manager.held_by is link``), so it never pushes a plan
that another notifier is holding. Confirmation calls (``current ==
target``) always get 0. The coldplug gate and libwebsockets' strict CPD rule
come from :mod:`smdbus.net.gates`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from smdbus.net.cpd import CaptivePortalDetector, CpdResult
from smdbus.net.routetable import Address, RouteTable

log = logging.getLogger("smdbus.daemon.gates")

INITIALIZED = 3
DHCP = 6
CPD_PRE_TIME = 7
POLICY_VALID = 10
POLICY_INVALID = 16

Note = Callable[[str, str], None]


class _Gate:
    name = "gate"

    def __init__(self, on_note: Note | None = None) -> None:
        self._manager: Any = None
        self._link: Any = None
        self._note: Note = on_note or (lambda level, text: None)
        self.refusals = 0

    def _hold(self, manager: Any, link: Any) -> int:
        self._manager, self._link = manager, link
        self.refusals += 1
        return 1

    @property
    def holding(self) -> bool:
        return self._manager is not None and self._manager.held_by is self._link

    def _resume(self) -> None:
        manager, link = self._manager, self._link
        if manager is None or manager.held_by is not link:
            return
        self._manager = self._link = None
        try:
            manager.resume()
        except Exception:
            log.exception("%s gate: resuming the state manager failed", self.name)


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


class DhcpGate(_Gate):
    """Holds DHCP until an interface holds a usable address (seen through rtnetlink).

    ``table`` is the route monitor's cache; call :meth:`changed` after each
    batch of kernel events. With ``timeout`` > 0 the gate gives up waiting
    after that many seconds (logged, and said on the view) and lets the boot
    go on; 0 waits for ever, as C does. Without a table (no route monitor)
    the gate cannot see addresses and says so, then lets the boot pass.
    """

    name = "dhcp"

    def __init__(
        self,
        table: RouteTable | None,
        *,
        timeout: float = 0.0,
        on_note: Note | None = None,
        unavailable: str | None = None,
    ) -> None:
        super().__init__(on_note)
        self.table = table
        self.timeout = timeout
        self.unavailable = unavailable
        self.gave_up = False
        self.address: tuple[str, Address] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_noted = False

    def __call__(self, manager: Any, link: Any, current: int, target: int) -> int:
        if target != DHCP or current == target:
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
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expired)
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


class CpdResultGate(_Gate):
    """Holds CPD_PRE_TIME until captive portal detection has *a* result.

    libwebsockets 4.1 lets the boot past CPD_PRE_TIME once CPD has any
    result; later versions only on OK (:class:`smdbus.net.gates.CpdGate`,
    ``gates.cpd = "ok"``). This gate, the 4.1 rule, waits for the check to
    finish and then steps on whatever it said:
    a device with no internet still reaches OPERATIONAL, and the result
    (``{"type":"cpd","result":"No internet"}``) is on the bus for whoever
    needs the internet to decide.
    """

    name = "cpd"

    def __init__(self, detector: CaptivePortalDetector, on_note: Note | None = None) -> None:
        super().__init__(on_note)
        self.detector = detector
        self._remove = detector.add_result_listener(self._on_result)

    def replace(self, detector: CaptivePortalDetector) -> None:
        """Follow a new detector (a new policy)."""
        self._remove()
        self.detector = detector
        self._remove = detector.add_result_listener(self._on_result)

    def __call__(self, manager: Any, link: Any, current: int, target: int) -> int:
        if target != CPD_PRE_TIME or current == target:
            return 0
        d = self.detector
        if d.last is not None and not d.running:
            return 0
        if not d.running:
            try:
                d.trigger("state")
            except RuntimeError:
                log.error("cpd gate: no running loop to start a check on")
                return 0
        return self._hold(manager, link)

    def _on_result(self, result: CpdResult, detector: CaptivePortalDetector) -> None:
        # Listeners run inside the check's task, which still counts as running:
        # resume once it has finished.
        try:
            asyncio.get_running_loop().call_soon(self._resume)
        except RuntimeError:
            self._resume()


class PolicyGate(_Gate):
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

    def __call__(self, manager: Any, link: Any, current: int, target: int) -> int:
        if current == target:
            if target == POLICY_INVALID:
                self.stale = True
            return 0
        if current == POLICY_INVALID and target == INITIALIZED and self.stale:
            return link.hold(self._do_reload())  # type: ignore[no-any-return]
        if target == POLICY_VALID and not self.valid:
            self._note("error", "POLICY_VALID held: no valid policy")
            return self._hold(manager, link)
        return 0

    async def _do_reload(self) -> None:
        self.reloads += 1
        self.valid = await self._reload()
        self.stale = False
