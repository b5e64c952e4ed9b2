"""The sans-IO routing cache: which kernel events become which bus messages."""

from __future__ import annotations

import socket

from smdbus.net._routetable import (
    MSG_ADD,
    MSG_DEL,
    MSG_GW_CHANGE,
    RTN_LOCAL,
    Address,
    AddressAdded,
    AddressRemoved,
    LinkChanged,
    LinkRemoved,
    NetEvent,
    Route,
    RouteAdded,
    RouteRemoved,
    RouteTable,
)

V4 = socket.AF_INET
V6 = socket.AF_INET6
ADDR = Address(V4, "10.9.0.2", 24, ifindex=3)
LOCAL = Route(V4, "10.9.0.2", 32, ifindex=3, table=255, type=RTN_LOCAL, prefsrc="10.9.0.2")
PREFIX = Route(V4, "10.9.0.0", 24, ifindex=3, protocol=2, scope=253, prefsrc="10.9.0.2")
DEFAULT = Route(V4, None, 0, gateway="10.9.0.1", ifindex=3, priority=5, protocol=3)
NET20 = Route(V4, "10.20.0.0", 16, gateway="10.9.0.1", ifindex=3, protocol=3)
BROADCAST = Route(V4, "10.9.0.255", 32, ifindex=3, table=255, type=3)


def configured() -> RouteTable:
    t = RouteTable()
    t.load([AddressAdded(ADDR), RouteAdded(LOCAL), RouteAdded(PREFIX), RouteAdded(DEFAULT)])
    return t


def test_dump_fills_silently() -> None:
    t = configured()
    assert t.routes == [LOCAL, PREFIX, DEFAULT]
    assert t.addresses == [ADDR]
    assert t.batches == 0


def test_route_add_and_del() -> None:
    t = RouteTable()
    assert t.feed([RouteAdded(PREFIX)]) == [MSG_ADD]
    assert t.feed([RouteRemoved(PREFIX)]) == [MSG_DEL]
    assert t.routes == []


def test_gateway_routes_trigger_cpd_once_per_batch() -> None:
    t = configured()
    assert t.feed([RouteAdded(NET20)]) == [MSG_ADD, MSG_GW_CHANGE]
    batch: list[NetEvent] = [RouteRemoved(NET20), RouteRemoved(DEFAULT), RouteAdded(DEFAULT)]
    assert t.feed(batch) == [MSG_DEL, MSG_DEL, MSG_ADD, MSG_GW_CHANGE]
    assert MSG_GW_CHANGE == {"trigger": "cpdcheck", "src": "gw-change"}


def test_debris_is_not_cached() -> None:
    t = RouteTable()
    assert t.feed([RouteAdded(BROADCAST)]) == []
    assert t.feed([RouteRemoved(BROADCAST)]) == []
    assert t.routes == []


def test_unknown_deletion_and_repeated_add_say_nothing() -> None:
    t = configured()
    assert t.feed([RouteRemoved(NET20)]) == []
    assert t.feed([RouteAdded(PREFIX)]) == []


def test_replace_changes_the_entry_and_tells() -> None:
    t = configured()
    moved = Route(V4, None, 0, gateway="10.9.0.254", ifindex=3, priority=5, protocol=3)
    assert t.feed([RouteAdded(moved)]) == [MSG_ADD, MSG_GW_CHANGE]
    assert t.gateways() == [moved]


def test_removing_the_last_ipv4_address_takes_its_routes() -> None:
    t = configured()
    t.feed([RouteAdded(NET20)])
    assert t.feed([AddressRemoved(ADDR)]) == [MSG_DEL, MSG_GW_CHANGE]
    assert t.routes == []
    # The kernel's own DELROUTEs that follow find nothing left to announce.
    assert t.feed([RouteRemoved(PREFIX)]) == []
    assert t.feed([RouteRemoved(LOCAL)]) == []


def test_removing_one_of_two_addresses_takes_only_routes_from_it() -> None:
    t = configured()
    other = Address(V4, "10.8.0.2", 24, ifindex=3)
    other_prefix = Route(V4, "10.8.0.0", 24, ifindex=3, prefsrc="10.8.0.2")
    t.load([AddressAdded(other), RouteAdded(other_prefix)])
    assert t.feed([AddressRemoved(other)]) == [MSG_DEL]
    assert t.routes == [LOCAL, PREFIX, DEFAULT]


def test_removing_an_address_with_no_routes_says_nothing() -> None:
    t = RouteTable()
    t.load([AddressAdded(ADDR)])
    assert t.feed([AddressRemoved(ADDR)]) == []


def test_ipv6_address_removal_leaves_routes_to_the_kernel() -> None:
    t = RouteTable()
    a6 = Address(V6, "fd00::2", 64, ifindex=3)
    r6 = Route(V6, None, 0, gateway="fe80::1", ifindex=3, priority=1024)
    t.load([AddressAdded(a6), RouteAdded(r6)])
    assert t.feed([AddressRemoved(a6)]) == []
    assert t.routes == [r6]


def test_link_down_and_removed() -> None:
    t = configured()
    assert t.feed([LinkChanged(3, "d0", up=True)]) == []
    assert t.feed([LinkChanged(3, "d0", up=False)]) == [MSG_DEL, MSG_GW_CHANGE]
    assert t.routes == [LOCAL] and t.links[3].up is False  # local routes stay, as in the kernel
    assert t.feed([LinkChanged(3, "d0", up=False)]) == []
    t.load([RouteAdded(PREFIX)])
    assert t.feed([LinkRemoved(3, "d0")]) == [MSG_DEL]
    assert t.routes == []
    assert t.addresses == [] and 3 not in t.links


def test_resync_announces_the_difference() -> None:
    t = configured()
    t.feed([RouteAdded(NET20)])
    fresh: list[NetEvent] = [AddressAdded(ADDR), RouteAdded(LOCAL), RouteAdded(PREFIX)]
    assert t.resync(fresh) == [MSG_DEL, MSG_DEL, MSG_GW_CHANGE]
    assert t.resync(fresh) == []
    assert t.resync([*fresh, RouteAdded(DEFAULT)]) == [MSG_ADD, MSG_GW_CHANGE]


def test_lookup_longest_prefix_then_metric() -> None:
    t = configured()
    t.load([RouteAdded(NET20)])
    assert t.lookup("10.20.1.1") == NET20
    assert t.lookup("10.9.0.77") == PREFIX
    assert t.lookup("8.8.8.8") == DEFAULT
    assert t.lookup("::1") is None


def test_describe_reads_like_ip_route() -> None:
    links = {3: "d0"}
    assert DEFAULT.describe(links) == "default via 10.9.0.1 dev d0 proto boot scope global metric 5"
    assert PREFIX.describe(links) == "10.9.0.0/24 dev d0 proto kernel scope link src 10.9.0.2"
    assert (
        LOCAL.describe()
        == "local 10.9.0.2 dev #3 table local proto unspec scope global src 10.9.0.2"
    )
    d = DEFAULT.as_dict()
    assert (d["family"], d["table_name"], d["protocol_name"], d["type"]) == (
        "inet",
        "main",
        "boot",
        "unicast",
    )
