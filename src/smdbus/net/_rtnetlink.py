"""rtnetlink, sans I/O: the requests the route monitor sends and the datagrams it reads.

Rules of this module:

- It turns bytes into :mod:`smdbus.net._routetable` events and requests into
  bytes. It never touches a socket; :mod:`smdbus.net._routes` owns the
  ``AF_NETLINK``/``NETLINK_ROUTE`` sockets and feeds this module whole
  datagrams, one :func:`parse` call each.
- Only what the route table tracks is parsed: links (index, name, up,
  alias), addresses (family, address, prefix, index, scope) and routes
  (the ``rtmsg`` header and the attributes a :class:`Route` keeps). Every
  other message type in a datagram is skipped, counted in
  :attr:`Datagram.skipped`. Cloned routes (``RTM_F_CLONED``: the kernel's
  route cache) are not routes of the table and are skipped as well.
- A datagram that does not hold together (a length past its end, an
  address of the wrong size) raises :class:`MalformedMessage`, naming the
  offset: the adapter then dumps the table again rather than trust half a
  batch.
- Control messages are reported, not raised: ``NLMSG_DONE`` ends a dump
  (:attr:`Datagram.done`), ``NLMSG_ERROR`` gives its errno
  (:attr:`Datagram.error`, positive; 0 is an acknowledgement), and
  ``NLM_F_DUMP_INTR`` on any message (the table changed while the kernel
  dumped it) sets :attr:`Datagram.interrupted` so the dump is redone.

Theory of operation: every netlink message is a 16-byte ``nlmsghdr``
(length, type, flags, sequence, port), a fixed family header (``ifinfomsg``
16 bytes, ``ifaddrmsg`` 8, ``rtmsg`` 12) and attributes (``rtattr``: 2-byte
length, 2-byte type, value), each padded to 4 bytes. All of it is in the
host's byte order. The layouts are those of ``<linux/netlink.h>``,
``<linux/rtnetlink.h>``, ``<linux/if_link.h>`` and ``<linux/if_addr.h>``;
``tests/test_net_rtnetlink.py`` holds datagrams captured from this kernel.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from smdbus.net._routetable import (
    Address,
    AddressAdded,
    AddressRemoved,
    LinkChanged,
    LinkRemoved,
    NetEvent,
    Route,
    RouteAdded,
    RouteRemoved,
)

# <linux/netlink.h>
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# <linux/rtnetlink.h>
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_F_CLONED = 0x200

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
"""The multicast groups the route monitor joins: links, addresses and routes of both families."""

RTA_DST = 1
RTA_SRC = 2
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_MULTIPATH = 9
RTA_TABLE = 15

# <linux/if_addr.h>, <linux/if_link.h>, <net/if.h>
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFLA_IFNAME = 3
IFLA_IFALIAS = 20
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLMSGERR = struct.Struct("=i")  # error (negative errno), then the request's header
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_RTATTR = struct.Struct("=HH")  # len, type
_RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
_U32 = struct.Struct("=I")

_DUMP_HEADERS = {
    RTM_GETLINK: bytes(_IFINFOMSG.size),
    RTM_GETADDR: bytes(_IFADDRMSG.size),
    RTM_GETROUTE: bytes(_RTMSG.size),
}
_ADDRESS_SIZE = {int(socket.AF_INET): 4, int(socket.AF_INET6): 16}


class MalformedMessage(ValueError):
    """A datagram that does not hold together; the text names where."""


@dataclass(slots=True)
class Datagram:
    """What one datagram held: the events, in order, and the control information."""

    events: list[NetEvent] = field(default_factory=list)
    done: bool = False
    """``NLMSG_DONE``: the dump this datagram answers is complete."""
    error: int | None = None
    """``NLMSG_ERROR``'s errno (0: an acknowledgement), None without one."""
    interrupted: bool = False
    """``NLM_F_DUMP_INTR``: the table changed during the dump; it may be inconsistent."""
    skipped: int = 0
    """Messages of types not tracked (and cloned routes)."""
    seqs: set[int] = field(default_factory=set)
    """The sequence numbers of its messages (0 for the kernel's notifications)."""


def dump_request(kind: int, seq: int) -> bytes:
    """A request to dump every link (``RTM_GETLINK``), address or route, of every family."""
    body = _DUMP_HEADERS[kind]
    return (
        _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    )


def _align(n: int) -> int:
    return (n + 3) & ~3


def attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """The ``rtattr`` list in ``data[start:end]``, by type (the last of a repeated type wins)."""
    attrs: dict[int, bytes] = {}
    at = start
    while at + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, at)
        if length < _RTATTR.size or at + length > end:
            raise MalformedMessage(f"attribute at byte {at}: length {length} past {end}")
        attrs[kind & NLA_TYPE_MASK] = data[at + _RTATTR.size : at + length]
        at += _align(length)
    return attrs


def _address(family: int, value: bytes | None, where: str) -> str | None:
    if value is None:
        return None
    if len(value) != _ADDRESS_SIZE.get(family, -1):
        raise MalformedMessage(f"{where}: {len(value)}-byte address for family {family}")
    return socket.inet_ntop(family, value)


