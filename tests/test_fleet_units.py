"""The fleet's sans-IO parts: config, topics, envelope, decisions, outbox, the backend view.

Clocks are injected; nothing here opens a socket.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smdbus.classes import Class, user_class
from smdbus.fleet import (
    BridgeConfigError,
    BridgeCore,
    Downlink,
    FleetView,
    Outbox,
    OutboxBusy,
    Refused,
    Topics,
    Uplink,
    decode_envelope,
    encode_envelope,
    parse_bridge_config,
    read_status,
)
from smdbus.fleet._loops import DownlinkMemory
from smdbus.fleet._ratelimit import TokenBucket
from smdbus.fleet._topics import origin_of


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cfg(**over: Any) -> Any:
    return parse_bridge_config({"device_id": "dev1", "prefix": "fleet", **over}, base=Path("/x"))


# -- config ---------------------------------------------------------------------


def test_config_defaults() -> None:
    c = cfg()
    assert c.up == Class.SYSTEM_STATE | Class.NETWORK | Class.INTERACTION
    assert c.down == {}  # nothing comes down unless allowed
    assert c.qos_for(Class.NETWORK) == 1
    assert (c.broker.host, c.broker.port, c.broker.tls, c.broker.protocol) == (
        "127.0.0.1",
        1883,
        False,
        "5",
    )
    assert c.outbox == Path("/x/bridge-outbox.sqlite")
    assert c.mqtt_client_id == "smd-bridge-dev1"
    assert (int(Class.NETWORK), "cpd") in c.retain


@pytest.mark.parametrize(
    ("table", "field", "words"),
    [
        ({"device_id": "a/b"}, "bridge.device_id", "must be"),
        ({"prefix": "a/+"}, "bridge.prefix", "topic levels"),
        ({"broker": "http://x"}, "bridge.broker", "mqtt://"),
        ({"broker": "mqtt://u:p@x"}, "bridge.broker", "credentials"),
        ({"protocol": "4"}, "bridge.protocol", "3.1.1"),
        ({"tls": {"ca": "ca.pem"}}, "bridge.tls.ca", "mqtts://"),
        ({"broker": "mqtts://x", "tls": {"cert": "c.pem"}}, "bridge.tls.cert", "both"),
        ({"auth": {"password_file": "p"}}, "bridge.auth.username", "no username"),
        ({"up": ["NETWORK", "NOPE"]}, "bridge.up[1]", "unknown class"),
        ({"retain": ["NETWORK:a b"]}, "bridge.retain[0]", "type"),
        ({"qos": {"NETWORK": 3}}, "bridge.qos.NETWORK", "0..2"),
        ({"down": {"USER0": {"rate": 0}}}, "bridge.down.USER0.rate", "above 0"),
        ({"down": {"USER0": {"rate": 1e9}}}, "bridge.down.USER0.rate", "at most"),
        ({"down": {"USER0": {"burts": 2}}}, "bridge.down.USER0.burts", "did you mean 'burst'"),
        ({"outbox_max_messages": 0}, "bridge.outbox_max_messages", "1.."),
        ({"inflight": 100_000}, "bridge.inflight", "1..1000"),
        ({"retry": {"backoff_ms": []}}, "bridge.retry.backoff_ms", "list"),
        ({"brokr": "mqtt://x"}, "bridge.brokr", "did you mean 'broker'"),
    ],
)
def test_config_errors_name_the_field(table: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(BridgeConfigError) as err:
        parse_bridge_config(table)
    assert err.value.field == field
    assert words in str(err.value)


def test_password_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    c = parse_bridge_config({"auth": {"username": "u", "password_file": "pw"}}, base=tmp_path)
    assert c.broker.password() == "s3cret"
    assert "s3cret" not in repr(c)
    c = parse_bridge_config({"auth": {"username": "u", "password_env": "SMD_TEST_PW"}})
    with pytest.raises(BridgeConfigError, match="SMD_TEST_PW is not set"):
        c.broker.password()
    monkeypatch.setenv("SMD_TEST_PW", "env-pw")
    assert c.broker.password() == "env-pw"


# -- topics and the envelope --------------------------------------------------------


def test_topics_up_and_down() -> None:
    t = Topics("fleet", "dev1")
    assert t.up(Class.SYSTEM_STATE) == "fleet/dev1/SYSTEM_STATE"
    assert t.up(Class.NETWORK, "cpd") == "fleet/dev1/NETWORK/cpd"
    assert t.up(user_class(3)) == "fleet/dev1/USER3"
    assert t.down(Class.NETWORK) == "fleet/dev1/cmd/NETWORK"
    assert t.down_class("fleet/dev1/cmd/NETWORK") == Class.NETWORK
    assert t.down_class("fleet/dev1/cmd/user2") == user_class(2)
    assert t.down_class("fleet/dev2/cmd/NETWORK") is None
    assert t.down_class("fleet/dev1/cmd/0x6") is None  # two classes
    assert t.down_class("fleet/dev1/cmd/BOGUS") is None
    assert (t.status, t.commands) == ("fleet/dev1/status", "fleet/dev1/cmd/+")


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b'{"state":"OPERATIONAL"}', "data"), (b"link up", "text"), (b"\xff\x00\x01", "b64")],
)
def test_envelope_round_trip(body: bytes, kind: str) -> None:
    payload = encode_envelope(42, "dev1", 1700000000.5, body)
    assert f'"{kind}":'.encode() in payload
    env = decode_envelope(payload)
    assert (env.seq, env.origin, env.time, env.body) == (42, "dev1", 1700000000.5, body)
    assert origin_of(payload) == "dev1"
    assert origin_of(body) is None


# -- the core ----------------------------------------------------------------------


def test_uplink_mapping_and_retained_state() -> None:
    core = BridgeCore(cfg(), Clock())
    assert core.uplink(Class.SYSTEM_STATE, b"{}") == Uplink(
        Class.SYSTEM_STATE, "fleet/dev1/SYSTEM_STATE", 1, True
    )
    assert core.uplink(Class.NETWORK, b'{"type":"cpd","result":"OK"}') == Uplink(
        Class.NETWORK, "fleet/dev1/NETWORK/cpd", 1, True
    )
    assert core.uplink(Class.NETWORK, b'{"type":"ipacq"}') == Uplink(
        Class.NETWORK, "fleet/dev1/NETWORK", 1, False
    )
    assert core.uplink(Class.METRICS, b"x") is None
    two = core.uplink(Class.INTERACTION | Class.NETWORK, b"x")  # lowest bit in the up mask
    assert two is not None and two.topic == "fleet/dev1/INTERACTION"
    qos0 = BridgeCore(cfg(qos={"NETWORK": 0}), Clock()).uplink(Class.NETWORK, b"x")
    assert qos0 is not None and qos0.qos == 0


def test_downlink_allow_list_rate_limit_size_and_origin() -> None:
    clock = Clock()
    core = BridgeCore(cfg(down={"NETWORK": {"rate": 2.0, "burst": 2}}), clock)
    assert core.subscriptions() == ["fleet/dev1/cmd/+"]
    assert core.downlink("fleet/dev1/cmd/NETWORK", b"a") == Downlink(Class.NETWORK, b"a")
    assert core.downlink("fleet/dev1/cmd/NETWORK", b"b") == Downlink(Class.NETWORK, b"b")
    refused = core.downlink("fleet/dev1/cmd/NETWORK", b"c")
    assert isinstance(refused, Refused) and refused.reason == "rate"
    clock.t += 0.5  # one token back at 2/s
    assert isinstance(core.downlink("fleet/dev1/cmd/NETWORK", b"d"), Downlink)
    assert isinstance(core.downlink("fleet/dev1/cmd/NETWORK", b"e"), Refused)
    assert core.downlink("fleet/dev1/cmd/USER0", b"x") == Refused(
        "class", "'fleet/dev1/cmd/USER0': class not on the downlink allow-list"
    )
    assert isinstance(core.downlink("fleet/dev2/cmd/NETWORK", b"x"), Refused)
    clock.t += 10
    big = core.downlink("fleet/dev1/cmd/NETWORK", b"x" * 384)
    assert isinstance(big, Refused) and big.reason == "size"
    own = encode_envelope(1, "dev1", 0.0, b"{}")
    assert core.downlink("fleet/dev1/cmd/NETWORK", own) == Refused(
        "own", "'fleet/dev1/cmd/NETWORK': this device's own message came back"
    )
    assert isinstance(core.downlink("fleet/dev1/cmd/NETWORK", b"p", origin="dev1"), Refused)
    assert dict(core.refused) == {"rate": 2, "class": 1, "topic": 1, "size": 1, "own": 2}
    assert core.downlinked == 3


def test_what_came_down_does_not_go_back_up() -> None:
    clock = Clock()
    core = BridgeCore(cfg(down={"NETWORK": {"rate": 100.0, "burst": 10}}), clock)
    for _ in range(2):
        assert isinstance(core.downlink("fleet/dev1/cmd/NETWORK", b"cmd"), Downlink)
    assert core.uplink(Class.NETWORK, b"cmd") is None  # the proxy's echo of our send
    assert core.uplink(Class.NETWORK, b"cmd") is None  # and of the second one
    assert core.uplink(Class.NETWORK, b"cmd") is not None  # a third is a peer's own
    assert core.memory.suppressed == 2
    core.downlink("fleet/dev1/cmd/NETWORK", b"late")
    clock.t += core.cfg.echo_ttl  # an echo that never came is forgotten
    assert core.uplink(Class.NETWORK, b"late") is not None


def test_downlink_memory_is_bounded() -> None:
    clock = Clock()
    mem = DownlinkMemory(10.0, 3, clock)
    for i in range(5):
        mem.remember(1, b"%d" % i)
    assert len(mem) == 3
    assert not mem.is_ours(1, b"0") and mem.is_ours(1, b"4")


def test_token_bucket_refills_to_burst_only() -> None:
    clock = Clock()
    bucket = TokenBucket(1.0, 3, clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.t += 100
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


# -- the outbox --------------------------------------------------------------------


def outbox(path: Path, wall: Clock, **over: Any) -> Outbox:
    limits = {"max_messages": 100, "max_bytes": 1 << 20, "max_age": 3600.0, **over}
    return Outbox(path / "o.sqlite", clock=wall, **limits)


def crash(box: Outbox) -> None:
    """What kill -9 leaves: nothing more is committed, and the kernel drops the lock."""
    box._db.close()
    os.close(box._lock_fd)


def test_outbox_sequence_survives_reopening_and_acks(tmp_path: Path) -> None:
    wall = Clock()
    box = outbox(tmp_path, wall)
    assert [box.add("t/a", 1, False, b"%d" % i) for i in range(3)] == [1, 2, 3]
    box.commit()
    box.ack(1)
    box.commit()
    box.add("t/a", 1, False, b"never committed")
    crash(box)
    # a second instance sees what the first committed
    again = outbox(tmp_path, wall)
    assert [(r.seq, r.body) for r in again.pending(0, 10)] == [(2, b"1"), (3, b"2")]
    assert [r.seq for r in again.pending(2, 10)] == [3]
    again.ack(2)
    again.ack(3)
    again.ack(3)  # an ack of something already gone is harmless
    again.close()
    third = outbox(tmp_path, wall)
    assert third.count == 0
    assert third.add("t/a", 1, False, b"x") == 4  # numbers are never reused


def test_outbox_has_one_writer(tmp_path: Path) -> None:
    box = outbox(tmp_path, Clock())
    with pytest.raises(OutboxBusy, match="another bridge has this outbox open"):
        outbox(tmp_path, Clock())
    crash(box)  # the kernel drops a dead process's lock
    outbox(tmp_path, Clock()).close()


def test_outbox_bounds_count_bytes_age_and_the_drop_report(tmp_path: Path) -> None:
    wall = Clock()
    box = outbox(tmp_path, wall, max_messages=3, max_bytes=1024, max_age=60.0)
    for i in range(5):
        box.add("t", 1, False, b"%d" % i)
    assert [r.seq for r in box.pending(0, 10)] == [3, 4, 5]  # oldest went first
    box.add("t", 1, False, b"x" * 1022)  # the count bound takes 3, the bytes bound 4 and 5
    assert [r.seq for r in box.pending(0, 10)] == [6]
    box.add("t", 1, False, b"x" * 2000)  # alone over the bound: refused, counted
    wall.t += 61
    assert box.expire() == 1
    box.add("t", 1, False, b"new")
    assert [r.seq for r in box.pending(0, 10)] == [8]
    box.commit()
    crash(box)
    box = outbox(tmp_path, wall)
    report = box.drop_report()  # kept on disk
    assert report is not None
    assert (report.by_count, report.by_bytes, report.by_age) == (3, 3, 1)
    assert (report.first_seq, report.last_seq, report.total) == (1, 7, 7)
    box.drops_reported(report)
    assert box.drop_report() is None
    assert box.dropped_total == 7


def test_outbox_status_for_smd_bridge_status(tmp_path: Path) -> None:
    wall = Clock()
    box = outbox(tmp_path, wall)
    box.add("t", 1, False, b"abc")
    box.save_status({"state": "waiting", "last_error": "refused"})
    status = read_status(tmp_path / "o.sqlite")
    assert status["state"] == "waiting"
    assert status["outbox"]["messages"] == 1 and status["outbox"]["last_seq"] == 1
    with pytest.raises(FileNotFoundError):
        read_status(tmp_path / "none.sqlite")


# -- the backend's view -------------------------------------------------------------


def test_fleet_view_presence_state_gaps_and_duplicates() -> None:
    view = FleetView("fleet")
    view.apply("fleet/d1/status", b"online")
    view.apply("fleet/d1/SYSTEM_STATE", encode_envelope(1, "d1", 0, b'{"state":"OPERATIONAL"}'))
    view.apply("fleet/d1/NETWORK", encode_envelope(2, "d1", 0, b"a"))
    view.apply("fleet/d1/NETWORK", encode_envelope(2, "d1", 0, b"a"))  # QoS 1 duplicate
    view.apply("fleet/d1/NETWORK", encode_envelope(5, "d1", 0, b"b"))  # 3 and 4 missing
    assert view.apply("other/d1/status", b"x") is None
    d1 = view.devices["d1"]
    assert (d1.status, d1.state) == ("online", '{"state":"OPERATIONAL"}')
    assert (d1.last_seq, d1.duplicates, d1.gaps) == (5, 1, 2)


def test_smd_fleet_refuses_a_device_or_prefix_that_is_not_one_topic_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from smdbus.cli import main

    root = logging.getLogger()  # main() sets up logging: leave the root logger as it was
    handlers, level = list(root.handlers), root.level
    try:
        _refusals(main, capsys)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _refusals(main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]) -> None:

    assert main(["fleet", "send", "a/+", "NETWORK", "x"]) == 2
    assert "fleet.device_id" in capsys.readouterr().err
    assert main(["fleet", "--prefix", "#"]) == 2
    assert "fleet.prefix" in capsys.readouterr().err
    assert main(["fleet", "send", "dev1", "NETWORK|USER0", "x"]) == 2
    assert "one class" in capsys.readouterr().err
