"""``smd bridge``: bridge the device's bus to an MQTT broker (see docs/fleet.md).

Reads the ``[bridge]`` table of a TOML file (the daemon's config works as
is); a few options override keys of it for a quick run. ``--status`` reads
the status the running bridge keeps in its outbox file and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from smdbus._aiorun import run as run_async
from smdbus.commands._options import examples


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML file with [bridge]")
    parser.add_argument("--socket", metavar="ADDR", help="proxy address (bridge.socket)")
    parser.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT or mqtts://...")
    parser.add_argument("--device-id", metavar="ID", help="this device's name on the broker")
    parser.add_argument("--prefix", metavar="P", help="topic prefix (bridge.prefix)")
    parser.add_argument("--outbox", metavar="PATH", help="the on-disk outbox (bridge.outbox)")
    parser.add_argument("--status", action="store_true", help="show the bridge's status and exit")
    parser.add_argument("--json", action="store_true", help="--status as one JSON object")
    examples(
        parser,
        "smd bridge --config /etc/smd/daemon.toml     its [bridge] table",
        "smd bridge --broker mqtt://10.0.0.2:1883 --device-id kiosk-7",
        "smd bridge --config /etc/smd/daemon.toml --status --json",
    )


def _table(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    table: dict[str, Any] = {}
    base = Path.cwd()
    if args.config is not None:
        doc = tomllib.loads(args.config.read_text())
        found = doc.get("bridge")
        if not isinstance(found, dict):
            raise ValueError(f"{args.config}: no [bridge] table")
        table, base = dict(found), args.config.resolve().parent
    for key in ("socket", "broker", "device_id", "prefix", "outbox"):
        value = getattr(args, key)
        if value is not None:
            table[key] = str(Path(value).resolve()) if key == "outbox" else value
    return table, base


def run(args: argparse.Namespace) -> int:
    from smdbus.fleet import BridgeConfigError, parse_bridge_config, read_status

    try:
        table, base = _table(args)
        cfg = parse_bridge_config(table, base=base)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        where = f"{args.config}: " if isinstance(exc, BridgeConfigError) and args.config else ""
        print(f"smd bridge: {where}{exc}", file=sys.stderr)
        return 2
    if args.status:
        try:
            status = read_status(cfg.outbox)
        except OSError as exc:
            print(f"smd bridge: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(status) if args.json else format_status(status))
        return 0
    try:
        run_async(_run(cfg))
    except ImportError as exc:
        print(f"smd bridge: {exc} (install smdbus[fleet])", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:  # the outbox: busy, unwritable
        print(f"smd bridge: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(cfg: Any) -> None:
    from smdbus.fleet import FleetBridge

    bridge = FleetBridge(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, bridge.request_stop)
    await bridge.run()


def format_status(s: dict[str, Any]) -> str:
    box = s.get("outbox", {})
    lines = [f"bridge {s.get('device_id', '?')} -> {s.get('broker', '?')}: {s.get('state', '?')}"]
    if s.get("saved_at"):
        lines[0] += f" (as of {time.time() - s['saved_at']:.0f} s ago)"
    if s.get("next_retry_at"):
        lines.append(f"  next attempt in {max(0.0, s['next_retry_at'] - time.time()):.1f} s")
    if s.get("last_error"):
        lines.append(f"  last error: {s['last_error']}")
    lines.append(
        f"  connects {s.get('connects', 0)}, published {s.get('published', 0)}, "
        f"in flight {s.get('inflight', 0)}, downlinked {s.get('downlinked', 0)}, "
        f"loops prevented {s.get('loops_prevented', 0)}, refused {s.get('refused', {})}"
    )
    lines.append(
        f"  outbox {box.get('path')}: {box.get('messages', 0)} messages, "
        f"{box.get('bytes', 0)} bytes, last seq {box.get('last_seq', 0)}, "
        f"dropped {box.get('dropped_total', 0)} ({box.get('dropped_unreported', 0)} not reported)"
    )
    return "\n".join(lines)
