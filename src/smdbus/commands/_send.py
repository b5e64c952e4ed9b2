"""``smd send CLASS PAYLOAD``: publish one message through the proxy, and confirm it.

The wire has no acknowledgement, and a C proxy discards what it has not
passed on when a client hangs up. What a sender can see is its own message
coming back (the proxy sends a message to every connection whose mask
matches, the sender included), so ``smd send`` listens to the class it sends
and exits 0 only when every message came back within ``--timeout``; else it
exits 1 saying how many did not. A class the proxy's policy does not let
this user send is refused before anything is sent (exit 1, saying so): our
proxy tells on its control stream which classes it refuses this user.

It runs without asyncio (:class:`~smdbus.wire._blocking.BlockingStream`): a
one-shot tool should cost little more than starting Python. On our proxy
the copies of ``--count`` are batched; on a C proxy they are paced, one
frame per write once the proxy has read the last one.

The payload limit here is the wire's: 383 bytes, as libwebsockets' C proxy
takes (its frame has room for one byte less than lws_smd's 384). A bus in
one process (:class:`smdbus.Bus`) takes 384; the error says which applies.
"""

from __future__ import annotations

import argparse
import sys

from smdbus.classes import parse_mask
from smdbus.commands._options import add_socket, examples, positive_float, positive_int
from smdbus.wire import (
    CONTROL_MAX_PAYLOAD,
    CONTROL_STREAMTYPE,
    WATCH_QUERY,
    WIRE_MAX_PAYLOAD,
    BlockingStream,
    parse_denied,
)


def _class(text: str) -> int:
    try:
        cls = parse_mask(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < cls <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"class {text} must have a bit among the 32")
    return cls


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "cls", metavar="CLASS", type=_class, help="NETWORK, user0, 0x4 ... (one or more bits)"
    )
    parser.add_argument(
        "payload",
        metavar="PAYLOAD",
        help=f"at most {WIRE_MAX_PAYLOAD} bytes (the wire's limit); - reads stdin",
    )
    add_socket(parser)
    parser.add_argument(
        "--count", type=positive_int, default=1, metavar="N", help="send it N times (default 1)"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the messages to come back from the proxy (default 5)",
    )
    examples(
        parser,
        "smd send INTERACTION '{\"hello\":1}'",
        'smd send NETWORK \'{"trigger":"cpdcheck","src":"me"}\'   ask for a CPD check',
        "smd send user0 - < payload.bin                   the payload from stdin",
        "smd send --socket /run/smd/proxy.sock METRICS '{\"n\":1}' --count 10",
    )


def too_large(size: int) -> str:
    """The error for a payload over the wire's limit, saying which limit that is."""
    from smdbus.bus import MAX_PAYLOAD  # the bus is not on the way of a send that fits

    return (
        f"payload of {size} bytes is over the wire's limit of {WIRE_MAX_PAYLOAD} bytes "
        f"(libwebsockets' proxy protocol; a bus in one process takes {MAX_PAYLOAD})"
    )


def run(args: argparse.Namespace) -> int:
    payload = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode()
    if len(payload) > WIRE_MAX_PAYLOAD:
        print(f"smd send: {too_large(len(payload))}", file=sys.stderr)
        return 2
    try:
        missing = _send(args.socket, args.cls, payload, args.count, args.timeout)
    except PermissionError as exc:  # SendRefused (connecting wraps its own errors)
        print(f"smd send: {exc}", file=sys.stderr)
        return 1
    if missing:
        print(
            f"smd send: {missing} of {args.count} messages not confirmed within "
            f"{args.timeout:g} s (they did not come back from the proxy)",
            file=sys.stderr,
        )
        return 1
    return 0


def _send(address: str, cls: int, payload: bytes, count: int, timeout: float) -> int:
    """Send ``count`` copies; how many did not come back within ``timeout``."""
    # Listening to the class is what brings our messages back; other senders' messages
    # of the class are read and dropped, so they never hold up our confirmations.
    with BlockingStream.connect(address, cls) as stream:
        denied = _denied(address, timeout) if stream.ours else 0
        if cls & denied:
            from smdbus.client import SendRefused  # the client's words; only here

            raise SendRefused(cls, denied)
        return stream.publish(cls, payload, count, timeout)


def _denied(address: str, timeout: float) -> int:
    """The classes our proxy's policy does not let this user send (0 when it does not say)."""
    with BlockingStream.connect(
        address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
    ) as control:
        control.send(0, WATCH_QUERY)
        reply = control.receive(timeout)  # the first answer comes at once
    return 0 if reply is None else parse_denied(reply.payload)
