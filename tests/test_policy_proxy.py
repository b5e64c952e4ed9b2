"""The policy in the proxy, with two real users: root (this test) and nobody (setpriv children).

The nobody peers are raw C-style clients (stdlib only: frames written as
bytes, as a C program's are) or our own ``smd send``. Every wait is for a
sentinel (a message, a state of the proxy, a line in a log), never for time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from smdbus.classes import ALL_CLASSES, Class, user_class
from smdbus.policy import AccessPolicy, load_access_policy, parse_access
from smdbus.proxy import Proxy, ProxySettings
from smdbus.proxy._connection import Connection
from smdbus.wire import (
    SMD_STREAMTYPE,
    WireStream,
    format_address,
    stream_type_frame,
    tx_payload_frame,
)
from test_daemon_e2e import QUIET

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or not Path("/usr/bin/setpriv").exists(),
    reason="needs root and setpriv to run peers as nobody",
)

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SMD = [sys.executable, "-m", "smdbus"]
WAIT = 20.0
STATE, NET, METRICS, USER0 = (
    int(Class.SYSTEM_STATE),
    int(Class.NETWORK),
    int(Class.METRICS),
    user_class(0),
)

# A C-style client: writes the frames it is given (hex, one line each) and prints every
# RX_PAYLOAD as "<class> <body hex>"; nothing of smdbus imported, as a C program.
_C_CLIENT = r"""
import socket, struct, sys, threading
s = socket.socket(socket.AF_UNIX)
s.connect("\0" + sys.argv[1])
def read():
    buf = b""
    while True:
        data = s.recv(65536)
        if not data:
            print("EOF", flush=True)
            return
        buf += data
        while len(buf) >= 3:
            ftype, n = buf[0], struct.unpack(">H", buf[1:3])[0]
            if len(buf) < 3 + n:
                break
            body, buf = buf[3 : 3 + n], buf[3 + n :]
            if ftype == 0x55:
                cls = struct.unpack(">Q", body[16:24])[0]
                print(cls, body[32:].hex(), flush=True)
            elif ftype == 0x56:
                print("CREATED", flush=True)
if sys.argv[2:] != ["noread"]:
    threading.Thread(target=read, daemon=True).start()
for line in sys.stdin:
    s.sendall(bytes.fromhex(line.strip()))
