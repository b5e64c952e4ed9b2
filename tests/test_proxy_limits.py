"""The proxy's bounds in total: connection slots per uid, descriptors, outbound memory, log lines.

- A second real uid (setpriv to 65534, and 65533) fills its cap and the shared slots;
  root still connects, ``smd peers`` still answers.
- EMFILE in a child proxy whose RLIMIT_NOFILE is lowered (resource.setrlimit): accepting
  pauses, one line says so, no asyncio traceback storm, and the waiting clients are
  served once descriptors free.
- Subscribers that never read: the outbound budget drops the stalled holding most,
  each with a reason, a counter and its DROPPED; a reading subscriber loses nothing.
- Peer text in logs is escaped; a flood of bad connections logs a bounded number of lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import smdbus
from smdbus._escape import printable
from smdbus.commands._peers import format_table, query_peers
from smdbus.policy import AccessPolicy, Limits, Quotas, default_rules
from smdbus.proxy import Proxy, ProxySettings
from smdbus.proxy._logs import BURST, PeerLog
from smdbus.proxy._settings import connection_limit
from smdbus.proxy._slots import Slots
from smdbus.wire import (
    Decoder,
    Role,
    RxPayload,
    WireStream,
    format_address,
    stream_type_frame,
    tx_payload_frame,
)
from smdbus.wire._control import GREETING

REFUSAL = bytes.fromhex("5600050100000000")
GREETING_LEN = len(GREETING)
SRC = str(Path(smdbus.__file__).resolve().parents[1])


def _address() -> str:
    return f"\0smdbus-limits-{uuid.uuid4().hex[:12]}"


# -- printable and the log throttle: pure ------------------------------------------


def test_printable_escapes_what_could_forge_a_line_or_drive_a_terminal() -> None:
    assert printable("_lws_smd") == "_lws_smd"
    assert printable("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert printable("x\x1b[31mred\x7f\x85") == "x\\x1b[31mred\\x7f\\x85"
    assert printable("\u2028\u202e\U000e0041") == "\\u2028\\u202e\\U000e0041"
    assert printable(b"ok\xff\n") == "ok\\xff\\n"
    assert printable("é ü") == "é ü"  # printable text is left alone
    twice = printable(printable("a\nb\x1b"))
    assert twice == printable("a\nb\x1b")  # escaping again changes nothing
    assert printable("x" * 300, limit=10) == "x" * 10 + "...(+290 chars)"


def test_peer_log_is_a_token_bucket_per_kind_and_counts_what_it_leaves_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    logger = logging.getLogger("smdbus.test.peerlog")
    caplog.set_level(logging.INFO, logger.name)
    logs = PeerLog(logger, lambda: now[0], rate=1.0, burst=3)
    written = [logs.warning("closing", "closing #%d", i) for i in range(10)]
    assert written == [True] * 3 + [False] * 7
    assert logs.info("joined", "joined #1")  # another kind has its own bucket
    assert logs.suppressed == 7
    now[0] = 2.0  # two tokens back
    assert logs.warning("closing", "closing #%d", 10)
    assert logs.warning("closing", "closing #%d", 11)
    assert not logs.warning("closing", "closing #%d", 12)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:4] == ["closing #0", "closing #1", "closing #2", "joined #1"]
    assert lines[4] == "closing #10 [7 more 'closing' lines were suppressed before this one]"
    assert lines[5] == "closing #11"
    assert len(lines) == 6
    # below the logger's level: nothing written, no token spent
    caplog.set_level(logging.WARNING, logger.name)
    assert not logs.info("quiet", "x") and logs.suppressed == 8


def test_slots_total_and_reserved() -> None:
    """The slots count connections in all; per uid is the ledger's (one count, not two)."""
    slots = Slots(limit=6, reserved=2, privileged={0, 990})
    assert [slots.take(1000) for _ in range(4)] == [None] * 4  # no per-uid count here
    refused = slots.take(1002)  # 4 open: the last 2 are reserved
    assert refused is not None and refused[0] == "refused_max_connections"
    assert "reserved" in refused[1]
    assert slots.take(0) is None and slots.take(990) is None  # the reserved ones
    assert slots.take(0) == ("refused_max_connections", "6 connections open (max_connections)")
    slots.give_back()
    assert slots.open == 5
    for _ in range(6):
        slots.give_back()  # more than were taken: never below 0
    assert slots.open == 0


