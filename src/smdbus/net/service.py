"""The network side of the device daemon, composed: CPD, the route monitor, their gates.

A daemon does::

    net = NetworkServices(bus, policy=load_policy(path))       # or the default policy
    manager = StateManager(bus, notifiers=net.notifiers())     # gates in place first
    await net.start()                                           # dump, follow, listen
    manager.steps(State.OPERATIONAL)
    ...
    await net.stop()

``start`` never fails the boot for the routing table: if rtnetlink cannot be
read (no permission, a missing namespace), the error is logged,
``route_error`` keeps it, and the coldplug gate lets the boot go on without a
route cache (CPD still runs; gateway changes then only come from others).
"""

from __future__ import annotations

import logging

from smdbus.net.announce import BusLike
from smdbus.net.cpd import DEFAULT_TIMEOUT, CaptivePortalDetector
from smdbus.net.gates import ColdplugGate, CpdGate
from smdbus.net.policy import Policy, default_policy
from smdbus.net.routes import RouteMonitor
from smdbus.system.state import Notifier

log = logging.getLogger("smdbus.net")


class NetworkServices:
    """Owns the detector, the monitor and the two gates for one bus."""

    def __init__(
        self,
        bus: BusLike,
        *,
        policy: Policy | None = None,
        netns: str | None = None,
        cpd_timeout: float | None = None,
        cpd_require_ok: bool = True,
        routes: bool = True,
    ) -> None:
        self.policy = policy if policy is not None else default_policy()
        timeout = cpd_timeout
        if timeout is None:
            cpd = self.policy.captive_portal_detect
            timeout = cpd.timeout_ms / 1000 if cpd and cpd.timeout_ms else DEFAULT_TIMEOUT
        self.detector: CaptivePortalDetector | None = None
        if self.policy.captive_portal_detect is not None:
            self.detector = CaptivePortalDetector.from_policy(self.policy, bus=bus, timeout=timeout)
        else:
            log.warning("%s: no captive_portal_detect streamtype: CPD off", self.policy.source)
        self.monitor = RouteMonitor(bus, netns=netns) if routes else None
        self.cpd_gate = CpdGate(self.detector, require_ok=cpd_require_ok) if self.detector else None
        self.coldplug_gate = ColdplugGate(self.monitor) if self.monitor else None
        self.route_error: BaseException | None = None

    def notifiers(self) -> list[tuple[str, Notifier]]:
        """The gates, for ``StateManager(notifiers=...)`` or ``manager.register``."""
        out: list[tuple[str, Notifier]] = []
        if self.coldplug_gate is not None:
            out.append((self.coldplug_gate.name, self.coldplug_gate))
        if self.cpd_gate is not None:
            out.append((self.cpd_gate.name, self.cpd_gate))
        return out

    async def start(self) -> None:
        """Dump and follow the routing table (errors logged, not raised)."""
        if self.monitor is None:
            return
        try:
            await self.monitor.start()
        except Exception as e:
            self.route_error = e
            log.error("routing table unavailable, booting without it: %s", e)

    async def stop(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()
        if self.detector is not None:
            await self.detector.aclose()