"""


def _address() -> str:
    return f"\0smdbus-test-policy-{uuid.uuid4().hex[:12]}"


def access(table: dict[str, object]) -> AccessPolicy:
    return load_access_policy(parse_access({"dir": "", **table}, "test"), {0})


class CPeer:
    """A C-style client process running as nobody."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, address: str, mask: int, *, reading: bool = True) -> CPeer:
        """``reading=False``: a peer that never reads what the proxy sends it."""
        proc = await asyncio.create_subprocess_exec(
            *NOBODY,
            sys.executable,
            "-c",
            _C_CLIENT,
            address[1:],
            *([] if reading else ["noread"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        peer = cls(proc)
        peer.write(stream_type_frame(SMD_STREAMTYPE, mask, proc.pid))
        if reading:
            assert await peer.line() == "CREATED"
        return peer

    def write(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame.hex().encode() + b"\n")

    def send(self, *messages: tuple[int, bytes]) -> None:
        self.write(b"".join(tx_payload_frame(c, 0, body) for c, body in messages))

    async def line(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT):
            return (await self.proc.stdout.readline()).decode().strip()

    async def message(self) -> tuple[int, bytes]:
        cls, body = (await self.line()).split(" ")
        return int(cls), bytes.fromhex(body)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


@contextlib.asynccontextmanager
async def running(proxy: Proxy) -> AsyncIterator[Proxy]:
    async with proxy:
        yield proxy


@contextlib.asynccontextmanager
async def cpeer(address: str, mask: int, *, reading: bool = True) -> AsyncIterator[CPeer]:
    peer = await CPeer.start(address, mask, reading=reading)
    try:
        yield peer
    finally:
        await peer.close()


async def until(check: Callable[[], bool]) -> None:
    """Wait for a state of the proxy (a sentinel), one loop pass at a time."""
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.001)


def _conn(proxy: Proxy, uid: int) -> Connection:
    (conn,) = [c for c in proxy.open_connections() if c.who.uid == uid]
    return conn


async def test_nobody_cannot_inject_system_classes_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Default policy: a C-style sender as nobody forges SYSTEM_STATE and NETWORK; nobody
    receives them, they are counted per peer and class and logged with pid, uid, comm."""
    address = _address()
    async with running(Proxy(ProxySettings(address=address))) as proxy:
        root = await WireStream.connect(address, ALL_CLASSES)
        async with cpeer(address, ALL_CLASSES) as nobody:
            nobody.send(
                (STATE, b'{"state":"OPERATIONAL"}'),
                (NET, b'{"cpd":"OK"}'),
                (STATE | USER0, b"forged too"),
                (METRICS, b"sentinel"),
            )
            msg = await asyncio.wait_for(root.receive(), WAIT)
            assert (msg.cls, msg.payload) == (METRICS, b"sentinel")  # the first and only
            assert await nobody.message() == (METRICS, b"sentinel")  # it was not cut off
            conn = _conn(proxy, 65534)
            comm = Path(f"/proc/{nobody.proc.pid}/comm").read_text().strip()
            assert (conn.who.gid, conn.who.pid, conn.who.comm) == (65534, nobody.proc.pid, comm)
            (peer,) = [p for p in proxy.peers() if p.uid == 65534]
            assert (peer.refused, peer.published, peer.comm) == (3, 1, comm)
        await root.close()
        assert proxy.counters["refused_policy"] == 3
        assert proxy.access.by_class == {"SYSTEM_STATE": 2, "NETWORK": 1}
        (closed,) = [p for p in proxy.closed_peers() if p.uid == 65534]
        assert closed.refused == 3  # kept in the record of the closed connection
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused:")]
    assert lines[0].startswith(f"refused: pid {nobody.proc.pid} uid 65534 comm '{comm}' #")
    assert "SYSTEM_STATE message dropped: the policy lets root and the daemon's user" in lines[0]
    assert "NETWORK message dropped" in lines[1]


async def test_our_client_as_nobody_is_told_and_root_is_not() -> None:
    """smd send as nobody: SYSTEM_STATE refused before sending, saying why; METRICS goes."""
    address = _address()
    async with running(Proxy(ProxySettings(address=address))) as proxy:
        shown = format_address(address)

        async def smd_send(*who: str, cls: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                *who, *SMD, "send", "--socket", shown, cls, "x", stderr=subprocess.PIPE
            )
            async with asyncio.timeout(WAIT):
                _, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, err.decode()

        code, err = await smd_send(*NOBODY, cls="SYSTEM_STATE")
        assert code == 1
        assert err == (
            "smd send: the proxy's policy does not let this user send SYSTEM_STATE: "
            "message refused (may not send: SYSTEM_STATE|NETWORK)\n"
        )
        assert proxy.counters["refused_policy"] == 0  # refused by the client: nothing sent
        assert await smd_send(*NOBODY, cls="METRICS") == (0, "")
        assert await smd_send(cls="SYSTEM_STATE") == (0, "")  # root


async def test_a_receiver_gets_only_the_classes_it_may() -> None:
    """METRICS receivable by root only: nobody asks for ALL and gets the rest."""
    address = _address()
    policy = access({"rule": [{"classes": "METRICS", "receive": ["0"]}]})
    proxy = Proxy(ProxySettings(address=address), access=policy)
    async with running(proxy), cpeer(address, ALL_CLASSES) as nobody:
        conn = _conn(proxy, 65534)
        assert (conn.asked, conn.mask) == (ALL_CLASSES, ALL_CLASSES & ~METRICS)
        async with await WireStream.connect(address, 0) as root:
            await root.send(METRICS, b"secret")
            await root.send(USER0, b"sentinel")
        assert await nobody.message() == (USER0, b"sentinel")
        (peer,) = [p for p in proxy.peers() if p.uid == 65534]
        assert peer.asked == ALL_CLASSES and peer.mask == ALL_CLASSES & ~METRICS


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_flooding_uid_is_held_to_its_quota_and_loses_nothing() -> None:
    """nobody may publish 10 at once, then 100 a second (of the proxy's clock, driven here):
    30 sent are delivered 10 at a time, the rest held (backpressure), none dropped; root's
    messages pass meanwhile."""
    address = _address()
    clock = FakeClock()
    policy = access({"quota": {"user": {"publish_rate": 100, "publish_burst": 10}}})
    proxy = Proxy(ProxySettings(address=address), access=policy, clock=clock)
    async with running(proxy):
        sub = await WireStream.connect(address, USER0)
        async with cpeer(address, 0) as nobody:
            nobody.send(*[(USER0, b"n%d" % i) for i in range(30)])
            got = [(await asyncio.wait_for(sub.receive(), WAIT)).payload for _ in range(10)]
            conn = _conn(proxy, 65534)
            await until(lambda: conn.held == "quota")
            assert conn.published == 10
            async with await WireStream.connect(address, 0) as root:
                await root.send(USER0, b"root")
            assert (await asyncio.wait_for(sub.receive(), WAIT)).payload == b"root"
            for _ in range(2):
                clock.now += 1.0  # 100 tokens, of which the burst (10) is kept
                got += [(await asyncio.wait_for(sub.receive(), WAIT)).payload for _ in range(10)]
            assert got == [b"n%d" % i for i in range(30)]
            await until(lambda: conn.held == "quota" or conn.pending is None)
            assert conn.published == 30 and conn.dropped == 0
            assert proxy.counters["held_quota"] >= 2
            assert proxy.access.ledger.trips[(65534, "publish_rate")] >= 2
        await sub.close()


async def test_reload_changes_what_an_open_connection_may_do() -> None:
    """A new policy applies to the open connection of nobody at once; it is not dropped."""
    address = _address()
    async with running(Proxy(ProxySettings(address=address))) as proxy:
        sub = await WireStream.connect(address, STATE | METRICS)
        async with cpeer(address, ALL_CLASSES) as nobody:
            conn = _conn(proxy, 65534)
            nobody.send((STATE, b"before"), (METRICS, b"sentinel 1"))
            assert (await asyncio.wait_for(sub.receive(), WAIT)).payload == b"sentinel 1"
            proxy.set_access(
                access(
                    {
                        "rule": [
                            {"classes": "SYSTEM_STATE", "send": ["65534"]},
                            {"classes": "USER1", "receive": ["0"]},
                        ]
                    }
                )
            )
            assert conn.mask == ALL_CLASSES & ~user_class(1)  # moved to its new group
            nobody.send((STATE, b"after"), (METRICS, b"sentinel 2"))
            assert (await asyncio.wait_for(sub.receive(), WAIT)).payload == b"after"
            assert (await asyncio.wait_for(sub.receive(), WAIT)).payload == b"sentinel 2"
            assert _conn(proxy, 65534) is conn and conn.state == "smd"
            assert proxy.counters["refused_policy"] == 1
        await sub.close()


async def test_a_uid_past_its_connection_and_outbound_quotas() -> None:
    """nobody may hold 2 connections and have 64 KiB queued: a third connection is refused;
    a subscriber of nobody that never reads is disconnected once 64 KiB wait for it, before
    max_buffer (4 MiB), with the reason; root's subscriber goes on."""
    address = _address()
    policy = access({"quota": {"user": {"connections": 2, "outbound": 64 * 1024}}})
    proxy = Proxy(ProxySettings(address=address), access=policy)
    async with running(proxy), cpeer(address, USER0, reading=False) as stuck:
        await until(lambda: any(c.state == "smd" for c in proxy.open_connections()))
        async with cpeer(address, 0), cpeer(address, 0, reading=False):
            await until(lambda: proxy.counters["refused_per_uid"] == 1)  # the third, at accept
        assert len(proxy.open_connections()) == 1
        assert proxy.access.ledger.trips[(65534, "connections")] == 1
        sub = await WireStream.connect(address, USER0)
        async with await WireStream.connect(address, 0) as root:
            for i in range(3000):
                root.send_nowait(USER0, b"%04d" % i + b"x" * 296)
                if proxy.counters["quota_disconnects"]:
                    break
                await root.drain()
            await root.send(USER0, b"sentinel")
        async with asyncio.timeout(WAIT):
            async for msg in sub:
                if msg.payload == b"sentinel":
                    break
        await sub.close()
        assert stuck.proc.returncode is None  # it is the proxy that hung up
        (closed,) = [p for p in proxy.closed_peers() if p.client_pid == stuck.proc.pid]
        assert closed.reason is not None
        assert closed.reason.startswith("outbound quota: uid 65534 has ")
        assert closed.reason.endswith("bytes queued across its connections (quota 65536)")
        assert proxy.counters["quota_disconnects"] == 1
        assert proxy.counters["slow_disconnects"] == 0
        assert proxy.access.ledger.outbound(65534) == 0  # what it held was let go


# -- the daemon: [access] and SIGHUP -------------------------------------------------


async def test_daemon_reloads_access_on_sighup_without_dropping(tmp_path: Path) -> None:
    """A drop-in granting nobody NETWORK takes effect on SIGHUP; a broken one keeps the rules."""
    address = _address()
    dropdir = tmp_path / "access.d"
    dropdir.mkdir()
    os.chmod(dropdir, 0o755)
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "{format_address(address)}"\n[access]\ndir = "{dropdir}"\n{QUIET}'
    )
    log = tmp_path / "stderr.txt"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [*SMD, "daemon", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )

    async def logged(text: str) -> None:
        await until(lambda: text in log.read_text() or daemon.poll() is not None)
        assert daemon.poll() is None, log.read_text()

    try:
        await logged("serving the bus")
        sub = await WireStream.connect(address, NET | METRICS)
        async with cpeer(address, 0) as nobody:
            nobody.send((NET, b"forged"), (METRICS, b"sentinel 1"))
            assert (await asyncio.wait_for(sub.receive(), WAIT)).payload == b"sentinel 1"
            await logged("NETWORK message dropped")
            (dropdir / "10-net.toml").write_text(
                '[[rule]]\nclasses = "NETWORK"\nsend = ["65534"]\n'
            )
            daemon.send_signal(signal.SIGHUP)
            await logged("access rules reloaded (1 rules, 0 skipped)")
            nobody.send((NET, b"granted"))
            assert (await asyncio.wait_for(sub.receive(), WAIT)).payload == b"granted"
            (dropdir / "20-bad.toml").write_text('[[rule]]\nclasses = "NETWROK"\nsend = []\n')
            daemon.send_signal(signal.SIGHUP)
            await logged("access reload failed")
            text = log.read_text()
            assert f"{dropdir}/20-bad.toml: rule[0].classes: unknown class 'NETWROK'" in text
            assert "keeping the rules in force" in text
            nobody.send((NET, b"still granted"))
            assert (await asyncio.wait_for(sub.receive(), WAIT)).payload == b"still granted"
            assert nobody.proc.returncode is None  # never dropped
        await sub.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(WAIT)