def test_connection_limit_leaves_descriptors_free() -> None:
    assert connection_limit(1024, 1024) == 960  # systemd's default soft limit
    assert connection_limit(1024, 65536) == 1024
    assert connection_limit(1024, 100) == 75
    assert connection_limit(1024, -1) == 1024  # RLIM_INFINITY
    assert connection_limit(1024, 2) == 2
    with pytest.raises(ValueError, match="max_outbound"):
        ProxySettings(max_outbound=1024)  # below max_buffer
    with pytest.raises(ValueError, match="max_outbound"):
        ProxySettings(max_outbound=1 << 40)


# -- a second uid ------------------------------------------------------------------

HOLDER = r"""
import asyncio, json, sys
from smdbus.wire._stream import WireStream

async def main(address, n):
    held, refused = [], []
    for _ in range(n):
        try:
            held.append(await WireStream.connect(address, 0))
        except ConnectionError as exc:
            refused.append(str(exc))
    print(json.dumps({"held": len(held), "refused": refused}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _as_uid(
    uid: int, address: str, n: int
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """A process of ``uid`` that opens ``n`` connections and holds them until its stdin ends."""
    proc = await asyncio.create_subprocess_exec(
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        sys.executable,
        "-c",
        HOLDER,
        format_address(address),
        str(n),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line, f"the uid {uid} process died"
    return proc, json.loads(line)


async def _release(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run processes as another uid")
async def test_another_uid_fills_its_cap_and_the_shared_slots_root_still_connects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "smdbus.proxy")
    settings = ProxySettings(
        address=_address(), max_connections=12, reserved_connections=4, max_connections_per_uid=6
    )
    async with Proxy(settings) as p:
        nobody, got = await _as_uid(65534, p.address, 8)
        assert got["held"] == 6 and len(got["refused"]) == 2
        assert all("refused the stream (result 1)" in r for r in got["refused"])
        assert p.counters["refused_per_uid"] == 2
        other, got2 = await _as_uid(65533, p.address, 4)  # 8 shared slots: 2 left
        assert got2["held"] == 2 and len(got2["refused"]) == 2
        assert p.counters["refused_max_connections"] == 2
        # root still gets in: a subscriber, a publisher and smd peers (the reserved 4)
        sub = await WireStream.connect(p.address, 4)
        pub = await WireStream.connect(p.address, 0)
        await pub.send(4, b"root still here")
        assert (await asyncio.wait_for(sub.receive(), 2)).payload == b"root still here"
        peers, summary = await query_peers(p.address)
        assert sorted(x["uid"] for x in peers).count(65534) == 6
        assert summary["stats"]["refused_per_uid"] == 2
        assert "uid 65534 holds 6 connections (quota 6)" in caplog.text
        await sub.close()
        await pub.close()
        await _release(nobody)
        await _release(other)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run processes as another uid")
async def test_the_daemon_uid_gets_the_reserved_slots_as_the_ledger_knows_it() -> None:
    """``daemon_uid`` is the proxy's own uid for the reserved slots too, not only the ledger's.

    The slots took ``os.geteuid()`` whatever the proxy was told: the daemon's user
    (here 65534, a real second uid) was refused the reserved share it is promised.
    """
    settings = ProxySettings(
        address=_address(), max_connections=8, reserved_connections=4, max_connections_per_uid=8
    )
    async with Proxy(settings, daemon_uid=65534) as p:
        assert p.daemon_uid == p.access.ledger.daemon_uid == 65534
        other, got = await _as_uid(65533, p.address, 6)  # the 4 shared slots, then refused
        assert got["held"] == 4 and len(got["refused"]) == 2
        daemon, got2 = await _as_uid(65534, p.address, 4)  # the reserved 4
        assert got2 == {"held": 4, "refused": []}
        assert p.counters["refused_max_connections"] == 2
        await _release(daemon)
        await _release(other)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run processes as another uid")
async def test_a_standalone_proxys_per_uid_limit_is_its_setting_alone() -> None:
    """Without a policy, ``max_connections_per_uid`` is the one per-uid limit: it is the
    default quota's connection count (which used to cut in at 128, below a larger setting)."""
    settings = ProxySettings(address=_address(), max_connections_per_uid=130)
    async with Proxy(settings) as p:
        nobody, got = await _as_uid(65534, p.address, 131)
        assert got["held"] == 130 and len(got["refused"]) == 1
        assert p.counters["refused_per_uid"] == 1
        await _release(nobody)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run processes as another uid")