def _string(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _u32(value: bytes | None, where: str) -> int | None:
    if value is None:
        return None
    if len(value) != 4:
        raise MalformedMessage(f"{where}: {len(value)} bytes where 4 were expected")
    return int(_U32.unpack(value)[0])


def _link(kind: int, data: bytes, at: int, end: int) -> NetEvent:
    if end - at < _IFINFOMSG.size:
        raise MalformedMessage(f"link message at byte {at}: {end - at} bytes of header")
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, at)
    attrs = attributes(data, at + _IFINFOMSG.size, end)
    name = _string(attrs.get(IFLA_IFNAME))
    if kind == RTM_DELLINK:
        return LinkRemoved(index, name)
    return LinkChanged(index, name, bool(flags & IFF_UP), _string(attrs.get(IFLA_IFALIAS)))


def _addr(kind: int, data: bytes, at: int, end: int) -> NetEvent | None:
    if end - at < _IFADDRMSG.size:
        raise MalformedMessage(f"address message at byte {at}: {end - at} bytes of header")
    family, prefixlen, _flags, scope, index = _IFADDRMSG.unpack_from(data, at)
    if family not in _ADDRESS_SIZE:
        return None
    attrs = attributes(data, at + _IFADDRMSG.size, end)
    # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point
    # links and the only one given for IPv6.
    value = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    address = _address(family, value, f"address message at byte {at}")
    if address is None:
        return None
    a = Address(family, address, prefixlen, index, scope)
    return AddressAdded(a) if kind == RTM_NEWADDR else AddressRemoved(a)


def _first_hop(family: int, value: bytes, where: str) -> tuple[str | None, int | None]:
    """Multipath: the first hop's gateway and device (the route keeps one of each)."""
    gateway: str | None = None
    ifindex: int | None = None
    at = 0
    while at + _RTNEXTHOP.size <= len(value):
        length, _flags, _hops, index = _RTNEXTHOP.unpack_from(value, at)
        if length < _RTNEXTHOP.size or at + length > len(value):
            raise MalformedMessage(f"{where}: next hop of length {length}")
        hop = attributes(value, at + _RTNEXTHOP.size, at + length)
        if gateway is None:
            gateway = _address(family, hop.get(RTA_GATEWAY), where)
        if ifindex is None:
            ifindex = index
        at += _align(length)
    return gateway, ifindex


def _route(kind: int, data: bytes, at: int, end: int) -> NetEvent | None:
    if end - at < _RTMSG.size:
        raise MalformedMessage(f"route message at byte {at}: {end - at} bytes of header")
    family, dst_len, src_len, tos, table, proto, scope, rtype, flags = _RTMSG.unpack_from(data, at)
    if flags & RTM_F_CLONED or family not in _ADDRESS_SIZE:
        return None
    attrs = attributes(data, at + _RTMSG.size, end)
    where = f"route message at byte {at}"
    gateway = _address(family, attrs.get(RTA_GATEWAY), where)
    ifindex = _u32(attrs.get(RTA_OIF), where)
    multipath = attrs.get(RTA_MULTIPATH)
    if multipath is not None:
        hop_gateway, hop_ifindex = _first_hop(family, multipath, where)
        gateway = gateway if gateway is not None else hop_gateway
        ifindex = ifindex if ifindex is not None else hop_ifindex
    route = Route(
        family=family,
        dst=_address(family, attrs.get(RTA_DST), where),
        dst_len=dst_len,
        gateway=gateway,
        ifindex=ifindex,
        priority=_u32(attrs.get(RTA_PRIORITY), where),
        # rtm_table is 8 bits; RTA_TABLE holds the whole number (tables above 255).
        table=_u32(attrs.get(RTA_TABLE), where) or table,
        protocol=proto,
        scope=scope,
        type=rtype,
        src=_address(family, attrs.get(RTA_SRC), where),
        src_len=src_len,
        prefsrc=_address(family, attrs.get(RTA_PREFSRC), where),
        tos=tos,
    )
    return RouteAdded(route) if kind == RTM_NEWROUTE else RouteRemoved(route)


def parse(data: bytes) -> Datagram:
    """One datagram from a ``NETLINK_ROUTE`` socket as events and control information."""
    out = Datagram()
    at = 0
    size = len(data)
    while at + _NLMSGHDR.size <= size:
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, at)
        if length < _NLMSGHDR.size or at + length > size:
            raise MalformedMessage(f"message at byte {at}: length {length} in {size} bytes")
        body, end = at + _NLMSGHDR.size, at + length
        out.seqs.add(seq)
        if flags & NLM_F_DUMP_INTR:
            out.interrupted = True
        event: NetEvent | None = None
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            event = _route(kind, data, body, end)
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            event = _addr(kind, data, body, end)
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            event = _link(kind, data, body, end)
        elif kind == NLMSG_DONE:
            out.done = True
        elif kind == NLMSG_ERROR:
            if end - body < _NLMSGERR.size:
                raise MalformedMessage(f"error message at byte {at}: {end - body} bytes")
            out.error = -int(_NLMSGERR.unpack_from(data, body)[0])
        else:
            out.skipped += 1
        if event is not None:
            out.events.append(event)
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWADDR, RTM_DELADDR):
            out.skipped += 1
        at += _align(length)
    if any(data[at:]):
        raise MalformedMessage(f"{size - at} stray bytes at byte {at}")
    return out
