"""``smd button-replay`` end to end: a real process, its output, --send on a real socket."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from smdbus.wire import (
    Decoder,
    Role,
    StreamType,
    TxPayload,
    conn_state_frame,
    create_result_frame,
)

SMD = [sys.executable, "-m", "smdbus"]


def smd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smdbus", "button-replay", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_prints_the_golden_doubleclick() -> None:
    out = smd("0-102,158-262")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "   20 ms  bc/btn  down\n"
        "  105 ms  bc/btn  up\n"
        "  180 ms  bc/btn  down\n"
        "  185 ms  bc/btn  doubleclick\n"
        "  265 ms  bc/btn  up\n"
    )
    assert out.stderr == ""


def test_regime_names_and_doubleclick_switch() -> None:
    out = smd(
        "0-102,158-262",
        "--no-doubleclick",
        "--controller",
        "panel",
        "--button",
        "user",
        "--regime",
        "ms_min_down=30",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "   30 ms  panel/user  down",
        "  105 ms  panel/user  click",
        "  188 ms  panel/user  down",
        "  263 ms  panel/user  click",
    ]


def test_repeat_and_json_payloads() -> None:
    out = smd("0-330", "--regime", "ms_repeat_down=100,ms_min_down_longpress=1000", "--json")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "   20 ms  bc/btn  down       " + '{"type":"button","src":"bc/btn","event":"down"}',
        "  125 ms  bc/btn  stilldown  " + '{"type":"button","src":"bc/btn","event":"stilldown"}',
        "  230 ms  bc/btn  stilldown  " + '{"type":"button","src":"bc/btn","event":"stilldown"}',
        "  330 ms  bc/btn  up         " + '{"type":"button","src":"bc/btn","event":"up"}',
        "  450 ms  bc/btn  click      " + '{"type":"button","src":"bc/btn","event":"click"}',
    ]


def test_glitch_prints_no_events_and_regime_notes_go_to_stderr() -> None:
    out = smd("0-12", "--regime", "ms_min_down=22")
    assert out.returncode == 0
    assert out.stdout.startswith("(no events")
    assert "note: ms_min_down=22 is not a multiple of the 5 ms tick" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0-1x"], "press '0-1x' is not FROM-TO"),
        (["0-100", "--regime", "ms_bogus=1"], "unknown regime setting 'ms_bogus'"),
        (["0-100", "--regime", "ms_up_settle=-3"], "ms_up_settle must be 0..65535"),
        (["0-100", "--button", "a/b"], "button name 'a/b' may not contain '/'"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(args: list[str], message: str) -> None:
    out = smd(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stdout == ""


class FakeProxy:
    """A proxy end of the ``_lws_smd`` wire: answers STREAMTYPE, collects TX_PAYLOADs."""

    def __init__(self) -> None:
        self.streamtypes: list[StreamType] = []
        self.payloads: list[TxPayload] = []
        self.closed = asyncio.Event()
        self.clean_end = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder(Role.PROXY)
        try:
            while data := await reader.read(65536):
                for event in decoder.feed(data):
                    if isinstance(event, StreamType):
                        self.streamtypes.append(event)
                        # One write: the client may send, close and be gone as soon as it
                        # reads CREATE_RESULT; a later write would then fail (EPIPE) and
                        # take the payloads still unread in our socket with it.
                        states = b"".join(conn_state_frame(state) for state in (1, 6, 5))
                        writer.write(create_result_frame() + states)
                    elif isinstance(event, TxPayload):
                        self.payloads.append(event)
            self.clean_end = True
        finally:
            writer.close()
            self.closed.set()


async def test_send_publishes_through_the_wire() -> None:
    name = f"smdbus-test-{uuid.uuid4().hex[:10]}"
    proxy = FakeProxy()
    server = await asyncio.start_unix_server(proxy.handle, path="\0" + name)
    async with server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "smdbus",
            "button-replay",
            "0-102",
            "--send",
            "--socket",
            f"@{name}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
        await asyncio.wait_for(proxy.closed.wait(), 10)
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode().splitlines()[0] == "   20 ms  bc/btn  down"
    assert "sent 3 events to @" in stderr.decode()
    assert [(s.name, s.mask) for s in proxy.streamtypes] == [("_lws_smd", 0)]
    assert [(p.cls, p.payload) for p in proxy.payloads] == [
        (1, b'{"type":"button","src":"bc/btn","event":"down"}'),
        (1, b'{"type":"button","src":"bc/btn","event":"up"}'),
        (1, b'{"type":"button","src":"bc/btn","event":"click"}'),
    ]
    assert all(p.timestamp_us > 0 for p in proxy.payloads)
    assert proxy.clean_end, "the publisher should end with EOF, not a reset"


def test_send_without_a_proxy_says_so() -> None:
    out = smd("0-102", "--send", "--socket", f"@smdbus-none-{uuid.uuid4().hex[:8]}")
    assert out.returncode == 1
    assert "--send: no proxy at @smdbus-none-" in out.stderr
    assert "start one with `smd daemon`" in out.stderr
    assert "   20 ms  bc/btn  down" in out.stdout  # the replay itself is still printed


def test_send_reaches_a_monitor_through_the_real_proxy() -> None:
    import json
    import time

    address = f"@smdbus-button-{uuid.uuid4().hex[:10]}"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "smdbus", "proxy", "--socket", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None
        assert "listening on" in proxy.stdout.readline()
        monitor = subprocess.Popen(
            [*SMD, "monitor", "--socket", address, "--json", "--class", "INTERACTION", "--count=5"],
            stdout=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while (
            True
        ):  # until the monitor has joined (else the proxy's bus has nobody for INTERACTION)
            peers = subprocess.run(
                [*SMD, "peers", "--socket", address, "--json"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.splitlines()[:-1]
            if any(json.loads(p).get("pid") == monitor.pid for p in peers):
                break
            assert time.monotonic() < deadline, "the monitor never joined"
        out = smd("0-102,158-262", "--send", "--socket", address)
        assert out.returncode == 0, out.stderr
        records = [json.loads(x) for x in monitor.communicate(timeout=20)[0].splitlines()]
    finally:
        proxy.terminate()
        proxy.wait(5)
    assert [(r["classes"], json.loads(r["payload"])) for r in records] == [
        (["INTERACTION"], {"type": "button", "src": "bc/btn", "event": e})
        for e in ("down", "up", "down", "doubleclick", "up")
    ]