async def test_with_a_policy_its_quota_is_the_one_per_uid_limit() -> None:
    """A policy's connection quota above ``max_connections_per_uid`` (128 by default) is the
    limit: the proxy counts connections per uid once, in the ledger (the slots counted them
    a second time and cut in at 128)."""
    quotas = Quotas(default=Limits(connections=130))
    policy = AccessPolicy(default_rules({0, os.getuid()}), quotas)
    async with Proxy(ProxySettings(address=_address()), access=policy) as p:
        nobody, got = await _as_uid(65534, p.address, 131)
        assert got["held"] == 130 and len(got["refused"]) == 1
        assert p.counters["refused_per_uid"] == 1
        await _release(nobody)


# -- descriptors: EMFILE in a child proxy ---------------------------------------------

EMFILE_PROXY = r"""
import asyncio, json, logging, os, resource, sys
from smdbus.proxy import Proxy, ProxySettings
from smdbus.scheduler import ManualScheduler
from smdbus.wire import parse_address

async def main(address, manual):
    address = parse_address(address)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    loop = asyncio.get_running_loop()
    settings = ProxySettings(address=address)
    kw = {}
    if manual:  # timers never fire (the backoff's included); nobody is ever judged stalled
        settings = ProxySettings(address=address, high_water=4096)
        kw = {"scheduler": ManualScheduler(), "clock": lambda: 0.0}
    async with Proxy(settings, **kw) as p:
        print(json.dumps({"limit": p.slots.limit}), flush=True)
        hog = []
        while True:
            cmd = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if cmd == "hog":
                try:
                    while True:
                        hog.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    pass
                print(json.dumps({"hogged": len(hog)}), flush=True)
            elif cmd == "free":
                for fd in hog:
                    os.close(fd)
                hog.clear()
                print(json.dumps({"freed": True}), flush=True)
            elif cmd == "stats":
                print(json.dumps(p.stats()), flush=True)
            elif cmd == "held":
                held = [q.held for q in p.peers() if q.client_pid == 4242]
                print(json.dumps({"held": held}), flush=True)
            else:
                break

asyncio.run(main(sys.argv[1], sys.argv[2:] == ["manual"]))
"""


async def _emfile_proxy(address: str, *args: str) -> tuple[asyncio.subprocess.Process, int]:
    """The child proxy with RLIMIT_NOFILE 64, and its connection limit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        EMFILE_PROXY,
        format_address(address),
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line, "the proxy died at start"
    limit: int = json.loads(line)["limit"]
    return proc, limit


async def _ask(proc: asyncio.subprocess.Process, cmd: str) -> dict[str, Any]:
    """A command to the child proxy, and its one-line JSON answer."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(cmd.encode() + b"\n")
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line, "the proxy died"
    reply: dict[str, Any] = json.loads(line)
    return reply


async def _paused(proc: asyncio.subprocess.Process, seen: list[str]) -> None:
    """Wait for the sentinel: the child's line saying accepting is paused."""
    assert proc.stderr is not None
    while not seen or "out of descriptors" not in seen[-1]:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert line, "the proxy died"
        seen.append(line.decode())


async def test_out_of_descriptors_pauses_accepting_and_says_so_once() -> None:
    address = _address()
    proc, limit = await _emfile_proxy(address)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    seen: list[str] = []

    async def ask(cmd: str) -> dict[str, Any]:
        return await _ask(proc, cmd)

    try:
        assert limit == 48  # 64 descriptors, a quarter kept free
        await ask("hog")
        # clients arrive while the proxy has no descriptor left: they wait in the backlog
        clients = []
        for _ in range(3):
            reader, writer = await asyncio.open_unix_connection(address)
            writer.write(stream_type_frame("_lws_smd", 4, 1))
            clients.append((reader, writer))
        await _paused(proc, seen)
        stats = await ask("stats")
        assert stats["accept_paused"] >= 1 and stats["connections"] == 0
        await ask("free")
        for reader, _ in clients:  # served once descriptors free (the backoff's timer)
            greeting = await asyncio.wait_for(reader.readexactly(GREETING_LEN), 10)
            assert greeting == GREETING
        stats = await ask("stats")
        assert stats["connections"] == 3 and stats["accepted"] == 3
        for _, writer in clients:
            writer.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    text = "".join(seen) + (await proc.stderr.read()).decode()
    assert "Traceback" not in text and "socket.accept() out of system resource" not in text
    lines = [ln for ln in text.splitlines() if "out of descriptors" in ln]
    assert 1 <= len(lines) <= BURST + 1, text
    assert "RLIMIT_NOFILE 64" in lines[0]


