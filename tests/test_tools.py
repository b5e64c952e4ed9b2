"""``smd monitor``, ``smd send`` and ``smd peers`` as real processes against a real proxy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from smdbus.commands._monitor import FieldTest, format_json, format_line, make_filter
from smdbus.wire import RxPayload

SMD = [sys.executable, "-m", "smdbus"]


def _smd(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*SMD, *args], input=stdin, capture_output=True, timeout=20)


def _monitor(address: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SMD, "monitor", "--socket", address, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_subscribers(address: str, n: int) -> list[dict[str, object]]:
    """Poll ``smd peers`` until ``n`` subscribers are connected (the monitors)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = _smd("peers", "--socket", address, "--json")
        peers = [json.loads(x) for x in out.stdout.decode().splitlines()[:-1]]
        subs = [p for p in peers if p["streamtype"] == "_lws_smd" and p["mask"]]
        if len(subs) >= n:
            return subs
    raise AssertionError(f"{n} monitors never connected")


def test_monitor_send_and_peers(smd_proxy: str) -> None:
    address = smd_proxy
    text_mon = _monitor(address, "--count", "3")
    json_mon = _monitor(address, "--json", "--class", "NETWORK,user0", "--count", "2")
    subs = _wait_for_subscribers(address, 2)
    assert {s["pid"] for s in subs} == {text_mon.pid, json_mon.pid}
    assert _smd("send", "--socket", address, "NETWORK", '{"up":true,"if":"eth0"}').returncode == 0
    assert _smd("send", "--socket", address, "user0", "-", stdin=b"\x00\xff").returncode == 0
    assert _smd("send", "--socket", "+" + address, "SYSTEM_STATE", "OPERATIONAL").returncode == 0

    lines = text_mon.communicate(timeout=10)[0].decode().splitlines()
    assert text_mon.returncode == 0
    assert len(lines) == 3
    assert lines[0].split(None, 1)[1] == 'NETWORK       {"up":true,"if":"eth0"}'
    assert lines[1].endswith("USER0         <2 bytes> 00ff")
    assert lines[2].endswith("SYSTEM_STATE  OPERATIONAL")

    records = [json.loads(x) for x in json_mon.communicate(timeout=10)[0].splitlines()]
    assert records[0]["classes"] == ["NETWORK"]
    assert records[0]["payload"] == '{"up":true,"if":"eth0"}'
    assert records[1]["class"] == 1 << 24 and records[1]["payload_hex"] == "00ff"
    assert records[0]["timestamp_us"] < records[1]["timestamp_us"]

    table = _smd("peers", "--socket", address, "--all").stdout.decode()
    header, *rows, summary = table.splitlines()
    assert header.split()[:7] == ["ID", "STATE", "PID", "UID", "GID", "COMM", "MASK"]
    assert any(str(text_mon.pid) in r and "ALL" in r for r in rows)
    assert any(str(json_mon.pid) in r and "NETWORK|USER0" in r for r in rows)
    assert "published 3" in summary


def test_monitor_shows_the_bytes_as_sent(smd_proxy: str) -> None:
    """No re-encoding: duplicate keys, 1e2, spacing and key order stay as the sender wrote them."""
    sent = ['{"a":1,"a":2}', "1e2", '{"hello":1}', '{ "b" : [1,2] ,"a":0}', "a\x1b[2Jb\tc"]
    mon = _monitor(smd_proxy, "--count", str(len(sent) + 1))
    pretty = _monitor(smd_proxy, "--count", "1", "--pretty", "--class", "user0")
    _wait_for_subscribers(smd_proxy, 2)
    for body in sent:
        assert _smd("send", "--socket", smd_proxy, "NETWORK", body).returncode == 0
    assert _smd("send", "--socket", smd_proxy, "user0", '{"k":[1]}').returncode == 0
    shown = [
        line.split(None, 2)[2] for line in mon.communicate(timeout=10)[0].decode().splitlines()
    ]
    assert shown == [
        *sent[:4],
        "a\\x1b[2Jb\\tc",
        '{"k":[1]}',
    ]  # a peer's escapes are shown, not run
    assert pretty.communicate(timeout=10)[0].decode().splitlines()[1:] == [
        '  "k": [',
        "    1",
        "  ]",
        "}",
    ]


