"""The daemon's configuration: a TOML file, every key optional, every value checked.

Rules
-----
- The embedded defaults (:data:`DEFAULT_TOML`, the same text ``smd daemon
  --print-config`` shows and docs/configuration.md explains) run the daemon
  as a normal user: an abstract socket, the built-in policy, no buttons.
- Loading is strict and stops at the first problem: an unknown section or
  key, a value of the wrong type or out of range. Every number has a
  maximum as well as a minimum (a limit set to 2^63 no longer limits), and
  what the system must hold (the socket group, room for the socket path in
  ``sockaddr_un``) is checked here too. The error
  (:class:`DaemonConfigError`) names the file and the dotted field
  (``buttons.scripted[0].pattern``) so an operator finds it in one look; nothing has been
  started when it is raised.
- Relative paths in the file (``policy.file``, ``bus.socket``) are taken
  relative to the file's own directory, so a config and its policy can
  travel together.
- This module reads files and builds values; it opens no socket and starts
  nothing. Button controllers are read in the format of docs/buttons.md
  (:mod:`smdbus.button._config` checks them here; the daemon opens their
  devices when it starts).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import grp
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smdbus.button import DEFAULT_REGIME, ButtonError, Regime
from smdbus.net import DEFAULT_MIN_INTERVAL
from smdbus.policy import AccessConfig, AccessConfigError, parse_access
from smdbus.proxy import MAXIMA, ProxySettings
from smdbus.system import State
from smdbus.web import WEB_TOML, WebConfig, WebConfigError, parse_web_config
from smdbus.wire import DEFAULT_ADDRESS, format_address, parse_address

if TYPE_CHECKING:
    from smdbus.fleet import BridgeConfig

C_TIME_VALID_AFTER = 1594017754
"""libwebsockets' sanity threshold for the clock: 2020-07-06 06:42:34 UTC.

lws refuses TIME_VALID while ``lws_now_secs()`` is below this and asks its
NTP client; we check the same instant by default.
"""

CPD_GATE_MODES = ("result", "ok", "off")
SET_CLOCK_MODES = ("system", "process")
LOG_LEVELS = ("debug", "info", "warning", "error")

SUN_PATH = 108
"""Bytes in Linux's ``sockaddr_un.sun_path``: 107 for the path or the abstract name."""
GID_MAX = 2**32 - 2
"""The largest gid: ``gid_t`` is 32 bits and (gid_t)-1 tells chown(2) to leave the group."""
VALID_AFTER_MAX = 253402300799
"""9999-12-31T23:59:59Z: the last instant a date-time can name."""
DAY = 86400.0
"""The longest wait any key allows (a boot gate, a scripted button's delay or repeat)."""
CPD_TIMEOUT_MAX = 60.0
"""Seconds one CPD probe may take at most (C's typo made it 50 minutes; we default to 3 s)."""


class DaemonConfigError(ValueError):
    """A configuration that cannot be used; names the file and the field."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source, self.field, self.problem = source, field, problem
        where = f"{field}: " if field else ""
        super().__init__(f"{source}: {where}{problem}")


# -- the settings ------------------------------------------------------------------


@dataclass(frozen=True)
class BusConfig:
    """``[bus]``: where the proxy listens and its limits (see docs/proxy.md)."""

    proxy: ProxySettings = field(
        # the per-uid connection limit is the access quota's alone (REMOVED_PER_UID)
        default_factory=lambda: ProxySettings(
            max_connections_per_uid=int(MAXIMA["max_connections_per_uid"])
        )
    )

    @property
    def socket(self) -> str:
        return self.proxy.address


@dataclass(frozen=True)
class PolicyConfig:
    """``[policy]``: the Secure Streams policy (None: the one shipped with smdbus)."""

    file: Path | None = None


@dataclass(frozen=True)
class GatesConfig:
    """``[gates]``: which boot states wait for real work."""

    coldplug: bool = True
    dhcp: bool = True
    dhcp_timeout: float = 0.0
    cpd: str = "result"
    time: bool = True
    policy: bool = True


@dataclass(frozen=True)
class CpdConfig:
    """``[cpd]``: captive portal detection."""

    enabled: bool = True
    url: str | None = None
    timeout: float = 0.0
    """Seconds for one probe; 0: the policy's ``timeout_ms``, else 3 s."""
    retry: bool = True
    min_interval: float = DEFAULT_MIN_INTERVAL
    """Seconds between the starts of checks that bus triggers ask for (a rate limit)."""


