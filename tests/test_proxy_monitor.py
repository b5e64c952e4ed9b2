"""Who sent each message: ``{"op":"monitor"}`` on the control stream and ``smd monitor --sender``.

Real proxies and sockets; a second real user (nobody, through setpriv) as a C-style
publisher and as a monitor the policy restricts. Every wait is for a sentinel message.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

import smdbus.proxy._monitor as monitor_module
from smdbus.classes import ALL_CLASSES
from smdbus.proxy import Proxy, ProxySettings
from smdbus.wire import (
    CONTROL_MAX_PAYLOAD,
    CONTROL_STREAMTYPE,
    WireStream,
    create_result_frame,
    monitor_query,
    stream_type_frame,
    tx_payload_frame,
)
from test_policy_proxy import (
    METRICS,
    NOBODY,
    SMD,
    USER0,
    WAIT,
    _address,
    access,
    cpeer,
    running,
    until,
)

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or not Path("/usr/bin/setpriv").exists(),
    reason="needs root and setpriv to run peers as nobody",
)


async def _monitor(address: str, mask: int = ALL_CLASSES) -> tuple[WireStream, int]:
    stream = await WireStream.connect(
        address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
    )
    await stream.send(0, monitor_query(mask))
    first = json.loads((await asyncio.wait_for(stream.receive(), WAIT)).payload)
    return stream, first["monitor"]


async def _record(stream: WireStream) -> dict[str, Any]:
    msg = json.loads((await asyncio.wait_for(stream.receive(), WAIT)).payload)["msg"]
    assert isinstance(msg, dict)
    return msg


async def test_each_message_names_its_sender_connection_or_local() -> None:
    """A C-style peer as nobody, our stream as root, the proxy's own process: three senders."""
    address = _address()
    async with running(Proxy(ProxySettings(address=address))) as proxy:
        mon, mask = await _monitor(address)
        assert mask == ALL_CLASSES
        async with cpeer(address, 0) as nobody, await WireStream.connect(address, 0) as root:
            comm = Path(f"/proc/{nobody.proc.pid}/comm").read_text().strip()
            nobody.send((METRICS, b"from nobody"), (USER0, b"x"))
            first = await _record(mon)
            assert bytes.fromhex(first["hex"]) == b"from nobody" and first["cls"] == METRICS
            (conn,) = [c for c in proxy.open_connections() if c.who.uid == 65534]
            assert first["from"] == {"id": conn.id, "pid": nobody.proc.pid, "uid": 65534,
                                     "comm": comm}  # fmt: skip
            assert (await _record(mon))["from"]["uid"] == 65534  # a 1-byte body too
            await root.send(USER0, b"from root")
            rec = await _record(mon)
            assert bytes.fromhex(rec["hex"]) == b"from root"
            assert rec["from"]["pid"] == os.getpid() and rec["from"]["uid"] == 0
            proxy.bus.send(METRICS, b"from inside")
            rec = await _record(mon)
            assert (bytes.fromhex(rec["hex"]), rec["from"]) == (b"from inside", "local")
        assert proxy.stats()["monitors"] == 1
        await mon.close()
        await until(lambda: proxy.monitors.mask == 0)  # nothing is attributed any more
        assert not proxy.monitors._senders


