"""The device daemon: one process composing the bus, the proxy and the system helpers.

Theory of operation
-------------------
:func:`prepare` does everything that can fail because of what the operator
wrote (the config is already parsed; here the policy is loaded and checked,
button sources are built) before anything is started, so a bad file fails
with one clear error and nothing half-started. :meth:`Daemon.run` then,
on one asyncio loop:

1. binds the bus and starts the proxy on the configured socket, or on the
   one systemd passed (socket activation);
2. creates the state manager (announcing on SYSTEM_STATE) and its query
   responder, the route monitor, captive portal detection, and registers the
   gates: IFACE_COLDPLUG waits for the route dump, DHCP for a usable
   address, CPD_PRE_TIME for a CPD result, TIME_VALID for a sane clock
   (SNTP), and leaving POLICY_INVALID for a reloaded policy;
3. starts the button sources, then steps the state manager toward
   OPERATIONAL. systemd hears READY=1 when OPERATIONAL is reached (or the
   earlier ``ready_state`` a device chooses: a first boot without a network
   may never reach OPERATIONAL, and ``systemctl start`` waits for READY);
4. on SIGHUP re-reads the access rules (``[access]``, docs/security.md;
   no connection is dropped) and runs the POLICY_INVALID cycle (the policy
   is re-read while the state is held in POLICY_INVALID); on SIGTERM/SIGINT announces DESTROYING,
   lets the bus deliver it, hangs up every client and returns 0.

The loop takes SIGHUP, SIGTERM and SIGINT before it starts anything, from
the :class:`~smdbus.daemon._signals.PendingSignals` that caught them while
the process started: a SIGTERM that came first stops it before it serves
anything; a SIGHUP before the boot has started re-reads the policy just
before the boot starts (there is no POLICY_VALID yet to leave). The loop
lets go of them only after the proxy has closed and removed its socket.

The daemon itself publishes nothing the components do not: what a client
sees on the bus is what each component announces.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from smdbus.bus import Bus
from smdbus.classes import ALL_CLASSES, Class
from smdbus.daemon._config import (
    DaemonConfig,
    DaemonConfigError,
    ScriptedButtons,
    build_controller,
    load_config,
)
from smdbus.daemon._gates import ColdplugGate, CpdGate, DhcpGate, PolicyGate, TimeGate
from smdbus.daemon._live import Status
from smdbus.daemon._signals import PendingSignals
from smdbus.daemon._systemd import (
    ActivationError,
    SystemdNotifier,
    activated_socket,
    listen_fds,
    socket_address,
)
from smdbus.daemon._timecheck import WallClock
from smdbus.net import Policy, PolicyError, default_policy, load_policy
from smdbus.policy import AccessConfigError, AccessPolicy, load_access_policy
from smdbus.proxy import Proxy
from smdbus.scheduler import LoopScheduler, Scheduler, sleep
from smdbus.system import (
    Blobs,
    BlobType,
    IllegalTransition,
    ShutdownError,
    State,
    StateError,
    StateManager,
    SystemContext,
    SystemOps,
)
from smdbus.wire import format_address

log = logging.getLogger("smdbus.daemon")

NoteSink = Callable[[str, str, int], None]
MessageSink = Callable[[int, int, bytes, Any], None]
"""A bus message and its sender as the proxy names it (:mod:`smdbus.proxy._monitor`)."""
StateSink = Callable[[str], None]
"""The daemon's state, as its state manager enters it (the live view's ``▸`` lines)."""


class DaemonError(RuntimeError):
    """The daemon cannot start (the message says what and where); exit status in ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- preparation: everything that can fail because of the files ---------------------


@dataclass
class Prepared:
    """The checked inputs of a daemon run."""

    config: DaemonConfig
    policy: Policy
    activated_fd: int | None = None
    access: AccessPolicy | None = None
    """Who may send and receive what ([access] and its drop-ins); None: the defaults."""
    also_fds: tuple[int, ...] = ()
    """More sockets systemd passed (a second ListenStream=): served by the same proxy."""


def read_access(config: DaemonConfig) -> AccessPolicy:
    """The ``[access]`` rules and their drop-in files, compiled; skipped files are logged."""
    access = load_access_policy(config.access, {0, os.getuid()})
    for line in access.skipped:
        log.warning("access: %s", line)
    return access