@dataclass(frozen=True)
class TimeConfig:
    """``[time]``: when the clock counts as valid, and where to ask when it is not."""

    valid_after: int = C_TIME_VALID_AFTER
    ntp_server: str | None = None
    ntp_port: int = 123
    ntp_timeout: float = 2.0
    retry_interval: float = 5.0
    set_clock: str = "system"


@dataclass(frozen=True)
class RoutesConfig:
    """``[routes]``: the rtnetlink route monitor."""

    enabled: bool = True


@dataclass(frozen=True)
class SystemdConfig:
    """``[systemd]``: readiness notification and socket activation."""

    notify: bool = True
    socket_activation: bool = True


@dataclass(frozen=True)
class BootConfig:
    """``[boot]``: when the boot sequence starts."""

    wait_for_peers: int = 0
    wait_for_peers_timeout: float = 10.0


@dataclass(frozen=True)
class LogConfig:
    """``[log]``."""

    level: str = "info"


@dataclass(frozen=True)
class ScriptedButtons:
    """One ``[[buttons.scripted]]`` table: a pretend controller that plays a press pattern."""

    controller: str
    buttons: tuple[str, ...] = ("btn",)
    pattern: str = "0-102"
    active_high: int = 1
    """Bitmap: bit n set = button n is pressed when its level is high."""
    regime: Regime = DEFAULT_REGIME
    start: State = State.OPERATIONAL
    delay: float = 0.0
    repeat: float = 0.0
    index: int = 0


@dataclass(frozen=True)
class ButtonsConfig:
    """``[buttons]``: real controllers (docs/buttons.md format) and scripted ones."""

    controllers: tuple[Mapping[str, Any], ...] = ()
    """The ``[[buttons.controller]]`` tables, checked, as written."""
    scripted: tuple[ScriptedButtons, ...] = ()


