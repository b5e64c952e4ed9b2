"""The fleet bridge against a real mosquitto (started here on a free port) and a real proxy.

The proxy runs in the test's loop; the bridge runs in the loop too
(:class:`FleetBridge`) or as ``smd bridge`` in a child process where it is
killed with SIGKILL. The backend side is :class:`FleetClient` or a plain
paho subscriber with a persistent session (so a broker restart loses
nothing the broker acknowledged). Every wait is for a condition (a
message, a counter), bounded by a generous timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_broker import Certs, Mosquitto, have_mosquitto, make_certs
from smdbus.classes import Class, user_class
from smdbus.client import connect
from smdbus.commands._peers import query_peers
from smdbus.fleet import (
    FleetBridge,
    FleetClient,
    LinkError,
    decode_envelope,
    parse_bridge_config,
    parse_broker_config,
    read_status,
)
from smdbus.proxy import Proxy, ProxySettings
from smdbus.system import StateManager, StateResponder
from smdbus.wire import parse_address

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")

paho = pytest.importorskip("paho.mqtt.client")
_names = itertools.count()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "broker")
    m.start()
    yield m
    m.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[str]:
    address = f"@smdbus-fleet-test-{os.getpid()}-{next(_names)}"
    async with Proxy(ProxySettings(address=parse_address(address))):
        yield address


def bridge_table(broker: Mosquitto, proxy: str, tmp: Path, **over: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "broker": broker.url,
        "device_id": "dev1",
        "prefix": "t",
        "socket": proxy,
        "outbox": str(tmp / "outbox.sqlite"),
        "retry": {"backoff_ms": [20, 50, 100], "jitter_pc": 20},
    }
    table.update(over)
    return table


async def until(cond: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait for ``cond()`` to hold (checked on each loop turn, bounded)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)
    assert cond(), what


class Subscriber:
    """A paho backend with a persistent session, collecting what comes in."""

    def __init__(self, broker: Mosquitto, topic: str, client_id: str = "test-sub") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.02, 0.2)
        c.on_message = self._on_message
        c.on_connect = lambda cl, *_: cl.subscribe(topic, 1)
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.max_inflight_messages_set(1000)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        self.client = c
        assert self.subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def seqs(self, topic: str) -> list[int]:
        with self.lock:
            return [decode_envelope(p).seq for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_up_mapping_envelope_and_retained_state(
    broker: Mosquitto, proxy: str, tmp_path: Path
) -> None:
    cfg = parse_bridge_config(bridge_table(broker, proxy, tmp_path))
    bridge = FleetBridge(cfg)
    await bridge.start()
    await bridge.wait_up(10)
    peer = await connect(proxy, 0)
    sub = Subscriber(broker, "t/#")
    try:
        peer.send(Class.SYSTEM_STATE, b'{"state":"OPERATIONAL"}')
        peer.send(Class.NETWORK, b'{"type":"cpd","result":"OK"}')
        peer.send(Class.NETWORK, b"link up")
        peer.send(Class.METRICS, b"not up by default")
        peer.send(Class.INTERACTION, b"\xff\x00")
        await until(lambda: len(sub.seqs("t/dev1/INTERACTION")) == 1)
        got = {t: (p, r) for t, p, r in sub.messages}
        state = decode_envelope(got["t/dev1/SYSTEM_STATE"][0])
        assert (state.seq, state.origin, state.body) == (1, "dev1", b'{"state":"OPERATIONAL"}')
        assert decode_envelope(got["t/dev1/NETWORK/cpd"][0]).seq == 2
        assert decode_envelope(got["t/dev1/NETWORK"][0]).body == b"link up"
        assert decode_envelope(got["t/dev1/INTERACTION"][0]).body == b"\xff\x00"
        assert "t/dev1/METRICS" not in got
        assert got["t/dev1/status"][0] == b"online"
    finally:
        sub.close()
        await peer.close()
        await bridge.stop()
    # a backend arriving later learns state and presence from retained messages
    backend = parse_broker_config({"broker": broker.url})
    async with FleetClient(backend) as fc:
        fc.subscribe("t/#")
        retained = dict(await fc.sync(5))
    assert decode_envelope(retained["t/dev1/SYSTEM_STATE"]).body == b'{"state":"OPERATIONAL"}'
    assert decode_envelope(retained["t/dev1/NETWORK/cpd"]).body == b'{"type":"cpd","result":"OK"}'
    assert "t/dev1/NETWORK" not in retained  # not a state: not retained
    assert retained["t/dev1/status"] == b"offline"  # a clean stop says so too


async def _bridge_labels(address: str) -> list[str]:
    peers, _ = await query_peers(address, closed=False)
    return [p["label"] for p in peers if (p.get("label") or "").startswith("bridge ")]


async def test_link_state_shows_in_smd_peers(broker: Mosquitto, proxy: str, tmp_path: Path) -> None:
    """The bridge labels its proxy stream with the link state (``describe``), on each change."""
    bridge = FleetBridge(parse_bridge_config(bridge_table(broker, proxy, tmp_path)))
    await bridge.start()
    labels: list[str] = []

    async def shown(state: str) -> bool:
        labels[:] = await _bridge_labels(proxy)
        return labels == [f"bridge {broker.url} {state}"]

    try:
        await bridge.wait_up(10)
        async with asyncio.timeout(10):
            while not await shown("up"):
                await asyncio.sleep(0.01)
        broker.stop()
        async with asyncio.timeout(10):
            while not (await shown("waiting") or await shown("connecting")):
                await asyncio.sleep(0.01)
        broker.start()
        async with asyncio.timeout(10):
            while not await shown("up"):
                await asyncio.sleep(0.01)
        assert bridge.connects == 2
    finally:
        await bridge.stop()


async def test_on_each_link_the_current_state_goes_up_retained(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The bridge asks the bus for the state when the link comes up; the answer goes up retained.

    The state was reached before the bridge ran (so it never saw the change);
    later the retained state is cleared at the broker and the broker
    restarts: each link brings the current state back.
    """
    address = f"@smdbus-fleet-state-{os.getpid()}-{next(_names)}"
    async with Proxy(ProxySettings(address=parse_address(address))) as p:
        manager = StateManager()
        responder = StateResponder(manager, p.bus)
        bridge = FleetBridge(parse_bridge_config(bridge_table(broker, address, tmp_path)))
        backend = parse_broker_config({"broker": broker.url})
        want = manager.state.published_name.encode()

        async def retained_state() -> bytes | None:
            async with FleetClient(backend) as fc:
                fc.subscribe("t/dev1/SYSTEM_STATE")
                got = dict(await fc.sync(5))
            body = got.get("t/dev1/SYSTEM_STATE")
            return decode_envelope(body).body if body else None

        await bridge.start()
        try:
            await bridge.wait_up(10)
            await until(lambda: bridge.published >= 1)
            state = await retained_state()
            assert state is not None and json.loads(state)["current"] == want.decode()
            async with FleetClient(backend) as fc:  # the retained state goes (an operator, a
                await fc.publish("t/dev1/SYSTEM_STATE", b"", retain=True)  # broker's loss)
            assert await retained_state() is None
            broker.restart()
            await until(lambda: bridge.connects == 2 and bridge.published >= 2)
            state = await retained_state()
            assert state is not None and json.loads(state)["current"] == want.decode()
            assert bridge.core.queries == 2  # its own queries came back and did not go up
            assert bridge.status()["state_queries"] == 2 and responder.answered == 2
        finally:
            await bridge.stop()
            responder.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_down_allow_list_rate_limit_and_no_loop(
    broker: Mosquitto, proxy: str, tmp_path: Path, protocol: str
) -> None:
    down = {"NETWORK": {"rate": 0.001, "burst": 3}, "USER0": {"rate": 100.0, "burst": 100}}
    table = bridge_table(broker, proxy, tmp_path, down=down, protocol=protocol)
    cfg = parse_bridge_config(table)
    bridge = FleetBridge(cfg)
    await bridge.start()
    await bridge.wait_up(10)
    got: list[tuple[int, bytes]] = []
    peer = await connect(
        proxy,
        Class.NETWORK | user_class(0) | user_class(1),
        on_message=lambda c, _t, b: got.append((c, b)),
    )
    sub = Subscriber(broker, "t/dev1/+")
    backend = parse_broker_config({"broker": broker.url})
    try:
        async with FleetClient(backend) as fc:
            await fc.publish("t/dev1/cmd/USER1", b"not allowed")
            for i in range(10):
                await fc.publish("t/dev1/cmd/NETWORK", b'{"n":%d}' % i)
            await fc.publish("t/dev1/cmd/USER0", b"allowed")
            own = b'{"seq":5,"origin":"dev1","time":1.0,"data":{}}'
            await fc.publish("t/dev1/cmd/USER0", own)
            await until(lambda: (user_class(0), b"allowed") in got)
            await until(lambda: bridge.core.refused["own"] == 1)
        assert [b for c, b in got if c == Class.NETWORK] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
        assert all(c != user_class(1) for c, _ in got)
        assert dict(bridge.core.refused) == {"class": 1, "rate": 7, "own": 1}
        # NETWORK goes up, but the three commands that came down did not go back up:
        peer.send(Class.NETWORK, b"sentinel")
        await until(lambda: len(sub.seqs("t/dev1/NETWORK")) == 1)
        assert [decode_envelope(p).body for t, p, _ in sub.messages if t == "t/dev1/NETWORK"] == [
            b"sentinel"
        ]
        assert bridge.core.memory.suppressed == 3
    finally:
        sub.close()
        await peer.close()
        await bridge.stop()