def read_policy(config: DaemonConfig) -> Policy:
    """The configured policy (or the shipped one), checked for what the daemon needs."""
    path = config.policy.file
    policy = default_policy() if path is None else load_policy(path)
    if config.cpd.enabled and policy.captive_portal_detect is None:
        raise PolicyError(
            "s",
            "no captive_portal_detect streamtype, but cpd.enabled is true in "
            f"{config.source} (add the streamtype, or set cpd.enabled = false)",
            policy.source,
        )
    if config.cpd.enabled:
        _make_detector(policy, config, bus=None)  # the URL and protocol are checked here
    return policy


def prepare(config: DaemonConfig, environ: dict[str, str] | None = None) -> Prepared:
    """Load the policy and read socket activation; raises DaemonError (status 2) on bad input."""
    try:
        policy = read_policy(config)
    except (PolicyError, ValueError) as e:
        raise DaemonError(f"policy: {e}", 2) from None
    try:
        access = read_access(config)
    except (AccessConfigError, OSError) as e:
        raise DaemonError(f"access: {e}", 2) from None
    fd: int | None = None
    also: tuple[int, ...] = ()
    if config.systemd.socket_activation:
        try:
            fds = listen_fds(environ)
        except ActivationError as e:
            raise DaemonError(f"socket activation: {e}", 2) from None
        if fds:
            fd, also = fds[0], tuple(fds[1:])
    if fd is None:
        _check_socket_group(config)
    return Prepared(config, policy, fd, access, also)


def _check_socket_group(config: DaemonConfig) -> None:
    """Refuse a ``bus.group`` this process may not give its socket to (chown(2) would fail).

    Without CAP_CHOWN a process can only hand a file to a group it is in; found
    now, that is a bad config (exit 2), not a failure after the socket is bound.
    """
    settings = config.bus.proxy
    if settings.group is None or settings.address.startswith("\0") or _can_chown():
        return
    where = f"bad config: {config.source}: bus.group"
    try:
        gid = (
            settings.group
            if isinstance(settings.group, int)
            else grp.getgrnam(settings.group).gr_gid
        )
    except KeyError:
        raise DaemonError(f"{where}: no group named {settings.group!r} on this system", 2) from None
    if gid != os.getegid() and gid not in os.getgroups():
        raise DaemonError(
            f"{where}: this process (uid {os.geteuid()}) is not in group {settings.group!r} "
            "and has no CAP_CHOWN to give the socket to it",
            2,
        )


