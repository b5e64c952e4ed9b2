"""The web service on a real loop, real sockets: a bus, a proxy with a real client, a state
manager with a gate the test holds; HTTP spoken by hand over TCP and the Unix socket.

Every wait is for something the server sends (a status line, an event), bounded."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smdbus.bus import Bus
from smdbus.classes import Class
from smdbus.proxy import Proxy, ProxySettings
from smdbus.scheduler import LoopScheduler
from smdbus.system import State, StateManager
from smdbus.web import WebConfig, WebService, read_info

pytest.importorskip("h11")

WAIT = 5.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def request(
    svc: WebService,
    path: str,
    *,
    token: str | None = "",
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    unix: bool = False,
) -> Reply:
    """One request on a fresh connection (``token=""``: the service's; None: no token)."""
    if unix:
        assert svc.socket_path is not None
        reader, writer = await asyncio.open_unix_connection(str(svc.socket_path))
    else:
        assert svc.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
    lines = [f"{method} {path} HTTP/1.1", "host: localhost", "connection: close"]
    if token is not None:
        lines.append(f"authorization: Bearer {token or svc.token}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body:
        lines.append(f"content-length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    async with asyncio.timeout(WAIT):
        raw = await reader.read()
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *hdrs = head.decode().split("\r\n")
    hmap = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in hdrs)}
    return Reply(int(status_line.split()[1]), hmap, rest)


class Events:
    """An open ``/api/events`` stream, read event by event (chunked framing taken off)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = b""

    async def next(self) -> dict[str, str]:
        async with asyncio.timeout(WAIT):
            while b"\n\n" not in self.buf:
                size = int((await self.reader.readline()).strip(), 16)
                self.buf += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
        block, _, self.buf = self.buf.partition(b"\n\n")
        out: dict[str, str] = {}
        for line in block.decode().split("\n"):
            key, _, value = line.partition(": ")
            out[key] = out[key] + "\n" + value if key in out else value
        return out

    async def until(self, name: str) -> dict[str, str]:
        while True:
            ev = await self.next()
            if ev.get("event", "message") == name:
                return ev

    def close(self) -> None:
        self.writer.close()


async def events(svc: WebService, last_event_id: str | None = None) -> Events:
    assert svc.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
    extra = f"last-event-id: {last_event_id}\r\n" if last_event_id else ""
    writer.write(
        f"GET /api/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {svc.token}\r\n"
        f"{extra}\r\n".encode()
    )
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"text/event-stream" in head
    return Events(reader, writer)


class HeldGate:
    """Holds ``state`` until the test releases it (``link.hold``: the manager resumes)."""

    def __init__(self, state: State = State.DHCP) -> None:
        self.state = state
        self.release = asyncio.Event()

    def __call__(self, manager: Any, link: Any, current: int, target: int) -> int:
        if target == self.state and current != target and not self.release.is_set():
            return int(link.hold(self.release.wait()))
        return 0


@dataclass
class Setup:
    svc: WebService
    bus: Bus
    proxy: Proxy
    manager: StateManager
    gate: HeldGate


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    loop = asyncio.get_running_loop()
    bus = Bus()
    async with bus:
        proxy = Proxy(ProxySettings(address=f"\0smdbus-web-{uuid.uuid4().hex[:12]}"), bus=bus)
        await proxy.start()
        manager = StateManager(bus, scheduler=LoopScheduler(loop))
        gate = HeldGate()
        manager.register(gate, "test-gate")
        cfg = WebConfig(enabled=True, port=0, runtime_dir=tmp_path / "run", ring=5, max_clients=4)
        svc = WebService(cfg, bus=bus, proxy=proxy, manager=manager)
        await svc.start()
        try:
            yield Setup(svc, bus, proxy, manager, gate)
        finally:
            await svc.close()
            await proxy.close()


async def test_every_route_refuses_a_missing_or_wrong_token(setup: Setup) -> None:
    for path in ("/", "/app.js", "/api/state", "/api/classes", "/api/peers", "/api/messages",
                 "/api/events", "/metrics"):  # fmt: skip
        for token in (None, "wrong"):
            r = await request(setup.svc, path, token=token)
            assert r.status == 401, (path, token)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert setup.svc.token.encode() not in r.body
    assert (await request(setup.svc, "/api/state")).status == 200
    r = await request(setup.svc, f"/api/state?token={setup.svc.token}", token=None)
    assert r.status == 200
    cookie = {"cookie": f"smd_token={setup.svc.token}"}
    r = await request(setup.svc, "/api/state", token=None, headers=cookie)
    assert r.status == 200


async def test_the_page_moves_the_token_into_a_cookie(setup: Setup) -> None:
    r = await request(setup.svc, f"/?token={setup.svc.token}", token=None)
    assert r.status == 302 and r.headers["location"] == "/"
    assert r.headers["set-cookie"] == (
        f"smd_token={setup.svc.token}; Path=/; HttpOnly; SameSite=Strict"
    )
    page = await request(setup.svc, "/")
    assert page.status == 200 and b'<script src="/app.js"' in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_unix_socket_is_the_owners_only_and_web_json_tells_the_way(setup: Setup) -> None:
    svc = setup.svc
    assert svc.socket_path is not None
    assert stat.S_IMODE(os.stat(svc.socket_path).st_mode) == 0o600
    run = svc.config.directory()
    assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(run / "web.json").st_mode) == 0o600
    info = read_info(run)
    assert info["token"] == svc.token and info["url"] == svc.url()
    assert (await request(svc, "/api/state", unix=True)).status == 200
    assert (await request(svc, "/api/state", unix=True, token=None)).status == 401


async def test_boot_timeline_names_the_gate_that_held(setup: Setup) -> None:
    s = setup
    late = HeldGate(State.CPD_PRE_TIME)  # registered after the view: asked before it
    s.manager.register(late, "late-gate")
    late.release.set()
    assert not s.manager.steps(State.OPERATIONAL)  # held at DHCP
    state = (await request(s.svc, "/api/state")).json()
    assert state["state"] == "IFACE_COLDPLUG"
    assert state["boot"]["waiting"]["state"] == "DHCP"
    assert state["boot"]["waiting"]["held_by"] == ["test-gate"]
    stream = await events(s.svc)
    late.release.clear()
    s.gate.release.set()
    async with asyncio.timeout(WAIT):
        await s.manager.wait_for(State.DHCP)
    state = (await request(s.svc, "/api/state")).json()
    assert state["boot"]["waiting"]["held_by"] == ["late-gate"]
    late.release.set()
    async with asyncio.timeout(WAIT):
        await s.manager.wait_for(State.OPERATIONAL)
    while True:  # the state event the change triggers
        snap = json.loads((await stream.until("state"))["data"])
        if snap["state"] == "OPERATIONAL":
            break
    stream.close()
    entries = {e["state"]: e for e in snap["boot"]["entries"]}
    assert list(entries) == [s.name for s in State if s <= State.OPERATIONAL and s]
    assert entries["DHCP"]["held_by"] == ["test-gate"] and entries["DHCP"]["waited"] > 0
    assert entries["IFACE_COLDPLUG"]["held_by"] == []
    assert entries["CPD_PRE_TIME"]["held_by"] == ["late-gate"]
    assert snap["boot"]["waiting"] is None


async def test_event_stream_resumes_after_last_event_id(setup: Setup) -> None:
    svc, bus = setup.svc, setup.bus
    for i in range(8):  # the ring holds 5: ids 4..8
        bus.send(Class.INTERACTION, b'{"n":%d}' % i)
    await bus.drain()
    listing = (await request(svc, "/api/messages")).json()
    assert [m["id"] for m in listing["messages"]] == [4, 5, 6, 7, 8]
    epoch = listing["epoch"]

    stream = await events(svc, f"{epoch}-6")
    hello = json.loads((await stream.until("hello"))["data"])
    assert hello == {"epoch": epoch, "resumed": True, "missed": 0}
    got = [await stream.until("message") for _ in range(2)]
    assert [e["id"] for e in got] == [f"{epoch}-7", f"{epoch}-8"]
    assert json.loads(got[0]["data"])["text"] == '{"n":6}'
    bus.send(Class.INTERACTION, b"live")  # then live, without repeats
    ev = await stream.until("message")
    assert ev["id"] == f"{epoch}-9" and json.loads(ev["data"])["text"] == "live"
    stream.close()

    stream = await events(svc, f"{epoch}-1")  # ids 2, 3 (and 4..) are gone: say so
    hello = json.loads((await stream.until("hello"))["data"])
    assert hello["resumed"] and hello["missed"] == 3
    assert (await stream.until("message"))["id"] == f"{epoch}-5"
    stream.close()

    stream = await events(svc, "0badc0de-7")  # another daemon run: a fresh start
    hello = json.loads((await stream.until("hello"))["data"])
    assert hello["resumed"] is False
    assert (await stream.until("message"))["id"] == f"{epoch}-5"
    stream.close()


async def test_messages_api_pages_and_exports_json_lines(setup: Setup) -> None:
    bus = setup.bus
    bus.send(Class.INTERACTION, b"<script>alert(1)</script>")
    bus.send(Class.NETWORK, b'{"x":1}')
    await bus.drain()
    r = (await request(setup.svc, "/api/messages?after=1&limit=1")).json()
    assert r["last_id"] == 2 and [m["text"] for m in r["messages"]] == ['{"x":1}']
    r2 = await request(setup.svc, "/api/messages?format=jsonl")
    lines = [json.loads(x) for x in r2.body.decode().splitlines()]
    assert [x["class"] for x in lines] == ["INTERACTION", "NETWORK"]
    assert lines[0]["text"] == "<script>alert(1)</script>"  # text in JSON, never markup
    assert r2.headers["content-type"] == "application/x-ndjson"
    assert (await request(setup.svc, "/api/messages?after=x")).status == 400
    classes = (await request(setup.svc, "/api/classes")).json()
    assert {c["class"]: c["count"] for c in classes} == {"INTERACTION": 1, "NETWORK": 1}


async def test_peers_and_metrics_show_a_real_client(setup: Setup) -> None:
    from smdbus.client import Client

    client = Client(setup.proxy.address, mask=Class.INTERACTION)
    await client.start()
    try:
        async with asyncio.timeout(WAIT):
            await client.wait_connected()
        async with asyncio.timeout(WAIT):  # snapshots are reused for half a second
            while not (peers := (await request(setup.svc, "/api/peers")).json()):
                await asyncio.sleep(0.05)
        assert len(peers) == 1
        p = peers[0]
        assert p["pid"] == os.getpid() and p["uid"] == os.getuid()
        assert p["mask_names"] == "INTERACTION" and p["command"]
        assert p["denials"] == 0  # the policy's refusals of this peer (None before: never shown)
        setup.bus.send(Class.INTERACTION, b"hi")
        await setup.bus.drain()
        m = (await request(setup.svc, "/api/messages")).json()["messages"][-1]
        assert m["from"] == "bus" and m["to"] == [p["id"]]
    finally:
        await client.close()
    text = (await request(setup.svc, "/metrics")).body.decode()
    assert 'smd_bus_messages_total{class="INTERACTION"} 1' in text
    assert "smd_proxy_accepted_total 1" in text
    assert 'smd_system_state{state="CONTEXT_CREATED"} 1' in text


async def test_sending_is_off_unless_configured(setup: Setup) -> None:
    body = json.dumps({"class": "INTERACTION", "payload": "x"}).encode()
    r = await request(setup.svc, "/api/send", method="POST", body=body)
    assert r.status == 403 and b"allow_send" in r.body
    assert (await request(setup.svc, "/api/send", method="POST", token=None)).status == 401


async def test_connections_are_bounded(setup: Setup) -> None:
    svc = setup.svc
    assert svc.port is not None
    held = [await asyncio.open_connection("127.0.0.1", svc.port) for _ in range(4)]
    try:
        async with asyncio.timeout(WAIT):
            while svc._server is not None and svc._server.connections < 4:
                await asyncio.sleep(0)
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        async with asyncio.timeout(WAIT):
            refused = await reader.read()  # answered at once, before any request
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503 ")
        assert svc._server is not None and svc._server.refused == 1
    finally:
        for _, w in held:
            w.close()
    async with asyncio.timeout(WAIT):
        while svc._server is not None and svc._server.connections:
            await asyncio.sleep(0.01)
    big = await request(svc, "/api/send", method="POST", body=b"x" * 5000)
    assert big.status == 413


async def test_the_sequence_view_starts_at_the_connection_that_sent(setup: Setup) -> None:
    """The proxy names the publishing connection (its id, a column of the view); a message
    sent inside the daemon stays ``bus``."""
    from smdbus.wire import WireStream

    async with await WireStream.connect(setup.proxy.address, 0) as peer:
        await peer.send(Class.INTERACTION, b"from a peer")
        async with asyncio.timeout(WAIT):  # the sentinel: the message is in the view
            while not (m := (await request(setup.svc, "/api/messages")).json()["messages"]):
                await asyncio.sleep(0.01)
        (conn,) = setup.proxy.open_connections()
        assert m[-1]["from"] == f"#{conn.id}"
    setup.bus.send(Class.INTERACTION, b"from inside")
    await setup.bus.drain()
    m = (await request(setup.svc, "/api/messages")).json()["messages"]
    assert m[-1]["from"] == "bus"


@pytest.mark.parametrize(("send_as", "state_accepted"), [("nobody", False), ("root", True)])
async def test_the_pages_sends_go_through_the_access_policy(
    tmp_path: Path, send_as: str, state_accepted: bool
) -> None:
    """With sending on, the page is held to the proxy's policy as ``web.send_as``: under the
    default rules nobody may not send SYSTEM_STATE, root may; INTERACTION is open to both."""
    bus = Bus()
    async with bus:
        proxy = Proxy(ProxySettings(address=f"\0smdbus-web-{uuid.uuid4().hex[:12]}"), bus=bus)
        await proxy.start()
        got: list[tuple[int, bytes]] = []
        bus.register(Class.SYSTEM_STATE | Class.INTERACTION, lambda c, t, p: got.append((c, p)))
        cfg = WebConfig(
            enabled=True, port=0, runtime_dir=tmp_path / "run", allow_send=True, send_as=send_as
        )
        svc = WebService(cfg, bus=bus, proxy=proxy)
        await svc.start()
        try:
            forged = json.dumps({"class": "SYSTEM_STATE", "payload": '{"state":"x"}'}).encode()
            r = await request(svc, "/api/send", method="POST", body=forged)
            if state_accepted:
                assert r.status == 200 and r.json() == {"accepted": True}
            else:
                assert r.status == 403, r.body
                assert b"does not let nobody send SYSTEM_STATE" in r.body
            hello = json.dumps({"class": "INTERACTION", "payload": "hi"}).encode()
            r = await request(svc, "/api/send", method="POST", body=hello)
            assert r.status == 200 and r.json() == {"accepted": True}
            await bus.drain()
            expected = [(int(Class.INTERACTION), b"hi")]
            if state_accepted:
                expected.insert(0, (int(Class.SYSTEM_STATE), b'{"state":"x"}'))
            assert got == expected
            assert svc.refused_policy == (0 if state_accepted else 1)
        finally:
            await svc.close()
            await proxy.close()
