"""``smd state``: the system state, read through the proxy, from any process.

The state is only announced when it changes, so the command first asks:
it sends ``{"query":"state"}`` on SYSTEM_STATE, which the daemon's
:class:`~smdbus.system.query.StateResponder` answers at once. Without a
responder (a C daemon, an older one) the command prints the next change,
or says after ``--timeout`` seconds that none came.

``--until STATE`` waits for the boot to reach STATE (or a later state on the
boot's way to OPERATIONAL): for scripts and ``ExecStartPre=`` lines that need
an operational device while the daemon tells systemd READY earlier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterable
from typing import TextIO

from smdbus.classes import Class
from smdbus.commands._failure import connect_failure
from smdbus.commands._options import add_socket, examples, positive_float
from smdbus.escape import printable
from smdbus.system.query import QUERY, StateReport, parse_state_message
from smdbus.system.state import State

BOOT_WAY = [s.name for s in State if State.CONTEXT_CREATED <= s <= State.OPERATIONAL]

DEFAULT_TIMEOUT = 3.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch", "-w", action="store_true", help="keep printing each change until interrupted"
    )
    add_socket(parser)
    parser.add_argument(
        "--until",
        choices=BOOT_WAY,
        metavar="STATE",
        help="wait until the boot reaches STATE or a later one (e.g. OPERATIONAL)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help=f"how long to wait (default {DEFAULT_TIMEOUT} s; with --until, for ever)",
    )
    parser.add_argument(
        "--no-query",
        dest="query",
        action="store_false",
        help="do not ask for the current state; only print announced changes",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    examples(
        parser,
        "smd state                 the current state, e.g. OPERATIONAL",
        "smd state --watch --json  then each change, as JSON lines",
        "smd state --until OPERATIONAL --timeout 300   wait for the device to be operational",
    )


def run(args: argparse.Namespace) -> int:
    timeout = args.timeout
    if timeout is None and args.until is None:
        timeout = DEFAULT_TIMEOUT
    return asyncio.run(
        state_command(
            args.socket,
            watch=args.watch,
            timeout=timeout,
            until=None if args.until is None else State[args.until],
            query=args.query,
            as_json=args.json,
            out=sys.stdout,
        )
    )


async def state_command(
    address: str,
    *,
    watch: bool,
    timeout: float | None,
    query: bool = True,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    until: State | None = None,
) -> int:
    """Connect, ask, print; returns the exit status."""
    from smdbus.client import ProxyUnavailable, connect

    try:
        client = await connect(address, Class.SYSTEM_STATE)
    except ProxyUnavailable as e:
        print(f"smd state: {connect_failure(e, address)}", file=sys.stderr)
        return 1
    try:
        if query:
            client.send_json(Class.SYSTEM_STATE, QUERY)
        messages = ((m.timestamp_us, m.payload) async for m in client)
        return await report(
            messages, watch=watch, timeout=timeout, as_json=as_json, out=out, until=until
        )
    finally:
        await client.close(timeout=0)


async def report(
    messages: AsyncIterable[tuple[int, bytes]],
    *,
    watch: bool,
    timeout: float | None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    until: State | None = None,
) -> int:
    """Print the first state seen (and, watching, each change) from SYSTEM_STATE payloads.

    Without ``watch``, gives up after ``timeout`` seconds with status 1 (None:
    never). With ``until``, prints each state until that one (or a later one on
    the boot's way) is reached: 0, or 1 at the timeout.
    Answers to other processes' queries are printed only if they differ from
    the last state printed.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    last: str | None = None
    it = aiter(messages)
    while True:
        wait = None if watch or deadline is None else max(deadline - loop.time(), 0.0)
        try:
            timestamp_us, payload = await asyncio.wait_for(anext(it), wait)
        except TimeoutError:
            if until is not None:
                print(
                    f"smd state: not {until.name} within {timeout:g} s (last: {last or 'none'})",
                    file=sys.stderr,
                )
                return 1
            print(
                f"smd state: no state within {timeout:g} s (no answer to "
                '{"query":"state"} and no change announced; is the daemon running?)',
                file=sys.stderr,
            )
            return 1
        except StopAsyncIteration:
            if until is not None:
                print(f"smd state: the proxy hung up before {until.name}", file=sys.stderr)
                return 1
            return 0 if last is not None else 1
        found = parse_state_message(payload)
        if found is None or (not found.change and found.name == last):
            continue
        out.write(_line(found, timestamp_us, as_json))
        out.flush()
        last = found.name
        if until is not None:
            if found.state is not None and until <= found.state <= State.OPERATIONAL:
                return 0
            continue
        if not watch:
            return 0


def _line(found: StateReport, timestamp_us: int, as_json: bool) -> str:
    if not as_json:
        return printable(found.name) + "\n"  # a peer may announce any name
    obj = {
        "state": found.name,
        "n": None if found.state is None else int(found.state),
        "change": found.change,
        "timestamp_us": timestamp_us,
    }
    return json.dumps(obj, separators=(",", ":")) + "\n"