def test_monitor_filters_and_counts(smd_proxy: str) -> None:
    grep = _monitor(smd_proxy, "--grep", "cl[i]ck", "--count", "1")
    field = _monitor(smd_proxy, "--field", "src=bc/user", "--field", "n=2", "--count", "1")
    _wait_for_subscribers(smd_proxy, 2)
    for body in ('{"event":"down","src":"bc/user","n":1}', '{"event":"click","src":"x"}'):
        assert _smd("send", "--socket", smd_proxy, "INTERACTION", body).returncode == 0
    assert (
        _smd("send", "--socket", smd_proxy, "INTERACTION", '{"src":"bc/user","n":2}').returncode
        == 0
    )
    assert grep.communicate(timeout=10)[0].decode().endswith('{"event":"click","src":"x"}\n')
    assert field.communicate(timeout=10)[0].decode().endswith('{"src":"bc/user","n":2}\n')
    assert grep.returncode == field.returncode == 0


def test_field_and_grep_tests() -> None:
    def keep(*fields: str, grep: str | None = None) -> list[bytes]:
        import re

        test = make_filter(re.compile(grep) if grep else None, [FieldTest.parse(f) for f in fields])
        bodies = [
            b'{"a":{"b":"3"}}',
            b'{"a":{"b":3}}',
            b'{"a":true}',
            b'{"a":1}',
            b"not json",
            b"\xff",
        ]
        return [b for b in bodies if test(RxPayload(1, 0, b))]

    assert keep("a.b=3") == [b'{"a":{"b":"3"}}', b'{"a":{"b":3}}']  # a string as written, or JSON
    assert keep("a.b") == [b'{"a":{"b":"3"}}', b'{"a":{"b":3}}']
    assert keep("a=true") == [b'{"a":true}']
    assert keep("a=1") == [b'{"a":1}']  # not true
    assert keep(grep="json|ff") == [b"not json", b"\xff"]  # binary: the hex as shown
    with pytest.raises(Exception, match="KEY=VALUE"):
        FieldTest.parse("a..b=1")


def test_monitor_timeout_and_count(smd_proxy: str) -> None:
    out = _smd("monitor", "--socket", smd_proxy, "--timeout", "0.2")
    assert out.returncode == 0 and out.stdout == b"" and out.stderr == b""
    out = _smd("monitor", "--socket", smd_proxy, "--timeout", "0.2", "--count", "2")
    assert out.returncode == 1
    assert out.stderr.decode() == "smd monitor: 0 of 2 messages within 0.2 s\n"


def test_monitor_piped_into_head_exits_quietly(smd_proxy: str) -> None:
    """The reader of the pipe goes away: status 0, nothing on stderr (was: Broken pipe, 1)."""
    mon = _monitor(smd_proxy)
    _wait_for_subscribers(smd_proxy, 1)
    assert mon.stdout is not None and mon.stderr is not None
    assert _smd("send", "--socket", smd_proxy, "NETWORK", "first").returncode == 0
    assert mon.stdout.readline().endswith(b"first\n")
    mon.stdout.close()  # as head does after its lines
    assert _smd("send", "--socket", smd_proxy, "NETWORK", "second").returncode == 0
    assert mon.wait(10) == 0
    assert mon.stderr.read() == b""