async def test_broker_restart_in_the_middle_of_10000(
    broker: Mosquitto, proxy: str, tmp_path: Path
) -> None:
    cfg = parse_bridge_config(bridge_table(broker, proxy, tmp_path, up=["USER0"]))
    bridge = FleetBridge(cfg)
    await bridge.start()
    await bridge.wait_up(10)
    sub = Subscriber(broker, "t/dev1/USER0")
    pub = await connect(proxy, 0)
    n = 10_000
    try:
        for i in range(n):
            pub.send(user_class(0), b"%d" % i)
            if i % 100 == 99:
                await pub.drain()
            if i == 3000:  # the restart comes with 2000 delivered and more in flight
                await until(lambda: len(sub.messages) >= 2000, 30)
                await asyncio.to_thread(broker.restart)
        await pub.drain()
        await until(lambda: len(sub.messages) >= n, 60)
        await until(lambda: len(set(sub.seqs("t/dev1/USER0"))) >= n, 60)
        seqs = sub.seqs("t/dev1/USER0")
        assert set(seqs) == set(range(1, n + 1))  # none lost
        assert bridge.connects >= 2
        # duplicates only of what was in flight when the link dropped, each visible by seq
        assert len(seqs) - n <= cfg.inflight
        bodies = {decode_envelope(p).seq: decode_envelope(p).body for _, p, _ in sub.messages}
        assert all(bodies[i + 1] == b"%d" % i for i in range(n))
    finally:
        sub.close()
        await pub.close()
        await bridge.stop()


