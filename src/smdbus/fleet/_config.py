"""The bridge's settings: the ``[bridge]`` TOML table, every key optional, every value checked.

Rules
-----
- :func:`parse_bridge_config` takes the table as ``tomllib`` gives it and
  returns a :class:`BridgeConfig`, or raises :class:`BridgeConfigError`
  naming the dotted field (``bridge.down.USER0.rate``). Unknown keys are
  errors, so a typo does not silently leave the default in place.
- Secrets never come from the command line: the password is read from a
  file (``auth.password_file``) or an environment variable
  (``auth.password_env``) when the bridge connects, so it is neither in
  the process list nor in this value's ``repr``.
- Every bound a peer can fill has a maximum here: the outbox (count,
  bytes, age), the downlink rate per class, the window of unacknowledged
  publishes.
- Relative paths are taken from ``base`` (the config file's directory).
- This module opens nothing: it reads a table and builds a value.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from smdbus.classes import Class, class_names, parse_mask
from smdbus.net import RetryPolicy
from smdbus.wire import DEFAULT_ADDRESS, format_address, parse_address

DEFAULT_UP = Class.SYSTEM_STATE | Class.NETWORK | Class.INTERACTION
DEFAULT_RETAIN = ("SYSTEM_STATE", "NETWORK:cpd")
DEFAULT_PREFIX = "smd"
DEFAULT_RETRY = RetryPolicy("bridge", (1000, 2000, 4000, 8000, 16000, 30000), 0, jitter_pc=30)
"""Reconnect waits, in the shape of the policy's retry tables (last entry repeats)."""

MAX_OUTBOX_MESSAGES = 10_000_000
MAX_OUTBOX_BYTES = 1 << 30
MAX_INFLIGHT = 1000
MAX_DOWN_RATE = 1000.0
MAX_DOWN_BURST = 10_000
PROTOCOLS = ("3.1.1", "5")