async def test_a_tail_the_proxy_closes_resumes_accepting_at_once() -> None:
    """A descriptor freed by closing a Tail (proxy._tail) resumes accepting paused for EMFILE.

    A raw publisher that receives its own class and never reads is held (its
    echoes fill its socket), then writes a frame that is no frame and closes:
    the proxy's echo write fails, it reads on through a Tail (a dup of the
    descriptor), publishes what came before and hangs up on the garbage itself.
    Meanwhile accepting is paused for EMFILE, and the child's timers never fire
    (a ManualScheduler): only ``descriptor_freed`` can let the waiting client in.
    """
    address = _address()
    proc, _ = await _emfile_proxy(address, "manual")
    user0 = int(smdbus.user_class(0))
    seen: list[str] = []
    try:
        sub = await WireStream.connect(address, user0)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
        sock.sendall(stream_type_frame("_lws_smd", user0, 4242))
        sock.setblocking(False)
        n = 0
        while (await _ask(proc, "held"))["held"] != ["congestion"]:
            for _ in range(16):
                frame = tx_payload_frame(user0, 0, b"%06d" % n + bytes(90))
                assert sock.send(frame) == len(frame)  # held long before its buffer fills
                n += 1
        await _ask(proc, "hog")
        reader, waiting = await asyncio.open_unix_connection(address)  # in the backlog
        waiting.write(stream_type_frame("_lws_smd", 4, 1))
        await _paused(proc, seen)
        await _ask(proc, "free")  # descriptors to spare now, but the backoff's timer never fires
        assert sock.send(b"\xff" * 16) == 16
        sock.close()  # with its echoes unread: the proxy's next write to it fails
        for i in range(n):
            assert (await asyncio.wait_for(sub.receive(), 10)).payload[:6] == b"%06d" % i
        # fails (times out) unless closing the Tail told the proxy a descriptor is free
        assert await asyncio.wait_for(reader.readexactly(GREETING_LEN), 10) == GREETING
        stats = await _ask(proc, "stats")
        assert stats["write_failures"] == 1 and stats["protocol_errors"] == 1
        assert stats["accept_paused"] == 1
        waiting.close()
        await sub.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()


async def test_the_limit_refuses_before_descriptors_run_out() -> None:
    """RLIMIT_NOFILE 64 in a child: the 49th connection is refused, not left hanging."""
    address = _address()
    proc, limit = await _emfile_proxy(address)
    try:
        socks = []
        for _ in range(limit):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(address)
            s.sendall(stream_type_frame("_lws_smd", 0, 1))
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            assert len(s.recv(GREETING_LEN, socket.MSG_WAITALL)) == GREETING_LEN
        with pytest.raises(ConnectionRefusedError, match=r"refused the stream \(result 1\)"):
            await WireStream.connect(address, 0, timeout=5)
        for s in socks:
            s.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()


# -- memory: the outbound budget --------------------------------------------------------


@pytest.fixture
async def budget_proxy() -> AsyncIterator[Proxy]:
    settings = ProxySettings(
        address=_address(),
        high_water=32 * 1024,
        max_buffer=2 * 1024 * 1024,  # as much as the budget: only the budget drops here
        max_outbound=2 * 1024 * 1024,
        stall_grace=0.02,
        stall_timeout=60,  # only the budget may drop them here
    )
    async with Proxy(settings) as p:
        yield p