def _can_chown() -> bool:
    """CAP_CHOWN in the effective set (root usually has it; a container's root may not)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & 1)  # CAP_CHOWN is capability 0
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _make_detector(policy: Policy, config: DaemonConfig, bus: Any) -> Any:
    from smdbus.net import CaptivePortalDetector

    kwargs: dict[str, Any] = {"bus": bus, "min_interval": config.cpd.min_interval}
    if config.cpd.url:
        kwargs["url"] = config.cpd.url
    if config.cpd.timeout:
        kwargs["timeout"] = config.cpd.timeout
    if not config.cpd.retry:
        kwargs["retry"] = None
    return CaptivePortalDetector.from_policy(policy, **kwargs)


# -- the daemon ---------------------------------------------------------------------


@dataclass
class _Stats:
    messages: int = 0
    started: float = field(default_factory=time.monotonic)
    operational_at: float | None = None


class Daemon:
    """One run of the device daemon. ``on_message``/``on_note`` feed a view.

    ``scheduler``: the one clock and timer wheel of every part (the state manager, the
    gates, the proxy, the buttons and a scripted button's waits); by default the loop's,
    from :meth:`run`. Tests give a manual one and move time by hand.
    """

    def __init__(
        self,
        prepared: Prepared,
        *,
        on_message: MessageSink | None = None,
        on_note: NoteSink | None = None,
        on_state: StateSink | None = None,
        notifier: SystemdNotifier | None = None,
        ready_state: State = State.OPERATIONAL,
        wall_clock: WallClock | None = None,
        signals: PendingSignals | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.config = prepared.config
        self.scheduler = scheduler
        """Every timer of the daemon's parts (the loop's, from :meth:`run`, unless given)."""
        self.policy = prepared.policy
        self._access = prepared.access
        self._activated_fd = prepared.activated_fd
        self._also_fds = prepared.also_fds
        self._on_message = on_message
        self._on_state = on_state
        self._note_sink = on_note
        self.notifier = notifier or SystemdNotifier(enabled=self.config.systemd.notify)
        if not State.CONTEXT_CREATED <= ready_state <= State.OPERATIONAL:
            raise ValueError(f"READY at {ready_state.name}: not a state on the boot's way")
        self.ready_state = ready_state
        self._ready_sent = False  # in this boot (or reload) cycle
        t = self.config.time
        self.clock = wall_clock or WallClock(t.valid_after, mode=t.set_clock)
        self.blobs = Blobs()
        if t.ntp_server:
            self.blobs[BlobType.NTP_SERVER].set(t.ntp_server.encode())
        self.ops = SystemOps(set_clock=self.clock.set_clock)
        self.bus = Bus(queue_depth=self.config.bus.proxy.queue_depth)
        self.proxy: Proxy | None = None
        self.bus_address = self.config.bus.socket
        """Where the bus is served: the configured socket, or the one systemd passed."""
        self.manager: StateManager | None = None
        self.monitor: Any = None
        self.detector: Any = None
        self.dhcp_gate: DhcpGate | None = None
        self.time_gate: TimeGate | None = None
        self.policy_gate: PolicyGate | None = None
        self._cpd_link: Any = None
        self.bridge: Any = None
        self.system: SystemContext | None = None
        self.web: Any = None
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._drivers: list[Any] = []
        self._sources: list[Any] = []
        self.stats = _Stats()
        self.exit_reason = ""
        self._signals = signals
        """Caught before the loop ran; caught again once it is done (None: neither)."""
        self._booting = False
        self._reload_pending = False

    # -- notes ---------------------------------------------------------------

    def note(self, level: str, text: str) -> None:
        """Tell the operator (the live view, else the log).

        Bus messages reach the view on the next loop pass; a note is passed on
        the same way, so the view shows "▸ DHCP" before "DHCP: eth0 holds ...".
        """
        if self._note_sink is None:
            log.log(logging.getLevelName(level.upper()), "%s", text)
            return
        stamp = time.monotonic_ns() // 1000
        try:
            asyncio.get_running_loop().call_soon(self._note_sink, level, text, stamp)
        except RuntimeError:
            self._note_sink(level, text, stamp)

    # -- status for the view ---------------------------------------------------

    def status(self) -> Status:
        m = self.manager
        state = m.state.published_name if m is not None else "CONTEXT_CREATED"
        held = m.held_by.name if m is not None and m.held_by is not None else None
        cpd = self.detector.state.value if self.detector is not None else "off"
        if self.detector is not None and self.detector.running:
            cpd = "checking"
        routes = len(self.monitor.table.routes) if self.monitor is not None else 0
        clients = 0
        if self.proxy is not None:
            clients = sum(1 for p in self.proxy.peers(include_closed=False) if p.state != "closed")
        boot = None
        if self.stats.operational_at is not None:
            boot = self.stats.operational_at - self.stats.started
        return Status(state, held, cpd, routes, clients, self.stats.messages, boot)

    def ntp_server(self) -> str:
        """The NTP_SERVER blob (set from ``time.ntp_server``, else pool.ntp.org)."""
        return self.blobs.ntp_server()

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`stop`); returns the exit status."""
        loop = asyncio.get_running_loop()
        if self.scheduler is None:
            self.scheduler = LoopScheduler(loop)
        if self.notifier.scheduler is None:
            self.notifier.scheduler = self.scheduler
        self._stop = asyncio.Event()
        self.stats.started = time.monotonic()
        self._take_signals(loop)
        try:
            if self._stop.is_set():
                self.note("info", f"{self.exit_reason} while starting: stopping before serving")
                return 0
            async with self.bus:
                try:
                    await self._start_proxy()
                except OSError as e:
                    raise DaemonError(f"cannot serve the bus: {e}", 1) from None
                try:
                    await self._start(loop)
                    await self._stop.wait()
                finally:
                    await self._shutdown()
        finally:
            self._release_signals(loop)
        return 0

    def _take_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop handles SIGHUP/SIGTERM/SIGINT from now on; then act on any caught before."""
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
            loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        for sig in self._signals.take() if self._signals is not None else ():
            if sig == signal.SIGHUP:
                self.reload()
            else:
                self.stop(sig.name)

    def _release_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        if self._signals is not None:
            self._signals.catch()

    def stop(self, reason: str = "asked to stop") -> None:
        self.exit_reason = reason
        if self._stop is not None:
            self._stop.set()

    async def _start_proxy(self) -> None:
        settings = self.config.bus.proxy
        if self._activated_fd is not None:
            try:
                sock = activated_socket(self._activated_fd)
                also = [activated_socket(fd) for fd in self._also_fds]
            except ActivationError as e:
                raise OSError(str(e)) from None
            from dataclasses import replace

            settings = replace(settings, address=socket_address(sock))
            self.proxy = Proxy(
                settings,
                bus=self.bus,
                sock=sock,
                access=self._access,
                also=also,
                scheduler=self.scheduler,
            )
            await self.proxy.start()
            shown = ", ".join(format_address(socket_address(s)) for s in [sock, *also])
            self.note("info", f"serving the bus on {shown} (from systemd)")
        else:
            self.proxy = Proxy(
                settings, bus=self.bus, access=self._access, scheduler=self.scheduler
            )
            await self.proxy.start()
            self.note("info", f"serving the bus on {format_address(settings.address)}")
        self.bus_address = settings.address  # systemd's socket, when it passed one
        self.notifier.status(f"serving the bus on {format_address(settings.address)}")

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self.config
        if self._on_message is not None:
            if self.proxy is not None:  # with who sent each message
                self.proxy.monitors.tap(ALL_CLASSES, self._seen)
            else:
                self.bus.register(ALL_CLASSES, self._seen, name="live-view")
        # lws_system (state manager, attach queue, blobs, ops, state responder): one
        # composition, smdbus.system.SystemContext; the rest is added around it below.
        assert self.scheduler is not None, "run() sets it"
        scheduler = self.scheduler
        self.system = SystemContext(
            self.bus, ops=self.ops, blobs=self.blobs, scheduler=scheduler, name="system"
        )
        manager = self.manager = self.system.manager
        manager.add_listener(self._state_changed)
        if self._on_state is not None:
            self._on_state(manager.state.published_name)

        # Network: routes first (coldplug and DHCP read its table), then CPD.
        if cfg.routes.enabled:
            await self._start_routes()
        if cfg.cpd.enabled:
            self.detector = _make_detector(self.policy, cfg, self.bus)
            self.detector.add_result_listener(self._cpd_result)

        # Gates, in boot order (each only looks at its own move).
        if cfg.gates.coldplug and self.monitor is not None:
            manager.register(ColdplugGate(self.monitor), "routes-coldplug")
        if cfg.gates.dhcp:
            table = self.monitor.table if self.monitor is not None else None
            why = None
            if self.monitor is None:
                why = "the route monitor is off (routes.enabled = false)"
            elif self.monitor.dump_error is not None:
                why = f"the route dump failed: {self.monitor.dump_error}"
                table = None
            self.dhcp_gate = DhcpGate(
                table,
                timeout=cfg.gates.dhcp_timeout,
                on_note=self.note,
                unavailable=why,
                scheduler=scheduler,
            )
            manager.register(self.dhcp_gate, "dhcp")
        self._register_cpd_gate()
        if cfg.gates.time:
            t = cfg.time
            self.time_gate = TimeGate(
                self.clock,
                self.ops.set_clock,
                self.ntp_server,
                port=t.ntp_port,
                timeout=t.ntp_timeout,
                retry_interval=t.retry_interval,
                on_note=self.note,
                scheduler=scheduler,
            )
            manager.register(self.time_gate, "time")
        elif not self.clock.valid():
            self.note("warning", "the clock is not valid, but gates.time is off: stepping on")
        if cfg.gates.policy:
            self.policy_gate = PolicyGate(self._reload_policy, on_note=self.note)
            manager.register(self.policy_gate, "policy")

        self._start_buttons(loop)
        if cfg.bridge is not None and cfg.bridge.enabled:
            await self._start_bridge(cfg.bridge)

        if cfg.web.enabled:
            await self._start_web()
        if cfg.boot.wait_for_peers:
            await self._wait_for_peers(cfg.boot.wait_for_peers, cfg.boot.wait_for_peers_timeout)
        while self._reload_pending:  # a SIGHUP came while starting
            self._reload_pending = False
            await self._reload_policy()
        if self._stop is not None and self._stop.is_set():
            return
        self._booting = True
        self.note("info", f"booting toward OPERATIONAL (policy {self.policy.release or '?'})")
        self._advance(lambda: manager.steps(State.OPERATIONAL))

    async def _start_bridge(self, bridge_cfg: Any) -> None:
        try:
            from smdbus.fleet import FleetBridge
        except ImportError as e:
            raise DaemonError(f"[bridge] needs the fleet extra (smdbus[fleet]): {e}", 1) from None
        self.bridge = FleetBridge(bridge_cfg, on_link=self.note)
        await self.bridge.start(wait_for_bus=True)
        self.note("info", f"bridging to {bridge_cfg.broker.url} as {bridge_cfg.device_id}")

    async def _start_web(self) -> None:
        """The web view (docs/web.md); one that cannot start is a warning, not a failed boot."""
        try:
            from smdbus.web import WebService

            web = WebService(
                self.config.web,
                bus=self.bus,
                proxy=self.proxy,
                manager=self.manager,
                status=self.status,
            )
            await web.start()
        except (ImportError, OSError, RuntimeError) as e:
            self.note("warning", f"web view off: {type(e).__name__}: {e}")
            return
        self.web = web
        url = web.url()  # the token only to a terminal (the live view), not to the log
        shown = url if self._note_sink is not None else f"{url.split('?')[0]} (smd web-url)"
        self.note("info", f"web view on {shown}")

    def _advance(self, request: Callable[[], bool]) -> None:
        try:
            request()
        except StateError as e:
            self.note("error", f"state manager: {e}")

    async def _start_routes(self) -> None:
        from smdbus.net import RouteMonitor

        self.monitor = RouteMonitor(self.bus, observer=self._net_events)
        try:
            await self.monitor.start()
        except Exception as e:
            self.note("warning", f"route monitor off: {type(e).__name__}: {e}")
        else:
            table = self.monitor.table
            self.note(
                "info",
                f"routing table dumped: {len(table.routes)} routes, "
                f"{len(table.addresses)} addresses, {len(table.links)} links",
            )

    def _register_cpd_gate(self) -> None:
        manager, mode = self.manager, self.config.gates.cpd
        if manager is None or self.detector is None or mode == "off":
            return
        if self._cpd_link is not None:
            manager.unregister(self._cpd_link)
        gate = CpdGate(self.detector, require_ok=mode == "ok", on_note=self.note)
        self._cpd_link = manager.register(gate, "cpd")

    def _start_buttons(self, loop: asyncio.AbstractEventLoop) -> None:
        """Real controllers (their devices opened now; skipped, saying why, if they cannot be)
        and scripted ones (played once their start state is reached)."""
        if not (self.config.buttons.controllers or self.config.buttons.scripted):
            return  # nothing of the button package is loaded
        from smdbus.button import ButtonDriver, Classifier, SourceUnavailable, load_controllers
        from smdbus.button.sources import ScriptedSource

        tables = self.config.buttons.controllers
        configured: list[Any] = []
        if tables:
            try:
                configured = load_controllers({"controller": list(tables)}, where="buttons")
            except SourceUnavailable as e:
                self.note("warning", f"buttons skipped: {e}")
        for c in configured:
            kind = type(c.source).__name__.replace("Source", "").lower()
            what = f"button controller {c.controller.name!r} ({kind})"
            try:
                c.source.open()
            except (SourceUnavailable, OSError) as e:
                self.note("warning", f"{what} skipped: {e}")
                continue
            driver = ButtonDriver(
                Classifier(c.controller), self.bus, clock=c.source.clock, scheduler=self.scheduler
            )
            self._run_button(what, c.controller, c.source, driver, c.source.run(driver.feed), loop)
        for sc in self.config.buttons.scripted:
            controller = build_controller(sc)
            source = ScriptedSource(sc.pattern, controller, scheduler=self.scheduler)
            driver = ButtonDriver(Classifier(controller), self.bus, scheduler=self.scheduler)
            what = f"button controller {sc.controller!r} (scripted {sc.pattern!r})"
            self._run_button(what, controller, source, driver, self._play(sc, source, driver), loop)

    def _run_button(
        self,
        what: str,
        controller: Any,
        source: Any,
        driver: Any,
        coro: Any,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._drivers.append(driver)
        self._sources.append(source)
        task = loop.create_task(self._guard(what, coro), name=f"button-{controller.name}")
        self._tasks.append(task)
        names = ", ".join(b.name for b in controller.buttons)
        self.note("info", f"{what}: buttons {names}")

    async def _play(self, cfg: ScriptedButtons, source: Any, driver: Any) -> None:
        assert self.manager is not None
        try:
            await self.manager.wait_for(cfg.start)
        except ShutdownError:
            return
        if cfg.delay:
            await sleep(self.scheduler, cfg.delay)
        while True:
            await source.run(driver.feed, clock=driver.clock)
            if not cfg.repeat:
                return
            await sleep(self.scheduler, cfg.repeat)

    async def _guard(self, what: str, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.note("warning", f"{what} stopped: {type(e).__name__}: {e}")

    async def _wait_for_peers(self, count: int, timeout: float) -> None:
        assert self.proxy is not None
        proxy = self.proxy

        def ready() -> int:
            return sum(
                1
                for p in proxy.peers(include_closed=False)
                if p.state != "closed" and p.mask & Class.SYSTEM_STATE
            )

        self.note("info", f"waiting for {count} client(s) on SYSTEM_STATE before booting")
        assert self.scheduler is not None, "run() sets it"
        now = self.scheduler.now
        deadline = now() + timeout
        while ready() < count:
            if self._stop is not None and self._stop.is_set():
                return
            if now() >= deadline:
                self.note("warning", f"only {ready()} of {count} client(s) after {timeout:g} s")
                return
            await asyncio.sleep(0.01)

    # -- reactions ---------------------------------------------------------------

    def _seen(self, cls: int, timestamp_us: int, payload: bytes, sender: Any = None) -> None:
        self.stats.messages += 1
        if self._on_message is not None:
            self._on_message(cls, timestamp_us, payload, sender)

    def _state_changed(self, previous: State, new: State) -> None:
        self.notifier.status(f"{new.published_name}")
        if self._on_state is not None:
            self._on_state(new.published_name)
        if new == State.OPERATIONAL and self.stats.operational_at is None:
            self.stats.operational_at = time.monotonic()
        on_the_way = State.CONTEXT_CREATED <= new <= State.OPERATIONAL
        if on_the_way and new >= self.ready_state and not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(f"{new.published_name}, bus on {format_address(self.bus_address)}")

    def _net_events(self, events: Sequence[Any]) -> None:
        from smdbus.net import AddressAdded, RouteAdded, RouteRemoved

        assert self.monitor is not None
        links = self.monitor.table.link_names()
        for ev in events:
            if isinstance(ev, RouteAdded | RouteRemoved):
                sign = "+" if isinstance(ev, RouteAdded) else "-"
                self.note("debug", f"route {sign} {ev.route.describe(links)}")
            elif isinstance(ev, AddressAdded):
                a = ev.address
                self.note(
                    "debug",
                    f"address + {a.address}/{a.prefixlen} on {links.get(a.ifindex, a.ifindex)}",
                )
        if self.dhcp_gate is not None:
            # The table sees the batch after the observer: look once it is applied.
            asyncio.get_running_loop().call_soon(self.dhcp_gate.changed)

    def _cpd_result(self, result: Any, detector: Any) -> None:
        report = detector.last
        why = report.probes[-1].reason if report is not None else ""
        tries = (
            f" after {report.attempts} probes" if report is not None and report.attempts > 1 else ""
        )
        text = f"CPD {result.value}{tries}: {why}"
        m = self.manager
        if (
            result.value != "OK"
            and self.config.gates.cpd == "result"
            and m is not None
            and m.state < State.CPD_PRE_TIME
        ):
            text += (
                '; stepping on (gates.cpd = "result", as libwebsockets 4.1 does; '
                'later versions hold CPD_PRE_TIME until OK: gates.cpd = "ok")'
            )
        elif (
            result.value != "OK"
            and self.config.gates.cpd == "ok"
            and m is not None
            and m.state < State.CPD_PRE_TIME
        ):
            text += '; holding CPD_PRE_TIME until OK (gates.cpd = "ok", as libwebsockets since 4.2)'
        self.note("info" if result.value == "OK" else "warning", text)

    def reload(self) -> None:
        """SIGHUP: the access rules re-read, then the POLICY_INVALID cycle with a re-read policy.

        While starting, the access rules are the ones just read (the config is
        not read a second time: it may be a FIFO a test or a tool writes once).
        """
        m = self.manager
        if self._stop is not None and self._stop.is_set():
            return
        if m is None or not self._booting:
            self._reload_pending = True
            self.note("info", "SIGHUP while starting: the policy is re-read before the boot")
            return
        if m.state == State.CONTEXT_DESTROYING:
            return
        self.reload_access()
        self.note("info", "SIGHUP: policy invalid; re-reading it")
        self.notifier.reloading(time.monotonic_ns() // 1000)
        self._ready_sent = False  # READY=1 again when the cycle reaches ready_state
        try:
            m.policy_invalid()
        except (IllegalTransition, StateError) as e:
            self.note("error", f"cannot reload now: {e}")

    def reload_access(self) -> bool:
        """Re-read ``[access]`` (from the config file) and its drop-ins; keep the old on error.

        The proxy applies the new rules to every open connection; none is dropped.
        """
        source = self.config.source
        try:
            config = load_config(source) if not source.startswith("<") else self.config
            access = read_access(config)
        except (DaemonConfigError, AccessConfigError, OSError) as e:
            self.note("error", f"access reload failed: {e}; keeping the rules in force")
            return False
        self._access = access
        if self.proxy is not None:
            self.proxy.set_access(access)
        rules = len(access.rules.rules.rules)
        self.note("info", f"access rules reloaded ({rules} rules, {len(access.skipped)} skipped)")
        return True

    async def _reload_policy(self) -> bool:
        old = self.policy
        try:
            new = await asyncio.to_thread(read_policy, self.config)
        except (PolicyError, ValueError, OSError) as e:
            self.note("error", f"policy reload failed: {e}; keeping release {old.release!r}")
            return True
        self.policy = new
        if self.detector is not None and (
            new.captive_portal_detect != old.captive_portal_detect
            or new.retry_for("captive_portal_detect") != old.retry_for("captive_portal_detect")
        ):
            await self.detector.aclose()
            self.detector = _make_detector(new, self.config, self.bus)
            self.detector.add_result_listener(self._cpd_result)
            self._register_cpd_gate()
            self.note("info", f"policy reloaded (release {new.release!r}): new CPD settings")
        else:
            self.note("info", f"policy reloaded (release {new.release!r})")
        return True

    # -- shutdown ---------------------------------------------------------------

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        m = self.manager
        if m is not None and m.state != State.CONTEXT_DESTROYING:
            try:
                if m.state >= State.OPERATIONAL:
                    m.destroy(force=True)  # steps, as C: via POLICY_INVALID
                else:
                    # Mid-boot: jump, so the gates are not asked to start their work now.
                    m.transition(State.CONTEXT_DESTROYING)
            except StateError as e:
                log.error("announcing shutdown: %s", e)
        # Proxy.close() (below) delivers what is queued, DESTROYING included, before hanging up.
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for driver in self._drivers:
            driver.close()
        for source in self._sources:
            with contextlib.suppress(Exception):
                if hasattr(source, "close"):
                    source.close()
        if self.time_gate is not None:
            await self.time_gate.aclose()
        if self.dhcp_gate is not None:
            self.dhcp_gate.close()
        if self.detector is not None:
            await self.detector.aclose()
        if self.monitor is not None:
            await self.monitor.stop()
        if self.system is not None:
            with contextlib.suppress(StateError):  # the failure was logged above
                self.system.close()
        if self.bridge is not None:
            await self.bridge.stop()  # a client of the proxy: stopped before it
        if self.web is not None:
            await self.web.close()
        if self.proxy is not None:
            # Clients are told by closing, as the C proxy does.
            await self.proxy.close()
        self.notifier.close()