def test_monitor_says_when_the_proxy_hangs_up() -> None:
    address = f"@smdbus-hangup-{uuid.uuid4().hex[:8]}"
    proxy = subprocess.Popen(
        [*SMD, "proxy", "--socket", address], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proxy.stdout is not None and b"listening" in proxy.stdout.readline()
        mon = _monitor(address)
        _wait_for_subscribers(address, 1)
    finally:
        proxy.terminate()
        proxy.wait(5)
    _, err = mon.communicate(timeout=10)
    assert mon.returncode == 1
    assert err.decode() == f"smd monitor: the proxy at {address} hung up (after 0 messages shown)\n"


def test_peers_open_by_default_in_words(smd_proxy: str) -> None:
    assert _smd("send", "--socket", smd_proxy, "NETWORK", "x").returncode == 0  # opens and closes
    mon = _monitor(smd_proxy)
    try:
        _wait_for_subscribers(smd_proxy, 1)
        rows = _smd("peers", "--socket", smd_proxy).stdout.decode().splitlines()[1:-1]
        states = {r.split()[1] for r in rows}
        assert states == {"open", "query"}  # the monitor, and this query; the sender is closed
        assert any(str(mon.pid) in r and r.split()[1] == "open" for r in rows)
        every = _smd("peers", "--socket", smd_proxy, "--all").stdout.decode().splitlines()[1:-1]
        assert "closed" in {r.split()[1] for r in every}
    finally:
        mon.terminate()
        mon.wait(5)


def test_errors_are_clear() -> None:
    nobody = "@smdbus-nobody-" + uuid.uuid4().hex[:8]
    no_proxy = (
        f"no proxy at {nobody}: start one with `smd daemon` (or `smd proxy`), "
        "or give its address with --socket\n"
    )
    for cmd in (["send", "NETWORK", "x"], ["monitor"], ["peers"], ["state"]):
        out = _smd(cmd[0], "--socket", nobody, *cmd[1:])
        assert (out.returncode, out.stderr.decode()) == (1, f"smd {cmd[0]}: {no_proxy}"), cmd
    out = _smd("send", "--socket", nobody, "FOO", "x")
    assert out.returncode == 2 and b"unknown class 'FOO'" in out.stderr
    out = _smd("send", "--socket", nobody, "NETWORK", "x" * 384)
    assert out.returncode == 2
    assert out.stderr.decode() == (
        "smd send: payload of 384 bytes is over the wire's limit of 383 bytes "
        "(libwebsockets' proxy protocol; a bus in one process takes 384)\n"
    )
    out = _smd("proxy", "--socket", "@x", "--mode", "999")
    assert out.returncode == 2 and b"octal" in out.stderr


def test_line_formats() -> None:
    msg = RxPayload(4 | 8, 1_000, b'{"k":[1,2]}')
    assert format_line(msg).endswith('NETWORK|METRICS {"k":[1,2]}')
    record = json.loads(format_json(msg))
    assert record["classes"] == ["NETWORK", "METRICS"] and record["payload"] == '{"k":[1,2]}'
    assert format_line(RxPayload(1, 1_000, b"a\tb")).endswith("INTERACTION   a\\tb")
    assert format_line(RxPayload(1, 1_000, "\u202eevil".encode())).endswith("\\u202eevil")
    coloured = format_line(RxPayload(2, 1_000, b"x"), colour=True)
    assert "\x1b[36mSYSTEM_STATE " in coloured and coloured.endswith("\x1b[0m x")


def test_colour_only_on_a_terminal_without_no_color() -> None:
    from smdbus.commands._monitor import use_colour

    class Tty:
        def isatty(self) -> bool:
            return True

    tty = Tty()
    assert use_colour("auto", tty, {}) is True  # type: ignore[arg-type]
    assert use_colour("auto", tty, {"NO_COLOR": "1"}) is False  # type: ignore[arg-type]
    assert use_colour("auto", sys.stdout, {}) is sys.stdout.isatty()
    assert use_colour("always", sys.stdout, {"NO_COLOR": "1"}) is True


def test_payload_limits_say_which_applies() -> None:
    """384 in one process (lws_smd), 383 on the wire (the C proxy): each error names its own."""
    from smdbus import Bus, Class, Client, PayloadTooLarge
    from smdbus.bus import MAX_PAYLOAD
    from smdbus.errors import IN_PROCESS_LIMIT, WIRE_LIMIT
    from smdbus.wire import WIRE_MAX_PAYLOAD

    assert (IN_PROCESS_LIMIT, WIRE_LIMIT) == (MAX_PAYLOAD, WIRE_MAX_PAYLOAD) == (384, 383)
    bus = Bus()
    bus.register(Class.NETWORK, lambda *a: None)
    assert bus.send(Class.NETWORK, bytes(384))
    with pytest.raises(PayloadTooLarge) as local:
        bus.send(Class.NETWORK, bytes(385))
    assert str(local.value).endswith(
        "over the limit of 384 (the in-process bus's limit; through a proxy it is 383)"
    )
    with pytest.raises(PayloadTooLarge) as wire:
        Client("@smdbus-unused", Class.NETWORK).send(Class.NETWORK, bytes(384))
    assert str(wire.value).endswith(
        "over the limit of 383 (the wire's limit, through a proxy; a bus in one process takes 384)"
    )
