"""``smd proxy``: run the cross-process bus on a Unix socket.

C libwebsockets programs join with ``-i +@proxy.ss.lws`` (the default address);
Python programs with :mod:`smdbus.client`. See docs/proxy.md.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import signal
import sys

from smdbus._aiorun import run as run_async
from smdbus.commands import _loop
from smdbus.commands._failure import strip_errno
from smdbus.commands._options import add_socket, examples, positive_int
from smdbus.proxy import Proxy, ProxySettings
from smdbus.wire import format_address

_D = ProxySettings()


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"mode must be octal like 0660, got {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"mode {text} is not a permission mode")
    return mode


def _group(text: str) -> str | int:
    """A group that exists here, by name or number (checked now, not when binding)."""
    if text.isdigit():
        return int(text)
    try:
        grp.getgrnam(text)
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"no group {text!r} on this system (getent group lists them)"
        ) from None
    return text


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add_socket(parser, "where to listen")
    add("--mode", type=_mode, default=_D.mode, help="filesystem socket permissions (default 0660)")
    add("--group", type=_group, default=None, help="group owning a filesystem socket")
    add(
        "--max-connections",
        type=positive_int,
        default=_D.max_connections,
        metavar="N",
        help="connections in all (lowered to what RLIMIT_NOFILE allows)",
    )
    add(
        "--reserved-connections",
        type=int,
        default=_D.reserved_connections,
        metavar="N",
        help="of those, kept for root and the proxy's own uid",
    )
    add(
        "--max-connections-per-uid",
        type=int,
        default=_D.max_connections_per_uid,
        metavar="N",
        help="connections any other uid may hold",
    )
    add("--max-frame", type=int, default=_D.max_frame, metavar="BYTES", help="largest frame len")
    add(
        "--first-frame-timeout",
        type=float,
        default=_D.first_frame_timeout,
        metavar="S",
        help="seconds a new connection has to send STREAMTYPE (default 3, as C)",
    )
    add("--queue-depth", type=int, default=_D.queue_depth, metavar="N", help="bus queue depth")
    add(
        "--high-water",
        type=int,
        default=_D.high_water,
        metavar="BYTES",
        help="a subscriber with more unread bytes holds publishers back",
    )
    add(
        "--max-buffer",
        type=int,
        default=_D.max_buffer,
        metavar="BYTES",
        help="a subscriber with more unread bytes is disconnected",
    )
    add(
        "--max-outbound",
        type=int,
        default=_D.max_outbound,
        metavar="BYTES",
        help="unread bytes of all subscribers together; past it stalled ones are dropped",
    )
    add(
        "--stall-grace",
        type=float,
        default=_D.stall_grace,
        metavar="S",
        help="a subscriber reading nothing this long stops holding publishers",
    )
    add(
        "--stall-timeout",
        type=float,
        default=_D.stall_timeout,
        metavar="S",
        help="a subscriber reading nothing this long is disconnected",
    )
    _loop.add_loop(parser)
    examples(
        parser,
        "smd proxy                                       the abstract socket C programs use",
        "smd proxy --socket /run/smd/proxy.sock --group smd --mode 0660",
        "                                                only members of group smd may connect",
    )


def settings_from(args: argparse.Namespace) -> ProxySettings:
    return ProxySettings(
        address=args.socket,
        mode=args.mode,
        group=args.group,
        max_connections=args.max_connections,
        reserved_connections=args.reserved_connections,
        max_connections_per_uid=args.max_connections_per_uid,
        max_frame=args.max_frame,
        first_frame_timeout=args.first_frame_timeout,
        queue_depth=args.queue_depth,
        high_water=args.high_water,
        max_buffer=args.max_buffer,
        max_outbound=args.max_outbound,
        stall_grace=args.stall_grace,
        stall_timeout=args.stall_timeout,
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        factory, loop_name = _loop.loop_factory(args.loop)
    except (ValueError, _loop.LoopUnavailable) as exc:
        print(f"smd proxy: {exc}", file=sys.stderr)
        return 2
    try:
        run_async(_serve(settings, loop_name), factory)
    except OSError as exc:
        text = strip_errno(str(exc))
        if not text.startswith("cannot"):
            text = f"cannot listen on {format_address(settings.address)}: {text}"
        print(f"smd proxy: {text}", file=sys.stderr)
        return 1
    return 0


async def _serve(settings: ProxySettings, loop_name: str) -> None:
    proxy = Proxy(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with proxy:
        print(
            f"smd proxy: listening on {format_address(settings.address)} ({loop_name})",
            flush=True,
        )
        await stop.wait()
    print("smd proxy: stopped", flush=True)