async def test_outbound_budget_drops_the_stalled_holding_most(budget_proxy: Proxy) -> None:
    p = budget_proxy
    budget = p.settings.max_outbound
    stuck = []
    for _ in range(8):  # subscribers that never read
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        await asyncio.get_running_loop().sock_connect(s, p.address)
        s.send(stream_type_frame("_lws_smd", 4, 1))
        stuck.append(s)
    good_r, good_w = await asyncio.open_unix_connection(p.address, limit=1 << 20)
    good_w.write(stream_type_frame("_lws_smd", 4, 2))
    pub_r, pub_w = await asyncio.open_unix_connection(p.address)
    pub_w.write(stream_type_frame("_lws_smd", 0, 3))
    await pub_r.readexactly(GREETING_LEN)
    await good_r.readexactly(GREETING_LEN)

    peak = 0
    n = 30_000
    pad = b"p" * 200

    async def publish() -> None:
        for i in range(n):
            pub_w.write(tx_payload_frame(4, 0, b"%d:" % i + pad))
            if i % 200 == 0:
                await pub_w.drain()
        await pub_w.drain()

    async def watch() -> None:
        nonlocal peak
        while True:  # every loop pass: what all the buffers hold
            peak = max(peak, sum(c.buffered() for c in list(p._connections.values())))
            await asyncio.sleep(0)

    writer = asyncio.create_task(publish())
    watcher = asyncio.create_task(watch())
    decoder = Decoder(Role.CLIENT)
    got = 0
    while got < n:
        decoder.feed(await asyncio.wait_for(good_r.read(1 << 16), 10))
        for ev in decoder.events():
            if isinstance(ev, RxPayload):
                assert ev.payload.startswith(b"%d:" % got)
                got += 1
    await writer
    watcher.cancel()
    closed = [x for x in p.peers() if x.state == "closed"]
    by_budget = [x for x in closed if "over max_outbound" in (x.reason or "")]
    assert len(by_budget) == p.counters["budget_disconnects"] >= 6
    # the last one left alone may pass its own max_buffer (as large as the budget) first
    assert len(closed) - len(by_budget) == p.counters["slow_disconnects"] <= 1
    assert all(x.dropped > 0 for x in closed)
    assert p.counters["dropped_messages"] == sum(x.dropped for x in closed)
    assert p.counters["stall_disconnects"] == 0
    # one pass of frames over the budget at most, for each connection still open
    assert peak <= budget + 9 * 64 * 1024, peak
    for s in stuck:
        s.close()
    good_w.close()
    pub_w.close()


# -- logs: escaped and bounded ------------------------------------------------------------


async def test_streamtype_with_newline_and_escape_logs_one_escaped_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "smdbus.proxy")
    async with Proxy(ProxySettings(address=_address())) as p:
        caplog.clear()
        r, w = await asyncio.open_unix_connection(p.address)
        w.write(stream_type_frame("x\nWARNING smdbus.proxy forged\x1b[2K", 0))
        assert await asyncio.wait_for(r.read(), 2) == REFUSAL
        records = [rec for rec in caplog.records if rec.name == "smdbus.proxy"]
        assert len(records) == 1
        line = records[0].getMessage()
        assert "\n" not in line and "\x1b" not in line
        assert "x\\nWARNING smdbus.proxy forged\\x1b[2K" in line
        w.close()
        # and smd peers shows the record escaped as well
        table = format_table([x.to_json() for x in p.peers()], p.stats())
        assert "\x1b" not in table and len(table.splitlines()) == 3


async def test_a_flood_of_bad_connections_logs_a_bounded_number_of_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "smdbus.proxy")
    async with Proxy(ProxySettings(address=_address()), clock=lambda: 0.0) as p:
        caplog.clear()
        for _ in range(100):
            r, w = await asyncio.open_unix_connection(p.address)
            w.write(b"\xff\x00\x00")  # not a frame type
            assert await asyncio.wait_for(r.read(), 2) == b""
            w.close()
        assert p.counters["protocol_errors"] == 100
        lines = [rec for rec in caplog.records if rec.name == "smdbus.proxy"]
        assert len(lines) == BURST  # the clock stands still: no token comes back
        assert p.stats()["log_suppressed"] == 100 - BURST


async def test_replies_to_an_asker_that_has_gone_log_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asyncio logs every write past the fifth to a broken transport: none are made."""
    caplog.set_level(logging.WARNING)
    async with Proxy(ProxySettings(address=_address())) as p:
        idle = [await asyncio.open_unix_connection(p.address) for _ in range(40)]
        for _, w in idle:
            w.write(stream_type_frame("_lws_smd", 4, 1))
        query = tx_payload_frame(0, 0, b'{"op":"peers"}')
        for _ in range(20):  # ask, and hang up before the answer
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(p.address)
            s.sendall(stream_type_frame("_smdbus_ctl", 0, 1) + query)
            s.close()
        peers, _ = await query_peers(p.address)  # the sentinel: every query above was read
        assert len([x for x in peers if x["streamtype"] == "_smdbus_ctl"]) >= 20
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
        for _, w in idle:
            w.close()
