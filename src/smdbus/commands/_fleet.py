"""``smd fleet``: the backend's view of the devices on a broker; ``monitor``; ``send``.

``smd fleet`` lists each device seen under the prefix with its presence and
last SYSTEM_STATE (from retained messages); ``smd fleet monitor`` follows
every message; ``smd fleet send DEVICE CLASS PAYLOAD`` sends a command down.
Passwords come from ``--password-file`` or ``$SMD_MQTT_PASSWORD``, never
from the command line. Text from devices is escaped before it is shown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any

from smdbus._aiorun import run as run_async
from smdbus._escape import printable
from smdbus.classes import class_names, parse_mask
from smdbus.commands._options import examples

PASSWORD_ENV = "SMD_MQTT_PASSWORD"


def _common(p: argparse.ArgumentParser, sub: bool) -> None:
    d = argparse.SUPPRESS if sub else None

    def opt(flag: str, default: Any, **kw: Any) -> None:
        p.add_argument(flag, default=d if sub else default, **kw)

    opt("--broker", "mqtt://127.0.0.1:1883", metavar="URL", help="mqtt://HOST:PORT, mqtts://")
    opt("--protocol", "5", choices=("3.1.1", "5"), help="MQTT version (default 5)")
    opt("--prefix", "smd", metavar="P", help="topic prefix (default smd)")
    opt("--ca", None, metavar="FILE", help="CA the broker's certificate must chain to")
    opt("--cert", None, metavar="FILE", help="client certificate")
    opt("--key", None, metavar="FILE", help="client key")
    opt(
        "--username",
        None,
        metavar="NAME",
        help=f"user (password: --password-file, ${PASSWORD_ENV})",
    )
    opt("--password-file", None, metavar="FILE", help="file holding the password")
    opt("--wait", 5.0, type=float, metavar="S", help="longest wait for the broker (default 5 s)")


def configure(parser: argparse.ArgumentParser) -> None:
    _common(parser, False)
    parser.add_argument("--json", action="store_true", help="one JSON object per device")
    sub = parser.add_subparsers(dest="fleet_command", metavar="{monitor,send}")
    mon = sub.add_parser("monitor", help="print every message under the prefix")
    _common(mon, True)
    mon.add_argument("--count", type=int, default=0, metavar="N", help="stop after N messages")
    mon.add_argument("--json", action="store_true", help="JSON lines")
    send = sub.add_parser("send", help="send one command down to a device")
    _common(send, True)
    send.add_argument("device", metavar="DEVICE")
    send.add_argument("cls", metavar="CLASS", help="NETWORK, USER0 ... (one class)")
    send.add_argument("payload", metavar="PAYLOAD", help="the message body; - reads stdin")
    examples(
        parser,
        "smd fleet --broker mqtt://10.0.0.2:1883          every device: status and state",
        "smd fleet monitor --count 10",
        'smd fleet send kiosk-7 NETWORK \'{"trigger":"cpdcheck","src":"backend"}\'',
    )


def _broker(args: argparse.Namespace) -> Any:
    from smdbus.fleet import check_device_id, check_prefix, parse_broker_config

    check_prefix(args.prefix, "fleet")
    if args.fleet_command == "send":  # a device id with / or + would aim somewhere else
        check_device_id(args.device, "fleet")
    table: dict[str, Any] = {"broker": args.broker, "protocol": args.protocol}
    table["connect_timeout"] = args.wait
    tls = {k: getattr(args, k) for k in ("ca", "cert", "key") if getattr(args, k)}
    if tls:
        table["tls"] = tls
    if args.username:
        auth: dict[str, str] = {"username": args.username}
        if args.password_file:
            auth["password_file"] = args.password_file
        elif PASSWORD_ENV in os.environ:
            auth["password_env"] = PASSWORD_ENV
        table["auth"] = auth
    return parse_broker_config(table, path="fleet")


def run(args: argparse.Namespace) -> int:
    try:
        broker = _broker(args)
        if args.fleet_command == "send":
            cls = parse_mask(args.cls)
            if not 0 < cls <= 0xFFFFFFFF or cls & (cls - 1):
                raise ValueError(f"CLASS must name one class, got {args.cls!r}")
    except ValueError as exc:
        print(f"smd fleet: {exc}", file=sys.stderr)
        return 2
    try:
        if args.fleet_command == "send":
            body = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode()
            topic = f"{args.prefix}/{args.device}/cmd/{class_names(cls)[0]}"
            run_async(_send(broker, topic, body, args.wait))
        elif args.fleet_command == "monitor":
            run_async(_monitor(broker, args.prefix, args.count, args.json))
        else:
            run_async(_list(broker, args.prefix, args.wait, args.json))
    except ImportError as exc:
        print(f"smd fleet: {exc} (install smdbus[fleet])", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError) as exc:
        print(f"smd fleet: {exc or 'no acknowledgement from the broker'}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return 0


async def _send(broker: Any, topic: str, body: bytes, wait: float) -> None:
    from smdbus.fleet import FleetClient

    async with FleetClient(broker) as fc:
        await fc.publish(topic, body, timeout=wait)


async def _list(broker: Any, prefix: str, wait: float, as_json: bool) -> None:
    from smdbus.fleet import FleetClient, FleetView

    view = FleetView(prefix)
    async with FleetClient(broker) as fc:
        fc.subscribe(f"{prefix}/#")
        for topic, payload in await fc.sync(wait):
            view.apply(topic, payload)
    devices = sorted(view.devices.values(), key=lambda d: d.device)
    if as_json:
        for d in devices:
            print(json.dumps({"device": d.device, "status": d.status, "state": d.state}))
        return
    rows = [("DEVICE", "STATUS", "SYSTEM_STATE")]
    rows += [(_shown(d.device), _shown(d.status), _shown(d.state or "-")) for d in devices]
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}".rstrip())


async def _monitor(broker: Any, prefix: str, count: int, as_json: bool) -> None:
    from smdbus.fleet import FleetClient, FleetView

    view = FleetView(prefix)
    seen = 0
    async with FleetClient(broker) as fc:
        fc.subscribe(f"{prefix}/#")
        while not count or seen < count:
            topic, payload = await fc.receive()
            got = view.apply(topic, payload)
            if got is None:
                continue
            dev, rest, env = got
            body = env.body if env is not None else payload
            text = body.decode(errors="backslashreplace")
            if as_json:
                rec: dict[str, object] = {"device": dev.device, "topic": rest, "body": text}
                if env is not None:
                    rec["seq"] = env.seq
                print(json.dumps(rec), flush=True)
            else:
                now = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
                seq = f"#{env.seq}" if env is not None else ""
                print(
                    f"{now}  {_shown(dev.device)}  {_shown(rest)} {seq}  {_shown(text)}",
                    flush=True,
                )
            seen += 1


def _shown(text: str) -> str:
    """Peer text made safe for a terminal line: escaped and bounded (smdbus._escape)."""
    return printable(text, limit=300)