@dataclass(frozen=True)
class DaemonConfig:
    """Everything the daemon is told. ``source`` names where it came from."""

    source: str = "<defaults>"
    bus: BusConfig = field(default_factory=BusConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    cpd: CpdConfig = field(default_factory=CpdConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    routes: RoutesConfig = field(default_factory=RoutesConfig)
    systemd: SystemdConfig = field(default_factory=SystemdConfig)
    boot: BootConfig = field(default_factory=BootConfig)
    log: LogConfig = field(default_factory=LogConfig)
    buttons: ButtonsConfig = field(default_factory=ButtonsConfig)
    bridge: BridgeConfig | None = None
    """``[bridge]`` (docs/fleet.md): checked by :func:`smdbus.fleet.parse_bridge_config`."""
    web: WebConfig = field(default_factory=WebConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    """``[access]`` (docs/security.md): checked by :func:`smdbus.policy.parse_access`."""


# -- the embedded defaults, as a documented file ------------------------------------

_P = ProxySettings()
_A = AccessConfig()
_U = _A.quotas.default

DEFAULT_TOML = f"""\
# smd daemon configuration: every key, with its default.
# A file only needs the keys it changes. Relative paths are relative to the file.

[bus]
socket = "{format_address(DEFAULT_ADDRESS)}"  # @name: abstract (no root needed); /path: a file
mode = "{_P.mode:04o}"             # permissions of a filesystem socket (octal string)
group = ""                # group owning a filesystem socket ("" = the daemon's own)
max_connections = {_P.max_connections}  # lowered to what RLIMIT_NOFILE allows
reserved_connections = {_P.reserved_connections}  # of those, only for root and the daemon's uid
max_frame = {_P.max_frame}          # largest frame len accepted (bytes)
first_frame_timeout = {_P.first_frame_timeout}  # seconds a new connection has to send STREAMTYPE
queue_depth = {_P.queue_depth}         # the bus queue; a full queue pauses publishers, never drops
high_water = {_P.high_water}      # unread bytes of a subscriber that hold publishers back
max_buffer = {_P.max_buffer}     # unread bytes past which a subscriber is disconnected
max_outbound = {_P.max_outbound}  # unread bytes of all subscribers; past it stalled ones go first
stall_grace = {_P.stall_grace}         # seconds a stuck subscriber may hold publishers back
stall_timeout = {_P.stall_timeout}       # seconds a stuck subscriber is kept before disconnecting

[policy]
file = ""                 # Secure Streams policy JSON; "" = the policy shipped with smdbus

[access]
# Who may send and receive each class (docs/security.md); re-read on SIGHUP.
defaults = true           # SYSTEM_STATE and NETWORK may be sent only by root and the daemon's user
dir = "{_A.dir}"  # drop-in rule files (*.toml, owned by root, not group/other-writable)
#
# [[access.rule]]
# classes = "NETWORK"     # class names as smd send takes them: NETWORK|USER0, 0x4, ALL
# send = ["@netdev"]      # "*" anyone, "alice" or "1000" a user, "@netdev" or "@108" a group
# receive = ["*"]         # root and the daemon's user may always send and receive everything
#
# Per-uid quotas: [access.quota.user] (every other uid), [access.quota.root], [access.quota.daemon]
[access.quota.user]
connections = {_U.connections}         # connections open at once
outbound = {_U.outbound}      # bytes queued towards all its connections; past it, disconnected
publish_rate = {_U.publish_rate}      # messages a second; past it the sender is held, not dropped
publish_burst = {_U.publish_burst}
control_rate = {_U.control_rate}        # control queries a second (smd peers, smd state ...)
control_burst = {_U.control_burst}

[gates]
coldplug = true           # hold IFACE_COLDPLUG until the routing table is dumped
dhcp = true               # hold DHCP until an interface holds a usable address
dhcp_timeout = 0.0        # seconds to wait for that address, then step on; 0 = wait forever (as C)
cpd = "result"            # "result": hold CPD_PRE_TIME until CPD has any result;
                          # "ok": until the result is OK (lws >= 4.2); "off": no hold
time = true               # hold TIME_VALID until the clock is sane (SNTP if it is not)
policy = true             # hold POLICY_VALID until the policy is loaded and valid

[cpd]
enabled = true            # captive portal detection (on boot, cpdcheck, ipacq, gw change)
url = ""                  # probe this URL instead of the policy's endpoint ("" = the policy's)
timeout = 0.0             # seconds for one probe; 0 = the policy's timeout_ms, else 3 s
retry = true              # retry failed probes along the policy's retry table
min_interval = {DEFAULT_MIN_INTERVAL:<11}# seconds between checks that bus triggers ask for

[time]
valid_after = {C_TIME_VALID_AFTER}   # Unix seconds or a TOML date-time: earlier = not valid
ntp_server = ""           # sets the NTP_SERVER blob; "" keeps the blob's default, pool.ntp.org
ntp_port = 123
ntp_timeout = 2.0         # seconds to wait for one SNTP answer
retry_interval = 5.0      # seconds between SNTP attempts while the clock is not valid
set_clock = "system"      # "system": set the system clock (needs CAP_SYS_TIME; falls back to
                          # "process" with a logged reason); "process": keep the time in the daemon

[routes]
enabled = true            # follow the kernel's routing table (rtnetlink) and publish changes

[systemd]
notify = true             # sd_notify READY=1, STATUS=, RELOADING=1, STOPPING=1 (NOTIFY_SOCKET)
socket_activation = true  # listen on the socket systemd passes (LISTEN_FDS) instead of binding

[boot]
wait_for_peers = 0        # start the boot only once this many clients receive SYSTEM_STATE
wait_for_peers_timeout = 10.0  # ... or after this many seconds

[log]
level = "info"            # debug, info, warning, error

{WEB_TOML}
[buttons]
# Events go out on INTERACTION as {{"type":"button","src":"<controller>/<button>","event":"click"}}.
# Real buttons: [[buttons.controller]] tables exactly as docs/buttons.md describes
# (source "evdev" or "gpiod"); a device that cannot be opened is skipped, saying why.
#
# [[buttons.controller]]
# name = "bc"
# source = "evdev"
# device = "/dev/input/by-path/platform-gpio-keys-event"
#   [[buttons.controller.button]]
#   name = "user"
#   key = "KEY_ENTER"
#
# A scripted controller plays a press pattern (demos, tests, no hardware):
#
# [[buttons.scripted]]
# controller = "demo"
# buttons = ["user"]            # the pattern presses the first unless it names one
# pattern = "0-102"             # presses, held from-to ms; "user:0-102,other:50-90"
# active_high = true            # or a bitmap, bit n = button n
# regime = {{ ms_min_down = 20 }}
# start = "OPERATIONAL"         # play once this state is reached
# delay = 0.0                   # seconds after that
# repeat = 0.0                  # play again every this many seconds; 0 = once

# The fleet bridge to an MQTT broker (docs/fleet.md; needs the extra smdbus[fleet]).
# Off unless the table is present: uncomment it (every key below is its default;
# the proxy it bridges is this daemon's bus).
# [bridge]
# enabled = true                # false: keep the table, do not run the bridge
# broker = "mqtt://127.0.0.1:1883"  # mqtts://HOST[:8883] for TLS (with [bridge.tls])
# protocol = "5"                # "5" or "3.1.1"
# keepalive = 30                # seconds
# connect_timeout = 10.0        # seconds
# device_id = ""                # this device's name on the broker; "" = the host name
# prefix = "smd"                # topics <prefix>/<device_id>/<CLASS>; .../cmd/<CLASS> down
# client_id = ""                # the MQTT client id; "" = "smd-bridge-<device_id>"
# up = ["SYSTEM_STATE", "NETWORK", "INTERACTION"]  # classes that go up
# retain = ["SYSTEM_STATE", "NETWORK:cpd"]  # state classes and CLASS:type, retained
# default_qos = 1               # QoS up
# qos = {{}}                      # per class: {{ NETWORK = 0 }}
# down = {{}}                     # the allow-list down: {{ NETWORK = {{ rate = 1.0, burst = 5 }} }}
# outbox = "bridge-outbox.sqlite"  # what the broker has not acknowledged, on disk
# outbox_max_messages = 100000
# outbox_max_bytes = 16777216
# outbox_max_age = 604800.0     # seconds; older messages are dropped (counted, reported)
# inflight = 100                # publishes awaiting PUBACK
# echo_ttl = 10.0               # seconds a command put on the bus is remembered (no loops)
# retry = {{ backoff_ms = [1000, 2000, 4000, 8000, 16000, 30000], jitter_pc = 30 }}
# tls = {{ ca = "", cert = "", key = "" }}  # ca "" = the system's CAs; a client cert and key
# auth = {{ username = "", password_file = "", password_env = "" }}  # never on a command line
"""


# -- loading ------------------------------------------------------------------------


def load_config(path: str | Path | None) -> DaemonConfig:
    """The config in ``path`` over the defaults (None: the defaults alone)."""
    if path is None:
        return parse_config(DEFAULT_TOML, "<defaults>", base=Path.cwd())
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DaemonConfigError(
            source, "", f"cannot read the config file: {e.strerror or e}"
        ) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DaemonConfigError(source, "", f"not UTF-8 text: {e}") from e
    return parse_config(text, source, base=Path(path).resolve().parent)


def parse_config(text: str, source: str = "<config>", *, base: Path | None = None) -> DaemonConfig:
    """Parse and validate TOML text; ``base`` resolves relative paths."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DaemonConfigError(source, "", f"not valid TOML: {e}") from None
    except RecursionError:
        # tomllib parses nesting by recursion: a few hundred levels exhaust the stack.
        raise DaemonConfigError(
            source, _deep_key(text), "arrays or inline tables nested too deeply to read"
        ) from None
    return _Reader(source, base or Path.cwd()).config(doc)


def _deep_key(text: str) -> str:
    """The key whose value opens the deepest brackets: where to look in a too-deep file.

    A rough reading (quotes and comments are not parsed): it only names the
    place for the error message, the file is already refused.
    """
    key, deepest, table = "", -1, ""
    for line in text.splitlines():
        header = re.match(r"\s*\[\[?\s*([^\]\s]+)\s*\]", line)
        if header:
            table = header.group(1)
            continue
        m = re.match(r"\s*([A-Za-z0-9_.\"'-]+)\s*=", line)
        depth = line.count("[") + line.count("{")
        if m and depth > deepest:
            deepest = depth
            key = f"{table}.{m.group(1)}" if table else m.group(1)
    return key


REMOVED_PER_UID = (
    "removed: the per-uid connection limit is the access policy's quota, "
    "[access.quota.user] connections (root's and the daemon's user's: [access.quota.root], "
    "[access.quota.daemon]), re-read on SIGHUP; move the value there"
)
"""Why ``[bus] max_connections_per_uid`` is refused: one per-uid connection limit, not two."""
_FIELD_IN_PROXY_ERROR = re.compile(r"proxy setting (\w+)=")


class _Table:
    """One table of the document being read: typed getters that remember what was read."""

    def __init__(self, reader: _Reader, path: str, data: Mapping[str, Any]) -> None:
        self.r = reader
        self.path = path
        self.data = data
        self.read: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> DaemonConfigError:
        return DaemonConfigError(self.r.source, self.at(key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: Any) -> Any:
        self.read.add(key)
        return self.data.get(key, default)

    def boolean(self, key: str, default: bool) -> bool:
        v = self._get(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {_show(v)}")
        return v

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"must be a whole number, got {_show(v)}")
        if not lo <= v <= hi:
            raise self.fail(key, f"must be {lo}..{hi}, got {v}")
        return v

    def number(
        self, key: str, default: float, lo: float, hi: float, *, above: bool = False
    ) -> float:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(key, f"must be a number of seconds, got {_show(v)}")
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            raise self.fail(key, f"must be a finite number, got {v}")
        if (v <= lo) if above else (v < lo):
            raise self.fail(key, f"must be {'>' if above else '>='} {lo:g}, got {v:g}")
        if v > hi:
            raise self.fail(key, f"must be at most {hi:g}, got {v:g}")
        return v

    def string(self, key: str, default: str) -> str:
        v = self._get(key, default)
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {_show(v)}")
        return v

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.string(key, default)
        if v not in choices:
            raise self.fail(key, f"must be one of {', '.join(map(repr, choices))}, got {v!r}")
        return v

    def optional_string(self, key: str) -> str | None:
        v = self.string(key, "")
        return v or None

    def path_value(self, key: str) -> Path | None:
        v = self.optional_string(key)
        if v is None:
            return None
        p = Path(v).expanduser()
        return p if p.is_absolute() else self.r.base / p

    def table(self, key: str) -> _Table:
        v = self._get(key, {})
        if not isinstance(v, dict):
            raise self.fail(key, f"must be a table, got {_show(v)}")
        return _Table(self.r, self.at(key), v)

    def done(self) -> None:
        """Refuse keys nobody read (typos are errors, not silently ignored)."""
        for key in self.data:
            if key not in self.read:
                near = difflib.get_close_matches(key, sorted(self.read), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                known = ", ".join(sorted(self.read)) or "none"
                raise self.fail(key, f"unknown key{hint}; known keys here: {known}")


class _Reader:
    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def config(self, doc: Mapping[str, Any]) -> DaemonConfig:
        top = _Table(self, "", doc)
        bus = self.bus(top.table("bus"))
        policy = self.policy(top.table("policy"))
        access = self.access(top.table("access"))
        gates = self.gates(top.table("gates"))
        cpd = self.cpd(top.table("cpd"))
        time_ = self.time(top.table("time"))
        routes = top.table("routes")
        routes_cfg = RoutesConfig(enabled=routes.boolean("enabled", True))
        routes.done()
        sd = top.table("systemd")
        systemd = SystemdConfig(
            notify=sd.boolean("notify", True),
            socket_activation=sd.boolean("socket_activation", True),
        )
        sd.done()
        boot_t = top.table("boot")
        boot = BootConfig(
            wait_for_peers=boot_t.integer("wait_for_peers", 0, 0, 1024),
            wait_for_peers_timeout=boot_t.number(
                "wait_for_peers_timeout", 10.0, 0, 3600.0, above=True
            ),
        )
        boot_t.done()
        log_t = top.table("log")
        log = LogConfig(level=log_t.choice("level", "info", LOG_LEVELS))
        log_t.done()
        buttons = self.buttons(top.table("buttons"))
        bridge = self.bridge(top.table("bridge"), bus) if top.has("bridge") else None
        web_t = top.table("web")
        try:
            web = parse_web_config(web_t.data, base=self.base)
        except WebConfigError as e:
            raise web_t.fail(e.field, e.problem) from None
        top.done()
        return DaemonConfig(
            source=self.source,
            bus=bus,
            policy=policy,
            gates=gates,
            cpd=cpd,
            time=time_,
            routes=routes_cfg,
            systemd=systemd,
            boot=boot,
            log=log,
            buttons=buttons,
            bridge=bridge,
            web=web,
            access=access,
        )

    def bridge(self, t: _Table, bus: BusConfig) -> BridgeConfig:
        """The fleet package checks its own table; the bridge joins this daemon's bus."""
        from smdbus.fleet import BridgeConfigError, parse_bridge_config  # only with [bridge]

        table = {"socket": format_address(bus.socket), **t.data}
        try:
            return parse_bridge_config(table, base=self.base, path=t.path)
        except BridgeConfigError as e:
            raise DaemonConfigError(self.source, e.field, e.problem) from None

    def bus(self, t: _Table) -> BusConfig:
        d = ProxySettings()
        spelled = t.string("socket", format_address(d.address))
        try:
            address = parse_address(spelled)
        except ValueError as e:
            raise t.fail("socket", str(e)) from None
        if not address.startswith("\0"):
            p = Path(address).expanduser()
            address = str(p if p.is_absolute() else self.base / p)
        # sun_path holds a path and its NUL, or the NUL that marks an abstract name and the name
        size = len(os.fsencode(address.removeprefix("\0")))
        if size >= SUN_PATH:
            what = "an abstract name" if address.startswith("\0") else "a socket path"
            raise t.fail(
                "socket",
                f"{format_address(address)!r} is {size} bytes; {what} holds at most "
                f"{SUN_PATH - 1} (sockaddr_un)",
            )
        mode_text = t.string("mode", f"{d.mode:04o}")
        try:
            mode = int(mode_text, 8)
        except ValueError:
            raise t.fail(
                "mode", f'must be an octal string like "0660", got {mode_text!r}'
            ) from None
        if not 0 <= mode <= 0o777:
            raise t.fail("mode", f"{mode_text!r} is not a permission mode")
        group = self.group(t)

        def whole(key: str, lo: int) -> int:
            return t.integer(key, getattr(d, key), lo, int(MAXIMA[key]))

        def seconds(key: str) -> float:
            return t.number(key, getattr(d, key), 0, MAXIMA[key], above=True)

        if t.has("max_connections_per_uid"):
            raise t.fail("max_connections_per_uid", REMOVED_PER_UID)
        kw: dict[str, Any] = {
            "max_connections": whole("max_connections", 1),
            "reserved_connections": whole("reserved_connections", 0),
            # one per-uid connection limit: the policy's quota (REMOVED_PER_UID)
            "max_connections_per_uid": int(MAXIMA["max_connections_per_uid"]),
            "max_frame": t.integer("max_frame", d.max_frame, 32, 0xFFFF),
            "first_frame_timeout": seconds("first_frame_timeout"),
            "queue_depth": whole("queue_depth", 1),
            "high_water": whole("high_water", 1),
            "max_buffer": whole("max_buffer", 1),
            "max_outbound": whole("max_outbound", 1),
            "stall_grace": seconds("stall_grace"),
            "stall_timeout": seconds("stall_timeout"),
        }
        t.done()
        try:
            proxy = ProxySettings(address=address, mode=mode, group=group, **kw)
        except ValueError as e:
            m = _FIELD_IN_PROXY_ERROR.search(str(e))
            raise t.fail(m.group(1) if m else "", str(e)) from None
        return BusConfig(proxy)

    def group(self, t: _Table) -> str | int | None:
        """``bus.group``: a gid in range, or the name of a group this system has."""
        v = t._get("group", "")
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise t.fail("group", f"must be a group name or gid, got {_show(v)}")
        if isinstance(v, int):
            if not 0 <= v <= GID_MAX:
                raise t.fail("group", f"a gid is 0..{GID_MAX}, got {v}")
            return v
        if v == "":
            return None
        try:
            grp.getgrnam(v)
        except (KeyError, ValueError):
            hint = f" (a gid is written as a number: group = {v})" if v.isdigit() else ""
            raise t.fail("group", f"no group named {v!r} on this system{hint}") from None
        return v

    def access(self, t: _Table) -> AccessConfig:
        """The policy package checks its own table (user and group names resolved here)."""
        t.read.update(t.data)
        try:
            return parse_access(t.data, self.source, base=self.base)
        except AccessConfigError as e:
            raise DaemonConfigError(self.source, e.field, e.problem) from None

    def policy(self, t: _Table) -> PolicyConfig:
        cfg = PolicyConfig(file=t.path_value("file"))
        t.done()
        return cfg

    def gates(self, t: _Table) -> GatesConfig:
        cfg = GatesConfig(
            coldplug=t.boolean("coldplug", True),
            dhcp=t.boolean("dhcp", True),
            dhcp_timeout=t.number("dhcp_timeout", 0.0, 0, DAY),
            cpd=t.choice("cpd", "result", CPD_GATE_MODES),
            time=t.boolean("time", True),
            policy=t.boolean("policy", True),
        )
        t.done()
        return cfg

    def cpd(self, t: _Table) -> CpdConfig:
        url = t.optional_string("url")
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise t.fail("url", f"must be an http:// or https:// URL with a host, got {url!r}")
        cfg = CpdConfig(
            enabled=t.boolean("enabled", True),
            url=url,
            timeout=t.number("timeout", 0.0, 0, CPD_TIMEOUT_MAX),
            retry=t.boolean("retry", True),
            min_interval=t.number("min_interval", DEFAULT_MIN_INTERVAL, 0.5, 3600.0),
        )
        t.done()
        return cfg

    def time(self, t: _Table) -> TimeConfig:
        raw = t._get("valid_after", C_TIME_VALID_AFTER)
        if isinstance(raw, _dt.datetime):
            if raw.tzinfo is None:
                raise t.fail("valid_after", "a date-time needs a time zone (e.g. ...Z)")
            valid_after = int(raw.timestamp())
        elif isinstance(raw, _dt.date):
            raise t.fail("valid_after", "give a date-time with a time zone, or Unix seconds")
        else:
            valid_after = t.integer("valid_after", C_TIME_VALID_AFTER, 0, VALID_AFTER_MAX)
        server = t.optional_string("ntp_server")
        if server is not None and (any(c.isspace() for c in server) or len(server) > 253):
            raise t.fail("ntp_server", f"is not a host name or address: {server!r}")
        cfg = TimeConfig(
            valid_after=valid_after,
            ntp_server=server,
            ntp_port=t.integer("ntp_port", 123, 1, 65535),
            ntp_timeout=t.number("ntp_timeout", 2.0, 0, 60.0, above=True),
            retry_interval=t.number("retry_interval", 5.0, 0, 3600.0, above=True),
            set_clock=t.choice("set_clock", "system", SET_CLOCK_MODES),
        )
        t.done()
        return cfg

    def buttons(self, t: _Table) -> ButtonsConfig:
        controllers_v = t._get("controller", [])
        if not isinstance(controllers_v, list):
            raise t.fail("controller", "must be an array of tables ([[buttons.controller]])")
        controllers = tuple(controllers_v)
        names: list[str] = []
        if controllers:
            names += self.check_controllers(controllers)
        scripted_v = t._get("scripted", [])
        if not isinstance(scripted_v, list):
            raise t.fail("scripted", "must be an array of tables ([[buttons.scripted]])")
        scripted: list[ScriptedButtons] = []
        for i, item in enumerate(scripted_v):
            where = t.at(f"scripted[{i}]")
            if not isinstance(item, dict):
                raise DaemonConfigError(self.source, where, "must be a table")
            cfg = self.scripted(_Table(self, where, item), i)
            if cfg.controller in names:
                raise DaemonConfigError(
                    self.source, f"{where}.controller", f"{cfg.controller!r} is used twice"
                )
            names.append(cfg.controller)
            scripted.append(cfg)
        t.done()
        return ButtonsConfig(controllers, tuple(scripted))

    def check_controllers(self, tables: tuple[Any, ...]) -> list[str]:
        """Let smdbus.button._config judge the tables; its errors get our file and field."""
        from smdbus.button import SourceUnavailable, load_controllers

        try:
            configured = load_controllers({"controller": list(tables)}, where="buttons")
        except SourceUnavailable:
            # the library for a key name is missing: the daemon skips it at start, saying why
            return [str(c.get("name")) for c in tables if isinstance(c, dict)]
        except ButtonError as e:
            m = _BUTTON_ERROR.match(str(e))
            if m:
                raise DaemonConfigError(
                    self.source, f"buttons.{m['field']}", m["problem"]
                ) from None
            raise DaemonConfigError(self.source, "buttons.controller", str(e)) from None
        return [c.controller.name for c in configured]

    def scripted(self, t: _Table, index: int) -> ScriptedButtons:
        controller = t.string("controller", "demo")
        names_v = t._get("buttons", ["btn"])
        if not (isinstance(names_v, list) and names_v and all(isinstance(n, str) for n in names_v)):
            raise t.fail("buttons", f"must be a non-empty list of names, got {_show(names_v)}")
        names = tuple(names_v)
        ah = t._get("active_high", True)
        if isinstance(ah, bool):
            active_high = (1 << len(names)) - 1 if ah else 0
        elif isinstance(ah, int) and ah >= 0:
            active_high = ah
        else:
            raise t.fail("active_high", f"must be true/false or a bitmap, got {_show(ah)}")
        regime = DEFAULT_REGIME
        regime_t = t.table("regime")
        if regime_t.data:
            known = set(Regime.setting_names())
            for key in regime_t.data:
                if key not in known:
                    raise regime_t.fail(
                        key, f"unknown regime setting; known: {', '.join(sorted(known))}"
                    )
            try:
                regime = dataclasses.replace(DEFAULT_REGIME, **regime_t.data)
            except (ButtonError, TypeError) as e:
                raise t.fail("regime", str(e)) from None
        pattern = t.string("pattern", "")
        if not pattern:
            raise t.fail("pattern", 'is required, e.g. "0-102" (held from-to, ms)')
        from smdbus.button.sources import parse_pattern

        try:
            presses = parse_pattern(pattern)
        except ButtonError as e:
            raise t.fail("pattern", str(e)) from None
        for p in presses:
            if p.button is not None and p.button not in names:
                raise t.fail("pattern", f"presses button {p.button!r}, not one of {list(names)}")
            if p.end_ms > DAY * 1000:
                raise t.fail("pattern", f"ends at {p.end_ms} ms, after one day ({DAY * 1000:.0f})")
        start_text = t.string("start", "OPERATIONAL")
        try:
            start = State.parse(start_text)
        except ValueError as e:
            raise t.fail("start", str(e)) from None
        cfg = ScriptedButtons(
            controller=controller,
            buttons=names,
            pattern=pattern,
            active_high=active_high,
            regime=regime,
            start=start,
            delay=t.number("delay", 0.0, 0, DAY),
            repeat=t.number("repeat", 0.0, 0, DAY),
            index=index,
        )
        t.done()
        try:
            build_controller(cfg)
        except ButtonError as e:
            raise DaemonConfigError(self.source, t.path, str(e)) from None
        return cfg


_BUTTON_ERROR = re.compile(
    r"^buttons: (?P<field>controller\[\d+\](?:\.button\[\d+\])?): (?P<problem>.*)$", re.S
)


def build_controller(cfg: ScriptedButtons) -> Any:
    """The :class:`smdbus.button.Controller` of a scripted table."""
    from smdbus.button import ButtonSpec, Controller

    specs = tuple(ButtonSpec(n, cfg.regime) for n in cfg.buttons)
    return Controller(cfg.controller, specs, cfg.active_high)


def _show(value: object) -> str:
    text = repr(value)
    kind = type(value).__name__
    return f"{text[:40]}{'...' if len(text) > 40 else ''} ({kind})"
