"""The rtnetlink parser against datagrams this kernel sent (tests/data/rtnetlink.hex).

The captures were made in a namespace with a veth pair ``d0`` (ifindex 3)
and ``d0p`` (ifindex 2), by these commands in turn:

- ``ip addr add 10.9.0.2/24 dev d0``: the address, then its local, prefix
  and broadcast routes (one datagram each);
- ``ip route add default via 10.9.0.1 metric 5``;
- ``ip route add 10.50.0.0/16 table 1000 nexthop via 10.9.0.1 nexthop via 10.9.0.3``;
- ``ip link set d0 alias m0``; ``ip addr add fd00::2/64 dev d0 nodad``;
- ``ip route del default via 10.9.0.1 metric 5``; ``ip link del d0``;
- then, in a namespace with a veth pair ``d1p`` (4) / ``d1`` (5) and
  ``10.8.0.2/24`` on ``d1``, the dumps of links, addresses and routes.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from smdbus.net import _rtnetlink as rtnetlink
from smdbus.net._routetable import (
    Address,
    AddressAdded,
    AddressRemoved,
    LinkChanged,
    LinkRemoved,
    Route,
    RouteAdded,
    RouteRemoved,
)
from smdbus.net._rtnetlink import MalformedMessage, dump_request, parse

INET, INET6 = socket.AF_INET, socket.AF_INET6


def _load() -> dict[str, bytes]:
    path = Path(__file__).parent / "data" / "rtnetlink.hex"
    out: dict[str, bytes] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, data = line.split()
            out[name] = bytes.fromhex(data)
    return out


GOLDEN = _load()


def test_address_and_the_routes_it_brings() -> None:
    assert parse(GOLDEN["addr-new-inet"]).events == [
        AddressAdded(Address(INET, "10.9.0.2", 24, 3, 0))
    ]
    kernel = {"ifindex": 3, "protocol": 2, "prefsrc": "10.9.0.2"}
    assert parse(GOLDEN["route-new-local"]).events == [
        RouteAdded(Route(INET, "10.9.0.2", 32, table=255, scope=254, type=2, **kernel))  # type: ignore[arg-type]
    ]
    assert parse(GOLDEN["route-new-prefix"]).events == [
        RouteAdded(Route(INET, "10.9.0.0", 24, table=254, scope=253, type=1, **kernel))  # type: ignore[arg-type]
    ]
    # Broadcast routes are parsed; the table decides not to cache them.
    assert parse(GOLDEN["route-new-broadcast"]).events == [
        RouteAdded(Route(INET, "10.9.0.255", 32, table=255, scope=253, type=3, **kernel))  # type: ignore[arg-type]
    ]


def test_routes_with_a_gateway() -> None:
    default = Route(INET, None, 0, gateway="10.9.0.1", ifindex=3, priority=5, table=254, protocol=3)
    assert parse(GOLDEN["route-new-default"]).events == [RouteAdded(default)]
    assert parse(GOLDEN["route-del-default"]).events == [RouteRemoved(default)]
    # Multipath: the first hop's gateway and device; a table above 255 from RTA_TABLE.
    assert parse(GOLDEN["route-new-multipath"]).events == [
        RouteAdded(
            Route(INET, "10.50.0.0", 16, gateway="10.9.0.1", ifindex=3, table=1000, protocol=3)
        )
    ]


def test_ipv6() -> None:
    assert parse(GOLDEN["addr-new-inet6"]).events == [
        AddressAdded(Address(INET6, "fd00::2", 64, 3, 0))
    ]
    assert parse(GOLDEN["route-new-inet6"]).events == [
        RouteAdded(Route(INET6, "fd00::", 64, ifindex=3, priority=256, table=254, protocol=2))
    ]


def test_links() -> None:
    assert parse(GOLDEN["link-new-alias"]).events == [LinkChanged(3, "d0", True, "m0")]
    assert parse(GOLDEN["link-new-down"]).events == [LinkChanged(3, "d0", False, "m0")]
    assert parse(GOLDEN["link-del"]).events == [LinkRemoved(3, "d0")]
    assert parse(GOLDEN["addr-del-inet"]).events == [
        AddressRemoved(Address(INET, "10.9.0.2", 24, 3, 0))
    ]


def test_notifications_carry_no_control() -> None:
    d = parse(GOLDEN["route-new-prefix"])
    assert (d.done, d.error, d.interrupted, d.skipped, d.seqs) == (False, None, False, 0, {0})


def test_dumps() -> None:
    links = parse(GOLDEN["dump-link"])
    assert links.events == [LinkChanged(1, "lo", False), LinkChanged(4, "d1p", True)]
    assert links.seqs == {7} and not links.done
    addresses = parse(GOLDEN["dump-addr"]).events
    assert addresses[0] == AddressAdded(Address(INET, "10.8.0.2", 24, 5, 0))
    assert [type(e) for e in addresses] == [AddressAdded] * 3
    routes = parse(GOLDEN["dump-route"]).events
    assert routes[:2] == [
        RouteAdded(
            Route(INET, "10.8.0.0", 24, ifindex=5, protocol=2, scope=253, prefsrc="10.8.0.2")
        ),
        RouteAdded(
            Route(
                INET,
                "10.8.0.2",
                32,
                ifindex=5,
                table=255,
                protocol=2,
                scope=254,
                type=2,
                prefsrc="10.8.0.2",
            )
        ),
    ]
    done = parse(GOLDEN["dump-done"])
    assert (done.done, done.events, done.seqs, done.error) == (True, [], {7}, None)


def test_dump_requests_are_the_ones_the_kernel_answered() -> None:
    assert dump_request(rtnetlink.RTM_GETLINK, 7).hex() == (
        "2000000012000103070000000000000000000000000000000000000000000000"
    )
    assert dump_request(rtnetlink.RTM_GETADDR, 7).hex() == (
        "180000001600010307000000000000000000000000000000"
    )
    assert dump_request(rtnetlink.RTM_GETROUTE, 7).hex() == (
        "1c0000001a0001030700000000000000000000000000000000000000"
    )


def _header(kind: int, body: bytes, flags: int = 0, seq: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def test_errors_interrupted_dumps_and_untracked_messages() -> None:
    request = dump_request(rtnetlink.RTM_GETROUTE, 9)[:16]
    err = parse(_header(rtnetlink.NLMSG_ERROR, struct.pack("=i", -1) + request, seq=9))
    assert (err.error, err.seqs) == (1, {9})
    assert parse(_header(rtnetlink.NLMSG_ERROR, struct.pack("=i", 0) + request)).error == 0
    prefix = GOLDEN["route-new-prefix"]
    flags = struct.unpack_from("=H", prefix, 6)[0] | rtnetlink.NLM_F_DUMP_INTR
    interrupted = prefix[:6] + struct.pack("=H", flags) + prefix[8:]
    assert parse(interrupted).interrupted
    noop = _header(rtnetlink.NLMSG_NOOP, b"")
    assert parse(noop + prefix).skipped == 1
    assert len(parse(noop + prefix).events) == 1
    cloned = bytearray(prefix)
    struct.pack_into("=I", cloned, 16 + 8, rtnetlink.RTM_F_CLONED)
    d = parse(bytes(cloned))
    assert (d.events, d.skipped) == ([], 1)


@pytest.mark.parametrize(
    ("name", "mangle", "message"),
    [
        ("route-new-prefix", lambda b: b[:-3], "message at byte 0: length 60 in 57 bytes"),
        (
            "route-new-prefix",
            lambda b: struct.pack("=I", 16) + b[4:16],
            "route message at byte 16: 0 bytes of header",
        ),
        # The RTA_DST attribute says 5 bytes: a 1-byte address.
        ("route-new-prefix", lambda b: b[:36] + b"\x05" + b[37:], "1-byte address"),
        ("route-new-prefix", lambda b: b[:36] + b"\xff" + b[37:], "attribute at byte 36"),
        ("addr-new-inet", lambda b: b + b"\x01", "1 stray bytes at byte 76"),
    ],
)
def test_malformed_datagrams_name_where(name: str, mangle: object, message: str) -> None:
    data = mangle(GOLDEN[name])  # type: ignore[operator]
    with pytest.raises(MalformedMessage, match=message):
        parse(data)