_ID_OK = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PREFIX_OK = re.compile(r"[A-Za-z0-9_.:-]{1,64}(/[A-Za-z0-9_.:-]{1,64}){0,7}")
_TYPE_OK = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class BridgeConfigError(ValueError):
    """A ``[bridge]`` setting that cannot be used; ``field`` is its dotted name."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class DownRule:
    """One class allowed down: at most ``rate`` messages/s, ``burst`` at once."""

    rate: float = 1.0
    burst: int = 5


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how to reach the MQTT broker (shared by ``smd bridge`` and ``smd fleet``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    protocol: str = "5"
    ca: Path | None = None
    """The CA file the broker's certificate must chain to (None: the system's CAs)."""
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    keepalive: int = 30
    connect_timeout: float = 10.0

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def password(self) -> str | None:
        """Read the password now (file first, then the environment); None when neither is set."""
        if self.password_file is not None:
            return self.password_file.read_text().rstrip("\r\n")
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise BridgeConfigError(
                    "bridge.auth.password_env", f"${self.password_env} is not set"
                )
            return value
        return None


@dataclass(frozen=True)
class BridgeConfig:
    """The checked ``[bridge]`` table (see docs/fleet.md for each key)."""

    enabled: bool = False
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    device_id: str = "device"
    prefix: str = DEFAULT_PREFIX
    client_id: str = ""
    socket: str = DEFAULT_ADDRESS
    up: int = int(DEFAULT_UP)
    retain: tuple[tuple[int, str | None], ...] = ((int(Class.SYSTEM_STATE), None),)
    """(class bit, JSON ``type`` or None for every message of the class) published retained."""
    qos: Mapping[int, int] = field(default_factory=dict)
    default_qos: int = 1
    down: Mapping[int, DownRule] = field(default_factory=dict)
    outbox: Path = Path("bridge-outbox.sqlite")
    outbox_max_messages: int = 100_000
    outbox_max_bytes: int = 16 << 20
    outbox_max_age: float = 7 * 86400.0
    inflight: int = 100
    echo_ttl: float = 10.0
    retry: RetryPolicy = DEFAULT_RETRY

    def qos_for(self, cls: int) -> int:
        return self.qos.get(cls, self.default_qos)

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"smd-bridge-{self.device_id}"


def _show(v: object) -> str:
    return f"{type(v).__name__} {v!r}"


class _Table:
    """Typed getters over one table that remember which keys were read."""

    def __init__(self, path: str, data: Mapping[str, Any], base: Path) -> None:
        self.path, self.data, self.base = path, data, base
        self.read: set[str] = set()

    def fail(self, key: str, problem: str) -> BridgeConfigError:
        return BridgeConfigError(f"{self.path}.{key}", problem)

    def get(self, key: str, default: Any) -> Any:
        self.read.add(key)
        return self.data.get(key, default)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"must be a whole number, got {_show(v)}")
        if not lo <= v <= hi:
            raise self.fail(key, f"must be {lo}..{hi}, got {v}")
        return v

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
            raise self.fail(key, f"must be a number, got {_show(v)}")
        if not lo < v <= hi:
            raise self.fail(key, f"must be above {lo:g} and at most {hi:g}, got {v:g}")
        return float(v)

    def string(self, key: str, default: str) -> str:
        v = self.get(key, default)
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {_show(v)}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {_show(v)}")
        return v

    def file(self, key: str) -> Path | None:
        v = self.string(key, "")
        if not v:
            return None
        p = Path(v).expanduser()
        return p if p.is_absolute() else self.base / p

    def table(self, key: str) -> _Table:
        v = self.get(key, {})
        if not isinstance(v, dict):
            raise self.fail(key, f"must be a table, got {_show(v)}")
        return _Table(f"{self.path}.{key}", v, self.base)

    def one_class(self, key: str, name: str) -> int:
        try:
            cls = parse_mask(name)
        except ValueError as e:
            raise self.fail(key, str(e)) from None
        if cls <= 0 or cls & (cls - 1) or cls > 0xFFFFFFFF:
            raise self.fail(key, f"must name one class, got {name!r}")
        return cls

    def done(self) -> None:
        for key in self.data:
            if key not in self.read:
                near = difflib.get_close_matches(key, sorted(self.read), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise self.fail(key, f"unknown key{hint}; known: {', '.join(sorted(self.read))}")


def parse_broker_url(url: str, where: str = "bridge.broker") -> tuple[str, int, bool]:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` → (host, port, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BridgeConfigError(where, f"must be mqtt://HOST[:PORT] or mqtts://..., got {url!r}")
    if parts.username or parts.password:
        raise BridgeConfigError(where, "must not carry credentials; use [bridge.auth]")
    if parts.path not in ("", "/") or parts.query:
        raise BridgeConfigError(where, f"must have no path or query, got {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as e:
        raise BridgeConfigError(where, str(e)) from None
    return parts.hostname, port, tls


def _broker(t: _Table) -> BrokerConfig:
    host, port, tls = parse_broker_url(
        t.string("broker", "mqtt://127.0.0.1:1883"), t.path + ".broker"
    )
    protocol = t.string("protocol", "5")
    if protocol not in PROTOCOLS:
        raise t.fail("protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    tls_t = t.table("tls")
    ca, cert, key = tls_t.file("ca"), tls_t.file("cert"), tls_t.file("key")
    tls_t.done()
    if (ca or cert or key) and not tls:
        raise tls_t.fail("ca", "TLS files are set but the broker URL is mqtt:// (use mqtts://)")
    if (cert is None) != (key is None):
        raise tls_t.fail("cert", "a client certificate needs both cert and key")
    auth = t.table("auth")
    username = auth.string("username", "") or None
    password_file = auth.file("password_file")
    password_env = auth.string("password_env", "") or None
    auth.done()
    if (password_file or password_env) and username is None:
        raise auth.fail("username", "a password is set but no username")
    return BrokerConfig(
        host=host,
        port=port,
        tls=tls,
        protocol=protocol,
        ca=ca,
        cert=cert,
        key=key,
        username=username,
        password_file=password_file,
        password_env=password_env,
        keepalive=t.integer("keepalive", 30, 5, 3600),
        connect_timeout=t.number("connect_timeout", 10.0, 0, 300),
    )


def parse_broker_config(
    table: Mapping[str, Any], *, base: Path | None = None, path: str = "broker"
) -> BrokerConfig:
    """The broker keys alone (``broker``, ``protocol``, ``keepalive``, ``tls``, ``auth``)."""
    t = _Table(path, table, base or Path.cwd())
    broker = _broker(t)
    t.done()
    return broker


def check_device_id(value: str, path: str = "bridge") -> str:
    """A device id that is one topic level with no wildcard (``+``/``#``) or separator."""
    if not _ID_OK.fullmatch(value):
        raise BridgeConfigError(
            f"{path}.device_id", f"must be 1..64 of A-Z a-z 0-9 _ . : -, got {value!r}"
        )
    return value


def check_prefix(value: str, path: str = "bridge") -> str:
    if not _PREFIX_OK.fullmatch(value):
        raise BridgeConfigError(
            f"{path}.prefix", f"must be topic levels of A-Z a-z 0-9 _ . : - , got {value!r}"
        )
    return value


def _default_device_id() -> str:
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname())[:64]
    return name or "device"


