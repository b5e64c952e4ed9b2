"""A client's label at the proxy (``describe`` on ``_smdbus_ctl``), shown by ``smd peers``.

A real proxy in the test's loop; clients in the test process, in a child
process of the same uid, and in a child process of another uid (setpriv to
65534): a label lands only on the asker's own connections (SO_PEERCRED pid
and uid), is bounded, rate-limited per connection, escaped on screen, kept
across a reconnect, and kept in the record of a closed connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import smdbus
from smdbus.classes import Class
from smdbus.client import connect
from smdbus.commands._peers import format_table, query_peers
from smdbus.proxy import Proxy, ProxySettings
from smdbus.proxy._control import DESCRIBE_BURST, DESCRIBE_RATE
from smdbus.wire import (
    CONTROL_MAX_PAYLOAD,
    CONTROL_STREAMTYPE,
    MAX_LABEL,
    WireStream,
    describe_query,
    format_address,
)

SRC = str(Path(smdbus.__file__).resolve().parents[1])


def _address() -> str:
    return f"\0smdbus-describe-{uuid.uuid4().hex[:12]}"


async def _ask(address: str, query: bytes) -> dict[str, Any]:
    stream = await WireStream.connect(
        address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
    )
    try:
        await stream.send(0, query)
        answer: dict[str, Any] = json.loads((await stream.receive()).payload)
        return answer
    finally:
        await stream.close()


async def _mine(address: str) -> list[dict[str, Any]]:
    peers, _ = await query_peers(address, closed=False)
    return [p for p in peers if p["pid"] == os.getpid() and p["state"] == "smd"]


async def _until(cond: Callable[[], Any], what: str) -> None:
    async with asyncio.timeout(10):
        while not await cond():
            await asyncio.sleep(0.01)


async def _proxy_process(address: str) -> subprocess.Popen[bytes]:
    """``smd proxy`` in a child process, once it answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "smdbus", "proxy", "--socket", format_address(address)],
        env={**os.environ, "PYTHONPATH": SRC},
    )

    async def answers() -> bool:
        try:
            await query_peers(address)
        except ConnectionError:
            return False
        return True

    await _until(answers, "smd proxy up")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


async def test_a_client_labels_its_stream_peers_shows_it_escaped_and_it_survives_a_reconnect() -> (
    None
):
    address = _address()
    label = "bridge mqtt://h:1883 up \x1b[31m"

    async def labelled(want: str | None = label) -> bool:
        return [p.get("label") for p in await _mine(address)] == [want]

    proxy = await _proxy_process(address)
    client = await connect(address, Class.NETWORK, reconnect_delay=0.01)
    try:
        client.describe(label)
        await _until(labelled, "the label at the proxy")
        peers, summary = await query_peers(address, closed=False)
        table = format_table(peers, summary["stats"])
        assert '"bridge mqtt://h:1883 up \\x1b[31m"' in table
        assert "\x1b" not in table
        # smd peers --json: the label as sent, JSON-escaped
        out = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "smdbus",
                "peers",
                "--json",
                "--socket",
                format_address(address),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": SRC},
        )
        assert "\x1b" not in out.stdout
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        mine = [r["label"] for r in rows if r.get("pid") == os.getpid() and r["state"] == "smd"]
        assert mine == [label]
        # the proxy restarts: the client's new connection is labelled again
        _stop(proxy)
        proxy = await _proxy_process(address)
        await _until(labelled, "the label after the reconnect")
        client.describe("first")
        client.describe("second")  # the latest wins
        await _until(lambda: labelled("second"), "the latest label")
        client.describe(None)
        await _until(lambda: labelled(None), "the label cleared")
    finally:
        await client.close()
        _stop(proxy)


ASKER = """
import asyncio, json, sys
from smdbus.wire._control import CONTROL_MAX_PAYLOAD, CONTROL_STREAMTYPE, describe_query
from smdbus.wire._stream import WireStream

async def main(address, ident):
    stream = await WireStream.connect(
        address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
    )
    answers = []
    for query in (describe_query("forged", ident), describe_query("forged")):
        await stream.send(0, query)
        answers.append(json.loads((await stream.receive()).payload))
    print(json.dumps(answers), flush=True)
    await stream.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _forge(address: str, ident: int, *prefix: str) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-c",
        ASKER,
        format_address(address),
        str(ident),
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    answers: list[dict[str, Any]] = json.loads(out)
    return answers


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another uid")
async def test_another_process_or_uid_cannot_label_a_connection() -> None:
    address = _address()
    async with Proxy(ProxySettings(address=address)):
        client = await connect(address, Class.NETWORK)
        try:
            [mine] = await _mine(address)
            same_uid = await _forge(address, mine["id"])
            other_uid = await _forge(
                address, mine["id"], "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"
            )
            for by_id, by_pid in (same_uid, other_uid):
                assert "is not an open stream of this process" in by_id["error"]
                assert by_pid == {"described": [], "end": True}  # it has no stream: nothing
            assert (await _mine(address))[0]["label"] is None
            # the owner may name its connection
            answer = await _ask(address, describe_query("mine", mine["id"]))
            assert answer == {"described": [mine["id"]], "end": True}
            assert (await _mine(address))[0]["label"] == "mine"
        finally:
            await client.close()


async def test_a_label_is_bounded_rate_limited_and_kept_when_its_connection_closes() -> None:
    address = _address()
    now = [100.0]
    settings = ProxySettings(address=address, control_burst=100)  # the describe limit is tested
    async with Proxy(settings, clock=lambda: now[0]):
        client = await connect(address, Class.NETWORK)
        try:
            [mine] = await _mine(address)
            too_long = await _ask(address, describe_query("x" * (MAX_LABEL + 1)))
            assert f"at most {MAX_LABEL} characters" in too_long["error"]
            not_text = await _ask(address, b'{"op":"describe","label":7}')
            assert "label must be a string" in not_text["error"]
            stream = await WireStream.connect(
                address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
            )
            answers = []
            for i in range(DESCRIBE_BURST + 1):  # the clock stands still: no token comes back
                for label in (
                    f"{i:03d}" + "y" * (MAX_LABEL - 3),
                    f"{i:03d}" + "y" * (MAX_LABEL - 3),
                ):
                    await stream.send(0, describe_query(label))  # the same twice: one change
                    answers.append(json.loads((await stream.receive()).payload))
            await stream.close()
            assert all(a == {"described": [mine["id"]], "end": True} for a in answers[:-2])
            assert "changed label over" in answers[-2]["error"]
            assert "changed label over" in answers[-1]["error"]
            last = f"{DESCRIBE_BURST - 1:03d}" + "y" * (MAX_LABEL - 3)
            assert (await _mine(address))[0]["label"] == last
            now[0] += 1 / DESCRIBE_RATE  # a token back
            assert (await _ask(address, describe_query("after")))["described"] == [mine["id"]]
        finally:
            await client.close()
        peers, _ = await query_peers(address, closed=True)
        [closed] = [p for p in peers if p["id"] == mine["id"]]
        assert (closed["state"], closed["label"]) == ("closed", "after")
