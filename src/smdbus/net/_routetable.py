"""The routing-table cache and what to announce when it changes (sans-IO).

Rules of this module:

- It is fed parsed kernel events (:class:`RouteAdded`, :class:`AddressRemoved`,
  ...) in *batches*, one batch per netlink datagram, and answers with the
  messages to publish on NETWORK. It never touches a socket; the rtnetlink
  parser is :mod:`smdbus.net._rtnetlink`, the socket adapter :mod:`smdbus.net._routes`.
- Only unicast and local routes are cached, as lws caches them; broadcast,
  multicast, anycast and the like are routing debris for our purpose.
- Announcements, in the order of the events that caused them:
  a route entering (or changing in) the cache gives ``{"rt":"add"}``, one
  leaving it ``{"rt":"del"}``. An event that takes routes with it (an IPv4
  address removed, a link down or gone) gives one ``{"rt":"del"}`` if any
  route went. If anything in the batch added or removed a route with a
  gateway, the batch ends with one ``{"trigger":"cpdcheck","src":"gw-change"}``.
- The kernel removes some routes without telling (IPv4 routes when the last
  IPv4 address of their link goes, and routes using a removed address as
  preferred source; a link's routes, but its local ones, when it goes down),
  so the cache does the same itself.
- The initial dump (:meth:`RouteTable.load`) fills the cache silently.

Theory of operation: routes are keyed like the kernel keys them (family,
table, destination and its length, source prefix, TOS, metric) plus the
output interface, so a NEWROUTE for an existing key replaces it (``ip route
replace``) and a DELROUTE names exactly one entry.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

RTN_UNICAST = 1
RTN_LOCAL = 2
CACHED_TYPES = frozenset({RTN_UNICAST, RTN_LOCAL})

TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
PROTOCOL_NAMES = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    9: "ra",
    16: "dhcp",
}
SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
TYPE_NAMES = {RTN_UNICAST: "unicast", RTN_LOCAL: "local"}
FAMILY_NAMES: dict[int, str] = {int(socket.AF_INET): "inet", int(socket.AF_INET6): "inet6"}

MSG_ADD: dict[str, str] = {"rt": "add"}
MSG_DEL: dict[str, str] = {"rt": "del"}
MSG_GW_CHANGE: dict[str, str] = {"trigger": "cpdcheck", "src": "gw-change"}

RouteKey: TypeAlias = (
    "tuple[int, int, str | None, int, str | None, int, int, int | None, int | None]"
)


@dataclass(frozen=True, slots=True)
class Route:
    """One cached route. ``dst`` None with ``dst_len`` 0 is a default route."""

    family: int
    dst: str | None
    dst_len: int
    gateway: str | None = None
    ifindex: int | None = None
    priority: int | None = None
    table: int = 254
    protocol: int = 0
    scope: int = 0
    type: int = RTN_UNICAST
    src: str | None = None
    src_len: int = 0
    prefsrc: str | None = None
    tos: int = 0

    @property
    def key(self) -> RouteKey:
        return (
            self.family,
            self.table,
            self.dst,
            self.dst_len,
            self.src,
            self.src_len,
            self.tos,
            self.priority,
            self.ifindex,
        )

    @property
    def is_default(self) -> bool:
        return self.dst is None and self.dst_len == 0

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The destination as a network (``0.0.0.0/0`` or ``::/0`` for a default route)."""
        if self.dst is None:
            return ipaddress.ip_network("::/0" if self.family == socket.AF_INET6 else "0.0.0.0/0")
        return ipaddress.ip_network(f"{self.dst}/{self.dst_len}", strict=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with names for the numbers a reader looks up."""
        d = asdict(self)
        d["family"] = FAMILY_NAMES.get(self.family, self.family)
        d["table_name"] = TABLE_NAMES.get(self.table, str(self.table))
        d["protocol_name"] = PROTOCOL_NAMES.get(self.protocol, str(self.protocol))
        d["scope_name"] = SCOPE_NAMES.get(self.scope, str(self.scope))
        d["type"] = TYPE_NAMES.get(self.type, self.type)
        return d

    def describe(self, links: dict[int, str] | None = None) -> str:
        """One line in the manner of ``ip route``."""
        parts: list[str] = []
        if self.type != RTN_UNICAST:
            parts.append(TYPE_NAMES.get(self.type, str(self.type)))
        if self.is_default:
            parts.append("default")
        else:
            full = 32 if self.family == socket.AF_INET else 128
            parts.append(self.dst if self.dst_len == full else f"{self.dst}/{self.dst_len}")  # type: ignore[arg-type]
        if self.src is not None:
            parts += ["from", f"{self.src}/{self.src_len}"]
        if self.gateway is not None:
            parts += ["via", self.gateway]
        if self.ifindex is not None:
            name = (links or {}).get(self.ifindex)
            parts += ["dev", name if name else f"#{self.ifindex}"]
        if self.table != 254:
            parts += ["table", TABLE_NAMES.get(self.table, str(self.table))]
        parts += ["proto", PROTOCOL_NAMES.get(self.protocol, str(self.protocol))]
        parts += ["scope", SCOPE_NAMES.get(self.scope, str(self.scope))]
        if self.prefsrc is not None:
            parts += ["src", self.prefsrc]
        if self.priority is not None:
            parts += ["metric", str(self.priority)]
        if self.family == socket.AF_INET6:
            parts.insert(0, "inet6")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Address:
    """An address on an interface (the source addresses routes depend on)."""

    family: int
    address: str
    prefixlen: int
    ifindex: int
    scope: int = 0

    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipaddress.ip_interface(f"{self.address}/{self.prefixlen}")


@dataclass(frozen=True, slots=True)
class Link:
    ifindex: int
    name: str | None
    up: bool


# -- events: what the adapter parses kernel messages into ------------------------


@dataclass(frozen=True, slots=True)
class RouteAdded:
    route: Route


@dataclass(frozen=True, slots=True)
class RouteRemoved:
    route: Route


@dataclass(frozen=True, slots=True)
class AddressAdded:
    address: Address


@dataclass(frozen=True, slots=True)
class AddressRemoved:
    address: Address


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """RTM_NEWLINK: a link appeared or its flags changed. ``alias`` is ``ip link set alias``."""

    ifindex: int
    name: str | None
    up: bool
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class LinkRemoved:
    ifindex: int
    name: str | None = None


NetEvent: TypeAlias = (
    RouteAdded | RouteRemoved | AddressAdded | AddressRemoved | LinkChanged | LinkRemoved
)


class RouteTable:
    """The cache: routes, the addresses they hang on, link state; decides announcements."""

    def __init__(self) -> None:
        self._routes: dict[RouteKey, Route] = {}
        self._addresses: dict[tuple[int, int, str, int], Address] = {}
        self._links: dict[int, Link] = {}
        self.batches = 0
        """Batches fed (after the dump)."""

    # -- queries -----------------------------------------------------------

    @property
    def routes(self) -> list[Route]:
        """Cached routes, in the order they arrived."""
        return list(self._routes.values())

    @property
    def addresses(self) -> list[Address]:
        return list(self._addresses.values())

    @property
    def links(self) -> dict[int, Link]:
        return dict(self._links)

    def link_names(self) -> dict[int, str]:
        return {i: link.name for i, link in self._links.items() if link.name}

    def gateways(self) -> list[Route]:
        """Routes through a gateway (default routes first)."""
        gw = [r for r in self._routes.values() if r.gateway is not None]
        return sorted(gw, key=lambda r: (not r.is_default, r.priority or 0))

    def lookup(self, destination: str) -> Route | None:
        """The main-table route the kernel would most likely pick for ``destination``.

        Longest prefix, then lowest metric. Enough to tell whether a peer is
        still routable; it does not evaluate policy rules.
        """
        ip = ipaddress.ip_address(destination)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        best: Route | None = None
        for r in self._routes.values():
            if r.family != family or r.table != 254 or ip not in r.network():
                continue
            if (
                best is None
                or r.dst_len > best.dst_len
                or (r.dst_len == best.dst_len and (r.priority or 0) < (best.priority or 0))
            ):
                best = r
        return best

    # -- feeding -------------------------------------------------------------

    def load(self, events: Iterable[NetEvent]) -> None:
        """Apply the initial dump: the cache fills, nothing is announced."""
        for ev in events:
            self._apply(ev)

    def feed(self, batch: Sequence[NetEvent]) -> list[dict[str, str]]:
        """Apply one batch of kernel events; returns the messages to publish, in order."""
        self.batches += 1
        out: list[dict[str, str]] = []
        gateway = False
        for ev in batch:
            changed, gw = self._apply(ev)
            out.extend(changed)
            gateway = gateway or gw
        if gateway:
            out.append(MSG_GW_CHANGE)
        return out

    def resync(self, dump: Iterable[NetEvent]) -> list[dict[str, str]]:
        """Replace the cache with a fresh dump (after lost kernel messages).

        Announces the difference as if it had been seen: one add per new or
        changed route, one del per vanished route, and a gw-change trigger
        when a route with a gateway was among them.
        """
        before = dict(self._routes)
        self._routes.clear()
        self._addresses.clear()
        self._links.clear()
        self.load(dump)
        out: list[dict[str, str]] = []
        gateway = False
        for key, old in before.items():
            if key not in self._routes:
                out.append(MSG_DEL)
                gateway = gateway or old.gateway is not None
        for key, new in self._routes.items():
            old_route = before.get(key)
            if old_route != new:
                out.append(MSG_ADD)
                gateway = gateway or new.gateway is not None
                gateway = gateway or (old_route is not None and old_route.gateway is not None)
        if gateway:
            out.append(MSG_GW_CHANGE)
        return out

    def _apply(self, ev: NetEvent) -> tuple[list[dict[str, str]], bool]:
        """One event: (messages, whether a route with a gateway came or went)."""
        if isinstance(ev, RouteAdded):
            r = ev.route
            if r.type not in CACHED_TYPES:
                return [], False
            old = self._routes.get(r.key)
            if old == r:
                return [], False
            self._routes[r.key] = r
            return [MSG_ADD], r.gateway is not None or (old is not None and old.gateway is not None)
        if isinstance(ev, RouteRemoved):
            gone = self._routes.pop(ev.route.key, None)
            if gone is None:
                return [], False
            return [MSG_DEL], gone.gateway is not None
        if isinstance(ev, AddressAdded):
            a = ev.address
            self._addresses[(a.family, a.ifindex, a.address, a.prefixlen)] = a
            return [], False
        if isinstance(ev, AddressRemoved):
            return self._address_removed(ev.address)
        if isinstance(ev, LinkChanged):
            self._links[ev.ifindex] = Link(ev.ifindex, ev.name, ev.up)
            if ev.up:
                return [], False
            # The kernel keeps the link's local (own address) routes while it is down.
            return self._drop(lambda r: r.ifindex == ev.ifindex and r.type != RTN_LOCAL)
        # LinkRemoved
        self._links.pop(ev.ifindex, None)
        for k in [k for k, a in self._addresses.items() if a.ifindex == ev.ifindex]:
            del self._addresses[k]
        return self._drop(lambda r: r.ifindex == ev.ifindex)

    def _address_removed(self, a: Address) -> tuple[list[dict[str, str]], bool]:
        self._addresses.pop((a.family, a.ifindex, a.address, a.prefixlen), None)
        if a.family != socket.AF_INET:
            # IPv6 announces the routes it removes; only IPv4 flushes silently.
            return [], False
        left = any(
            x.family == socket.AF_INET and x.ifindex == a.ifindex for x in self._addresses.values()
        )

        def goes(r: Route) -> bool:
            if r.family != socket.AF_INET:
                return False
            if r.prefsrc == a.address:
                return True
            return not left and r.ifindex == a.ifindex

        return self._drop(goes)

    def _drop(self, goes: Callable[[Route], bool]) -> tuple[list[dict[str, str]], bool]:
        gone = [k for k, r in self._routes.items() if goes(r)]
        if not gone:
            return [], False
        dropped = [self._routes.pop(k) for k in gone]
        return [MSG_DEL], any(r.gateway is not None for r in dropped)