def parse_bridge_config(
    table: Mapping[str, Any], *, base: Path | None = None, path: str = "bridge"
) -> BridgeConfig:
    """Check the ``[bridge]`` table; raise :class:`BridgeConfigError` at the first problem."""
    t = _Table(path, table, base or Path.cwd())
    enabled = t.boolean("enabled", True)
    broker = _broker(t)
    device_id = check_device_id(t.string("device_id", "") or _default_device_id(), path)
    prefix = check_prefix(t.string("prefix", DEFAULT_PREFIX), path)
    client_id = t.string("client_id", "")
    if len(client_id) > 128:
        raise t.fail("client_id", "must be at most 128 characters")
    spelled = t.string("socket", format_address(DEFAULT_ADDRESS))
    try:
        address = parse_address(spelled)
    except ValueError as e:
        raise t.fail("socket", str(e)) from None
    up_v = t.get("up", [n for n in class_names(DEFAULT_UP)])
    if not isinstance(up_v, list) or not all(isinstance(x, str) for x in up_v):
        raise t.fail("up", f"must be a list of class names, got {_show(up_v)}")
    up = 0
    for i, name in enumerate(up_v):
        up |= t.one_class(f"up[{i}]", name)
    retain_v = t.get("retain", list(DEFAULT_RETAIN))
    if not isinstance(retain_v, list) or not all(isinstance(x, str) for x in retain_v):
        raise t.fail("retain", f"must be a list of CLASS or CLASS:type, got {_show(retain_v)}")
    retain: list[tuple[int, str | None]] = []
    for i, spec in enumerate(retain_v):
        name, _, kind = spec.partition(":")
        cls = t.one_class(f"retain[{i}]", name)
        if kind and not _TYPE_OK.fullmatch(kind):
            raise t.fail(f"retain[{i}]", f"type must be 1..32 of A-Z a-z 0-9 _ . -, got {kind!r}")
        retain.append((cls, kind or None))
    default_qos = t.integer("default_qos", 1, 0, 2)
    qos_t = t.table("qos")
    qos = {qos_t.one_class(k, k): qos_t.integer(k, 1, 0, 2) for k in list(qos_t.data)}
    down_t = t.table("down")
    down: dict[int, DownRule] = {}
    for k in list(down_t.data):
        cls = down_t.one_class(k, k)
        rule_t = down_t.table(k)
        down[cls] = DownRule(
            rate=rule_t.number("rate", 1.0, 0, MAX_DOWN_RATE),
            burst=rule_t.integer("burst", 5, 1, MAX_DOWN_BURST),
        )
        rule_t.done()
    retry_t = t.table("retry")
    backoff = retry_t.get("backoff_ms", list(DEFAULT_RETRY.backoff_ms))
    if (
        not isinstance(backoff, list)
        or not backoff
        or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 < x <= 3_600_000 for x in backoff
        )
    ):
        raise retry_t.fail("backoff_ms", f"must be a list of 1..3600000 ms, got {_show(backoff)}")
    retry = RetryPolicy(
        "bridge",
        tuple(backoff),
        0,
        jitter_pc=retry_t.integer("jitter_pc", DEFAULT_RETRY.jitter_pc, 0, 100),
    )
    retry_t.done()
    cfg = BridgeConfig(
        enabled=enabled,
        broker=broker,
        device_id=device_id,
        prefix=prefix,
        client_id=client_id,
        socket=address,
        up=up,
        retain=tuple(retain),
        qos=qos,
        default_qos=default_qos,
        down=down,
        outbox=t.file("outbox") or t.base / "bridge-outbox.sqlite",
        outbox_max_messages=t.integer("outbox_max_messages", 100_000, 1, MAX_OUTBOX_MESSAGES),
        outbox_max_bytes=t.integer("outbox_max_bytes", 16 << 20, 1024, MAX_OUTBOX_BYTES),
        outbox_max_age=t.number("outbox_max_age", 7 * 86400.0, 0, 365 * 86400.0),
        inflight=t.integer("inflight", 100, 1, MAX_INFLIGHT),
        echo_ttl=t.number("echo_ttl", 10.0, 0, 3600.0),
        retry=retry,
    )
    t.done()
    return cfg
