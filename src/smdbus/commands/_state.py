"""``smd state``: the system state, read through the proxy, from any process.

The state is only announced when it changes, so the command first asks:
it sends ``{"query":"state"}`` on SYSTEM_STATE, which the daemon's
:class:`~smdbus.system._query.StateResponder` answers at once. Without a
responder (a C daemon, an older one) the command prints the next change,
or says after ``--timeout`` seconds that none came.

``--until STATE`` waits for the boot to reach STATE (or a later state on the
boot's way to OPERATIONAL): for scripts and ``ExecStartPre=`` lines that need
an operational device while the daemon tells systemd READY earlier.

The command runs without asyncio (:class:`~smdbus.wire._blocking.BlockingStream`);
what it prints and when it stops is :class:`Reporter`, sans I/O, which
:func:`report` also drives for an asynchronous source of messages.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from smdbus._escape import printable
from smdbus.classes import Class
from smdbus.commands._options import add_socket, examples, positive_float
from smdbus.system import QUERY, State, StateReport, parse_state_message
from smdbus.wire import BlockingStream

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import AsyncIterable
    from typing import TextIO

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
    return state_command(
        args.socket,
        watch=args.watch,
        timeout=timeout,
        until=None if args.until is None else State[args.until],
        query=args.query,
        as_json=args.json,
        out=sys.stdout,
    )


def state_command(
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
    try:
        stream = BlockingStream.connect(address, Class.SYSTEM_STATE)
    except ConnectionError as e:
        from smdbus.commands._failure import connect_failure  # re, errno: on failure only

        print(f"smd state: {connect_failure(e, address)}", file=sys.stderr)
        return 1
    reporter = Reporter(watch=watch, timeout=timeout, as_json=as_json, out=out, until=until)
    with stream:
        if query:
            stream.send(Class.SYSTEM_STATE, json.dumps(QUERY, separators=(",", ":")).encode())
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = reporter.wait(deadline, time.monotonic())
            try:
                msg = stream.receive(wait)
            except ConnectionResetError:
                return reporter.hung_up()
            status = (
                reporter.timed_out()
                if msg is None
                else reporter.take(msg.timestamp_us, msg.payload)
            )
            if status is not None:
                return status


async def report(
    messages: AsyncIterable[tuple[int, bytes]],
    *,
    watch: bool,
    timeout: float | None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    until: State | None = None,
) -> int:
    """:class:`Reporter` over an asynchronous source of ``(timestamp_us, payload)``."""
    import asyncio

    loop = asyncio.get_running_loop()
    reporter = Reporter(watch=watch, timeout=timeout, as_json=as_json, out=out, until=until)
    deadline = None if timeout is None else loop.time() + timeout
    it = aiter(messages)
    while True:
        wait = reporter.wait(deadline, loop.time())
        status: int | None
        try:
            timestamp_us, payload = await asyncio.wait_for(anext(it), wait)
        except TimeoutError:
            status = reporter.timed_out()
        except StopAsyncIteration:
            status = reporter.hung_up()
        else:
            status = reporter.take(timestamp_us, payload)
        if status is not None:
            return status


class Reporter:
    """What ``smd state`` prints of SYSTEM_STATE payloads and when it is done (sans I/O).

    Prints the first state seen (and, watching, each change). Without ``watch``,
    gives up after ``timeout`` seconds with status 1 (None: never). With ``until``,
    prints each state until that one (or a later one on the boot's way) is
    reached: 0, or 1 at the timeout. Answers to other processes' queries are
    printed only if they differ from the last state printed. Each method returns
    the exit status once the command is done, else None.
    """

    def __init__(
        self,
        *,
        watch: bool,
        timeout: float | None,
        as_json: bool = False,
        out: TextIO = sys.stdout,
        until: State | None = None,
    ) -> None:
        self.watch = watch
        self.timeout = timeout
        self.as_json = as_json
        self.out = out
        self.until = until
        self.last: str | None = None

    def wait(self, deadline: float | None, now: float) -> float | None:
        """Seconds to wait for the next message (None: for ever)."""
        return None if self.watch or deadline is None else max(deadline - now, 0.0)

    def take(self, timestamp_us: int, payload: bytes) -> int | None:
        found = parse_state_message(payload)
        if found is None or (not found.change and found.name == self.last):
            return None
        self.out.write(_line(found, timestamp_us, self.as_json))
        self.out.flush()
        self.last = found.name
        until = self.until
        if until is not None:
            if found.state is not None and until <= found.state <= State.OPERATIONAL:
                return 0
            return None
        return None if self.watch else 0

    def timed_out(self) -> int:
        if self.until is not None:
            print(
                f"smd state: not {self.until.name} within {self.timeout:g} s "
                f"(last: {self.last or 'none'})",
                file=sys.stderr,
            )
            return 1
        print(
            f"smd state: no state within {self.timeout:g} s (no answer to "
            '{"query":"state"} and no change announced; is the daemon running?)',
            file=sys.stderr,
        )
        return 1

    def hung_up(self) -> int:
        if self.until is not None:
            print(f"smd state: the proxy hung up before {self.until.name}", file=sys.stderr)
            return 1
        return 0 if self.last is not None else 1


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