def _bridge_process(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "smdbus", "bridge", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _write_config(path: Path, table: dict[str, Any]) -> None:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(v)

    path.write_text("[bridge]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items()))


async def test_will_on_kill_9(broker: Mosquitto, proxy: str, tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    _write_config(config, bridge_table(broker, proxy, tmp_path))
    sub = Subscriber(broker, "t/dev1/status")
    proc = _bridge_process(config)
    try:
        await until(lambda: any(p == b"online" for _, p, _ in sub.messages), 20)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        await until(lambda: sub.messages[-1][1] == b"offline", 20)
    finally:
        proc.kill()
        sub.close()


async def test_kill_9_and_restart_with_the_outbox_on_disk(
    broker: Mosquitto, proxy: str, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.toml"
    _write_config(config, bridge_table(broker, proxy, tmp_path, up=["USER0"]))
    outbox = tmp_path / "outbox.sqlite"
    sub = Subscriber(broker, "t/dev1/USER0")
    broker.stop()  # the link is down: everything waits in the outbox
    proc = _bridge_process(config)
    pub = await connect(proxy, 0)
    n = 500
    try:
        await until(lambda: outbox.exists() and read_status(outbox).get("bus") == "ready", 20)
        for i in range(n):
            pub.send(user_class(0), b"%d" % i)
        await pub.drain()
        await until(lambda: read_status(outbox)["outbox"]["messages"] == n, 20)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        await asyncio.to_thread(broker.start)
        proc = _bridge_process(config)
        await until(lambda: len(set(sub.seqs("t/dev1/USER0"))) == n, 30)
        seqs = sub.seqs("t/dev1/USER0")
        assert sorted(set(seqs)) == list(range(1, n + 1))
        await until(lambda: read_status(outbox)["outbox"]["messages"] == 0, 20)
    finally:
        proc.kill()
        sub.close()
        await pub.close()


async def test_outbox_bound_drops_are_counted_and_reported(
    broker: Mosquitto, proxy: str, tmp_path: Path
) -> None:
    table = bridge_table(broker, proxy, tmp_path, up=["USER0"], outbox_max_messages=100)
    cfg = parse_bridge_config(table)
    sub = Subscriber(broker, "t/dev1/#")  # its session outlives the broker's restart
    broker.stop()
    bridge = FleetBridge(cfg)
    await bridge.start()
    pub = await connect(proxy, 0)
    try:
        for i in range(150):
            pub.send(user_class(0), b"%d" % i)
        await pub.drain()
        await until(lambda: bridge.outbox.last_seq == 150)
        assert bridge.outbox.count == 100
        await asyncio.to_thread(broker.start)
        try:
            await until(lambda: len(sub.seqs("t/dev1/USER0")) == 100)
            assert sub.seqs("t/dev1/USER0") == list(range(51, 151))
            await until(lambda: any(t == "t/dev1/dropped" for t, _, _ in sub.messages))
            report = json.loads(next(p for t, p, _ in sub.messages if t == "t/dev1/dropped"))
            assert report["dropped"] == 50
            assert report["reasons"]["count"] == 50
            assert (report["first_seq"], report["last_seq"]) == (1, 50)
            await until(lambda: bridge.outbox.drop_report() is None)
        finally:
            sub.close()
    finally:
        await pub.close()
        await bridge.stop()


# -- TLS ----------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Certs) -> Iterator[tuple[Mosquitto, Certs]]:
    m = Mosquitto(tmp_path / "tls-broker", certs)
    m.start()
    yield m, certs
    m.stop()


@needs_openssl
async def test_tls_with_client_certificate(
    tls_broker: tuple[Mosquitto, Certs], proxy: str, tmp_path: Path
) -> None:
    broker, certs = tls_broker
    tls = {"ca": str(certs.ca), "cert": str(certs.client_cert), "key": str(certs.client_key)}
    cfg = parse_bridge_config(bridge_table(broker, proxy, tmp_path, tls=tls))
    bridge = FleetBridge(cfg)
    await bridge.start()
    try:
        await bridge.wait_up(10)
        async with FleetClient(parse_broker_config({"broker": broker.url, "tls": tls})) as fc:
            fc.subscribe("t/dev1/status")
            assert await fc.sync(5) == [("t/dev1/status", b"online")]
    finally:
        await bridge.stop()


@needs_openssl
async def test_wrong_ca_refused_with_a_clear_error(
    tls_broker: tuple[Mosquitto, Certs], proxy: str, tmp_path: Path
) -> None:
    broker, certs = tls_broker
    tls = {"ca": str(certs.wrong_ca), "cert": str(certs.client_cert), "key": str(certs.client_key)}
    cfg = parse_bridge_config(bridge_table(broker, proxy, tmp_path, tls=tls))
    with pytest.raises(LinkError) as err:
        async with FleetClient(cfg.broker):
            pass
    text = str(err.value)
    assert "certificate" in text and "verify failed" in text and str(certs.wrong_ca) in text
    # the bridge keeps trying and says why in its status
    bridge = FleetBridge(cfg)
    await bridge.start()
    try:
        await until(lambda: bridge.last_error is not None)
        assert str(certs.wrong_ca) in (bridge.last_error or "")
        assert bridge.state in ("waiting", "connecting")
        assert "verify failed" in read_status(cfg.outbox)["last_error"]
    finally:
        await bridge.stop()


def test_smd_fleet_commands(broker: Mosquitto, tmp_path: Path) -> None:
    """``smd fleet`` lists retained presence and state; ``smd fleet send`` publishes down."""
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fake-device")
    connected = threading.Event()
    pub.on_connect = lambda *_: connected.set()
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    assert connected.wait(5)
    env = b'{"seq":1,"origin":"d\\u202e9","time":1.0,"data":{"state":"OPERATIONAL"}}'
    pub.publish("t/d\u202e9/status", b"online", 1, True).wait_for_publish(5)
    pub.publish("t/d\u202e9/SYSTEM_STATE", env, 1, True).wait_for_publish(5)
    got: list[bytes] = []
    ready = threading.Event()
    pub.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    pub.on_subscribe = lambda *_: ready.set()
    pub.subscribe("t/dev7/cmd/#", 1)
    assert ready.wait(5)
    try:
        smd = [sys.executable, "-m", "smdbus", "fleet"]
        out = subprocess.run(
            [*smd, "--broker", broker.url, "--prefix", "t"], capture_output=True, check=True
        ).stdout.decode()
        line = next(x for x in out.splitlines() if "OPERATIONAL" in x)
        assert "d\\u202e9" in line and "online" in line and "\u202e" not in out  # escaped
        subprocess.run(
            [*smd, "send", "dev7", "network", '{"go":1}', "--broker", broker.url, "--prefix", "t"],
            check=True,
        )
        assert got == [b'{"go":1}']
    finally:
        pub.loop_stop()


def test_daemon_config_bridge_errors_name_file_and_field(tmp_path: Path) -> None:
    from smdbus.daemon import DaemonConfigError, parse_config

    text = '[bridge]\ndevice_id = "d"\ndown = { NETWORK = { rate = -1 } }\n'
    with pytest.raises(DaemonConfigError) as err:
        parse_config(text, "smd.toml")
    assert str(err.value).startswith("smd.toml: bridge.down.NETWORK.rate: must be above 0")
    cfg = parse_config('[bus]\nsocket = "@x"\n[bridge]\ndevice_id = "d"\n', "smd.toml")
    assert cfg.bridge is not None and cfg.bridge.socket == "\0x"  # the daemon's own bus
    assert parse_config("", "smd.toml").bridge is None


async def test_daemon_bridges_its_bus(broker: Mosquitto, tmp_path: Path) -> None:
    """``smd daemon --live`` with [bridge]: boot states go up; the view shows the link."""
    sock = f"@smdbus-fleet-daemon-{os.getpid()}"
    config = tmp_path / "smd.toml"
    config.write_text(
        f'[bus]\nsocket = "{sock}"\n'
        "[gates]\ncoldplug = false\ndhcp = false\ntime = false\n"
        "[cpd]\nenabled = false\n[routes]\nenabled = false\n[systemd]\nnotify = false\n"
        f'[bridge]\nbroker = "{broker.url}"\ndevice_id = "devD"\nprefix = "t"\n'
        'outbox = "outbox.sqlite"\n'
    )
    sub = Subscriber(broker, "t/devD/#")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smdbus", "daemon", "--live", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def operational() -> bool:
        with sub.lock:
            return any(
                t == "t/devD/SYSTEM_STATE" and b"OPERATIONAL" in p for t, p, _ in sub.messages
            )

    try:
        await until(operational, 30)
        assert (tmp_path / "outbox.sqlite").exists()  # relative to the config file
        async with asyncio.timeout(10):  # smd peers shows the daemon's bridge and its link
            while await _bridge_labels(sock) != [f"bridge {broker.url} up"]:
                await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, None, 20)
        assert proc.returncode == 0
        assert f"bridge up: {broker.url} as devD" in out.decode()  # the live view shows it

        def statuses() -> list[bytes]:
            return [p for t, p, _ in list(sub.messages) if t == "t/devD/status"]

        await until(lambda: statuses()[-1] == b"offline", what=str(sub.messages[-5:]))
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


async def test_reconnect_waits_follow_the_retry_table_with_jitter(
    proxy: str, tmp_path: Path
) -> None:
    """Nobody listens on the port: each failure waits backoff[i] + jitter, the last repeats."""
    from fleet_broker import free_port

    table = {
        "broker": f"mqtt://127.0.0.1:{free_port()}",
        "socket": proxy,
        "outbox": str(tmp_path / "o.sqlite"),
        "retry": {"backoff_ms": [10, 20, 40], "jitter_pc": 50},
    }
    waits: list[float] = []

    class Recording(FleetBridge):
        def _set_state(self, state: str) -> None:
            if state == "waiting" and self.next_retry_at is not None:
                waits.append(round(self.next_retry_at, 6))
            super()._set_state(state)

    bridge = Recording(parse_bridge_config(table), wall=lambda: 0.0, rand=lambda: 0.5)
    await bridge.start()
    try:
        await until(lambda: len(waits) >= 5)
    finally:
        await bridge.stop()
    assert waits[:5] == [0.012, 0.025, 0.05, 0.05, 0.05]  # 10, 20, 40 ms + 25 % (whole ms)
    assert "connection refused" in (bridge.last_error or "")


async def test_a_message_the_disk_refuses_is_counted(tmp_path: Path) -> None:
    cfg = parse_bridge_config({"device_id": "d", "outbox": str(tmp_path / "o.sqlite")})
    bridge = FleetBridge(cfg)
    bridge.outbox._db.execute("DROP TABLE messages")  # the disk says no
    bridge._from_bus(Class.NETWORK, 0, b"x")  # the proxy client's on_message
    assert bridge.store_failed == 1
    assert bridge.status()["store_failed"] == 1


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
async def test_username_and_password_from_a_file(proxy: str, tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "dev1", "right"], check=True)
    broker = Mosquitto(tmp_path / "auth-broker", extra=f"password_file {passwd}\n")
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", ""))
    broker.start()
    (tmp_path / "pw").write_text("right\n")
    (tmp_path / "bad").write_text("wrong\n")
    try:
        auth = {"username": "dev1", "password_file": str(tmp_path / "pw")}
        cfg = parse_bridge_config(bridge_table(broker, proxy, tmp_path, auth=auth))
        bridge = FleetBridge(cfg)
        await bridge.start()
        try:
            await bridge.wait_up(10)
        finally:
            await bridge.stop()
        for password_file, words in ((tmp_path / "bad", "broker refused"), (tmp_path / "no", "")):
            bad = {"username": "dev1", "password_file": str(password_file)}
            broker_cfg = parse_broker_config({"broker": broker.url, "auth": bad})
            with pytest.raises(LinkError) as err:
                async with FleetClient(broker_cfg):
                    pass
            assert (words or "cannot use the TLS files or the password") in str(err.value)
    finally:
        broker.stop()