async def test_smd_monitor_sender_as_nobody_gets_only_what_it_may_receive() -> None:
    """METRICS receivable by root only: nobody's ``smd monitor --sender`` never sees it, and
    prints the sender of what it does see, its comm escaped."""
    address = _address()
    policy = access({"rule": [{"classes": "METRICS", "receive": ["0"]}]})
    async with running(Proxy(ProxySettings(address=address), access=policy)) as proxy:
        proc = await asyncio.create_subprocess_exec(
            *NOBODY, *SMD, "monitor", "--sender", "--count", "1", "--socket", "@" + address[1:],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await until(lambda: proxy.monitors.count == 1)
        assert proxy.monitors.mask == ALL_CLASSES & ~METRICS
        evil = "\x1b[2Jevil"
        sender = await asyncio.create_subprocess_exec(
            sys.executable, "-c",
            "import ctypes, socket, sys\n"
            "ctypes.CDLL(None).prctl(15, sys.argv[2].encode())\n"
            "s = socket.socket(socket.AF_UNIX); s.connect('\\0' + sys.argv[1])\n"
            "s.sendall(bytes.fromhex(sys.argv[3])); s.recv(64)\n"
            "s.sendall(bytes.fromhex(sys.argv[4]))\n",
            address[1:], evil,
            stream_type_frame("_lws_smd", 0, 1).hex(),
            (tx_payload_frame(METRICS, 0, b"secret") + tx_payload_frame(USER0, 0, b"hi")).hex(),
        )  # fmt: skip
        async with asyncio.timeout(WAIT):
            out, err = await proc.communicate()
        async with asyncio.timeout(WAIT):
            await sender.wait()
        assert proc.returncode == 0, err
        line = out.decode()
        assert "secret" not in line and line.count("\n") == 1
        assert "[#" in line and f"pid {sender.pid} uid 0 comm '\\x1b[2Jevil'] hi" in line
        assert "\x1b" not in line


async def test_a_monitor_that_does_not_read_is_cut_off_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It holds no publisher back: the local publisher goes on, the monitor is disconnected."""
    monkeypatch.setattr(monitor_module, "MONITOR_BUFFER", 64 * 1024)
    address = _address()
    async with running(Proxy(ProxySettings(address=address))) as proxy:
        sock = socket.socket(socket.AF_UNIX)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address)
        sock.sendall(stream_type_frame(CONTROL_STREAMTYPE, 0, os.getpid()))
        sock.sendall(tx_payload_frame(0, 0, monitor_query(ALL_CLASSES)))
        await until(lambda: proxy.monitors.count == 1)
        async with await WireStream.connect(address, METRICS) as reader:
            body = b"m" * 300
            sent = 0
            while proxy.counters["monitor_disconnects"] == 0:
                proxy.bus.send(METRICS, body)
                sent += 1
                await asyncio.wait_for(
                    reader.receive(), WAIT
                )  # the other subscriber keeps pace: nobody is held
                assert sent < 100_000
        assert proxy.monitors.count == 0 and proxy.monitors.mask == 0
        (closed,) = [p for p in proxy.closed_peers() if p.streamtype == CONTROL_STREAMTYPE]
        assert closed.reason is not None and closed.reason.startswith("monitor not reading")
        sock.close()


async def test_smd_monitor_sender_says_when_the_proxy_cannot_tell(tmp_path: Path) -> None:
    """A proxy that refuses the control stream (as the C proxy does): unavailable, exit 1."""
    path = str(tmp_path / "c-proxy.sock")

    async def refuse_frame(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(create_result_frame(1))
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_unix_server(refuse_frame, path)
    async with server:
        proc = await asyncio.create_subprocess_exec(
            *SMD, "monitor", "--sender", "--socket", path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(WAIT):
            out, err = await proc.communicate()
    assert proc.returncode == 1 and not out
    assert b"--sender is unavailable there" in err, err


async def test_a_message_queued_before_its_class_was_tapped_is_unknown_not_local() -> None:
    """A connection's message queued while only another class was tapped reaches the taps
    once its class is tapped: its sender was not recorded, so it is unknown, never local."""
    address = _address()
    async with running(Proxy(ProxySettings(address=address))) as proxy:
        async with await WireStream.connect(address, 0):
            await until(
                lambda: [c.state for c in proxy.open_connections()] == ["smd"]
            )  # its STREAMTYPE is in
            (conn,) = proxy.open_connections()
            seen: list[tuple[bytes, object]] = []
            proxy.bus.register(USER0, lambda *m: None)  # somebody listens to USER0
            proxy.monitors.tap(METRICS, lambda c, t, p, s: seen.append((p, s)))
            proxy.monitors.send_for(conn)(USER0, b"queued early")  # not attributed: untapped
            proxy.monitors.tap(USER0, lambda c, t, p, s: seen.append((p, s)))
            proxy.monitors.send_for(conn)(USER0, b"queued late")
            await proxy.bus.drain()
        assert seen[0] == (b"queued early", "unknown")
        assert seen[1][0] == b"queued late" and isinstance(seen[1][1], dict)
        assert seen[1][1]["id"] == conn.id
