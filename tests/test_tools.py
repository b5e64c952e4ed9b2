"""``smd monitor``, ``smd send`` and ``smd peers`` as real processes against a real proxy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from smdbus.commands.monitor import format_json, format_line
from smdbus.wire import RxPayload


def _smd(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "smdbus", *args], input=stdin, capture_output=True, timeout=20
    )


@pytest.fixture
def address() -> Iterator[str]:
    addr = f"@smdbus-tools-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "smdbus", "proxy", "--socket", addr],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert "listening on" in proc.stdout.readline()
    yield addr
    proc.terminate()
    proc.wait(5)


def _wait_for_subscribers(address: str, n: int) -> list[dict[str, object]]:
    """Poll ``smd peers`` until ``n`` subscribers are connected (the monitors)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = _smd("peers", "--socket", address, "--json", "--open")
        peers = [json.loads(x) for x in out.stdout.decode().splitlines()[:-1]]
        subs = [p for p in peers if p["streamtype"] == "_lws_smd" and p["mask"]]
        if len(subs) >= n:
            return subs
    raise AssertionError(f"{n} monitors never connected")


def test_monitor_send_and_peers(address: str) -> None:
    text_mon = subprocess.Popen(
        [sys.executable, "-m", "smdbus", "monitor", "--socket", address, "--count", "3"],
        stdout=subprocess.PIPE,
    )
    json_args = ["--json", "--class", "NETWORK,user0", "--count", "2"]
    json_mon = subprocess.Popen(
        [sys.executable, "-m", "smdbus", "monitor", "--socket", address, *json_args],
        stdout=subprocess.PIPE,
    )
    subs = _wait_for_subscribers(address, 2)
    assert {s["pid"] for s in subs} == {text_mon.pid, json_mon.pid}
    assert _smd("send", "--socket", address, "NETWORK", '{"up":true,"if":"eth0"}').returncode == 0
    assert _smd("send", "--socket", address, "user0", "-", stdin=b"\x00\xff").returncode == 0
    assert _smd("send", "--socket", "+" + address, "SYSTEM_STATE", "OPERATIONAL").returncode == 0

    lines = text_mon.communicate(timeout=10)[0].decode().splitlines()
    assert len(lines) == 3
    assert lines[0].split(None, 1)[1] == 'NETWORK       {"up": true, "if": "eth0"}'
    assert lines[1].endswith("USER0         <2 bytes> 00ff")
    assert lines[2].endswith("SYSTEM_STATE  OPERATIONAL")

    records = [json.loads(x) for x in json_mon.communicate(timeout=10)[0].splitlines()]
    assert records[0]["classes"] == ["NETWORK"] and records[0]["payload"] == {
        "up": True,
        "if": "eth0",
    }
    assert records[1]["class"] == 1 << 24 and records[1]["payload_hex"] == "00ff"
    assert records[0]["timestamp_us"] < records[1]["timestamp_us"]

    table = _smd("peers", "--socket", address).stdout.decode()
    header, *rows, summary = table.splitlines()
    assert header.split()[:5] == ["ID", "STATE", "PID", "UID", "MASK"]
    assert any(str(text_mon.pid) in r and "ALL" in r for r in rows)
    assert any(str(json_mon.pid) in r and "NETWORK|USER0" in r for r in rows)
    assert "published 3" in summary


def test_errors_are_clear() -> None:
    nobody = "@smdbus-nobody-" + uuid.uuid4().hex[:8]
    out = _smd("send", "--socket", nobody, "NETWORK", "x")
    assert (
        out.returncode == 1 and b"cannot connect to the proxy at " + nobody.encode() in out.stderr
    )
    out = _smd("send", "--socket", nobody, "FOO", "x")
    assert out.returncode == 2 and b"unknown class 'FOO'" in out.stderr
    out = _smd("send", "--socket", nobody, "NETWORK", "x" * 384)
    assert out.returncode == 2 and b"384 bytes is over the limit of 383" in out.stderr
    out = _smd("monitor", "--socket", nobody)
    assert out.returncode == 1 and b"cannot connect" in out.stderr
    out = _smd("peers", "--socket", nobody)
    assert out.returncode == 1 and b"cannot connect" in out.stderr
    out = _smd("proxy", "--socket", "@x", "--mode", "999")
    assert out.returncode == 2 and b"octal" in out.stderr


def test_line_formats() -> None:
    msg = RxPayload(4 | 8, 1_000, b'{"k":[1,2]}')
    assert format_line(msg).endswith('NETWORK|METRICS {"k": [1, 2]}')
    record = json.loads(format_json(msg))
    assert record["classes"] == ["NETWORK", "METRICS"] and record["payload"] == {"k": [1, 2]}
    assert format_line(RxPayload(1, 1_000, b"a\tb")).endswith("INTERACTION   a\\tb")
