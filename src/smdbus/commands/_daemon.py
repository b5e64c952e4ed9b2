"""``smd daemon``: the device daemon (the bus, the proxy, boot states, buttons, network).

    smd daemon                        # the embedded defaults, as a normal user
    smd daemon --config /etc/smd/daemon.toml
    smd daemon --live                 # watch the bus in this terminal
    smd daemon --web                  # and in a browser: smd web-url (docs/web.md)
    smd daemon --check --config F     # validate the config and policy, then exit
    smd daemon --print-config         # every key with its default

Exit status: 0 after SIGTERM/SIGINT, 2 for a bad config or policy (nothing
started), 1 when the bus cannot be served (the socket is taken, ...).
See docs/user-guide.md and docs/configuration.md.

Signals are caught first (:mod:`smdbus.daemon._signals`), before the config
is read and before the daemon's heavier modules (asyncio, the network side) are
imported, which is why ``app`` and ``config`` are imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from smdbus.commands import _loop
from smdbus.commands._failure import strip_errno
from smdbus.commands._options import examples
from smdbus.daemon import BOOT_STATES, LiveView, PendingSignals
from smdbus.net import CPD_LOGGER, CPD_RESULT_LOGGER
from smdbus.system import State
from smdbus.wire import DEFAULT_ADDRESS, format_address

if TYPE_CHECKING:
    from smdbus.daemon import Daemon, DaemonConfig


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", metavar="FILE", default=None, help="TOML config (default: built-in)"
    )
    parser.add_argument("--live", action="store_true", help="show the bus live in this terminal")
    parser.add_argument("--web", action="store_true", help="serve the live web view ([web])")
    parser.add_argument(
        "--check", action="store_true", help="validate the config and policy, then exit"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print every config key with its default"
    )
    parser.add_argument(
        "--ready-at",
        choices=BOOT_STATES[1:],
        default="OPERATIONAL",
        metavar="STATE",
        help="tell systemd READY=1 at this boot state (default OPERATIONAL; "
        "the shipped unit: IFACE_COLDPLUG, so a boot without a network does not hold "
        "systemctl start)",
    )
    _loop.add_loop(parser)
    examples(
        parser,
        "smd daemon --live --config deploy/demo.toml   watch a device boot, in this terminal",
        "smd daemon --web                             and in a browser: smd web-url",
        "smd daemon --check --config /etc/smd/daemon.toml",
        "smd daemon --print-config > daemon.toml      every key, with its default",
    )


def run(args: argparse.Namespace) -> int:
    signals = PendingSignals()
    if not (args.check or args.print_config):
        signals.catch()  # first: from here on a SIGHUP cannot kill the daemon
    from smdbus.daemon import (
        DEFAULT_TOML,
        Daemon,
        DaemonConfigError,
        DaemonError,
        load_config,
        prepare,
    )

    if args.print_config:
        sys.stdout.write(DEFAULT_TOML)
        return 0
    try:
        config = load_config(args.config)
        if args.web:
            config = dataclasses.replace(config, web=dataclasses.replace(config.web, enabled=True))
        prepared = prepare(config)
        factory, loop_name = _loop.loop_factory(args.loop)
    except DaemonConfigError as e:
        print(f"smd daemon: bad config: {e}", file=sys.stderr)
        return 2
    except _loop.LoopUnavailable as e:
        print(f"smd daemon: {e}", file=sys.stderr)
        return 2
    except DaemonError as e:
        print(f"smd daemon: {strip_errno(str(e))}", file=sys.stderr)
        return e.status
    if args.check:
        policy = prepared.policy
        print(f"smd daemon: {config.source}: ok (policy {policy.source}, release {policy.release})")
        return 0
    _set_log_level(config, args.verbose)
    logging.getLogger("smdbus.daemon").debug("event loop: %s", loop_name)
    view: LiveView | None = None
    if args.live:
        view = _make_view(config)
    daemon = Daemon(
        prepared,
        ready_state=State[args.ready_at],
        on_message=view.message if view is not None else None,
        on_note=view.note if view is not None else None,
        on_state=view.state if view is not None else None,
        signals=signals,
    )
    if view is not None:
        view.status = daemon.status
        _route_logs_to(view)
        view.banner(_banner(config, prepared.policy.source, prepared.policy.release))
    try:
        return _loop.run(_main(daemon, view), factory)
    except DaemonError as e:
        if view is not None:
            view.close()
        print(f"smd daemon: {strip_errno(str(e))}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 0


async def _main(daemon: Daemon, view: LiveView | None) -> int:
    ticker: asyncio.Task[None] | None = None
    if view is not None and view.tty:
        ticker = asyncio.get_running_loop().create_task(_tick(view))
    try:
        status = await daemon.run()
    finally:
        if ticker is not None:
            ticker.cancel()
        if view is not None:
            view.close()
    if view is not None:
        print(f"smd daemon: stopped ({daemon.exit_reason or 'done'})", flush=True)
    return status


async def _tick(view: LiveView) -> None:
    while True:
        await asyncio.sleep(1.0)
        view.refresh()


def _set_log_level(config: DaemonConfig, verbose: int) -> None:
    level = logging.getLevelName(config.log.level.upper())
    if verbose:
        level = min(level, logging.WARNING - 10 * min(verbose, 2))
    logging.getLogger("smdbus").setLevel(level)


class _ViewHandler(logging.Handler):
    """Log records as notes on the live view (so they do not tear the footer)."""

    def __init__(self, view: LiveView) -> None:
        super().__init__(logging.DEBUG)
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        cpd = record.name == CPD_LOGGER or record.name.startswith(CPD_LOGGER + ".")
        if record.levelno < logging.WARNING and not cpd:
            return
        if record.name.startswith("smdbus.daemon") and record.levelno < logging.ERROR:
            return  # the daemon's notes already went to the view
        if cpd and record.levelno < logging.WARNING:
            if record.name == CPD_RESULT_LOGGER:
                return  # the result itself: the daemon's note says it, with what follows
            try:
                self.view.note("info", record.getMessage())
            except Exception:
                self.handleError(record)
            return
        try:
            level = logging.getLevelName(record.levelno).lower()
            self.view.note(level, f"{record.name}: {record.getMessage()}")
        except Exception:
            self.handleError(record)


def _route_logs_to(view: LiveView) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.StreamHandler):
            root.removeHandler(h)
    root.addHandler(_ViewHandler(view))
    logging.getLogger(CPD_LOGGER).setLevel(logging.INFO)


def smd_command() -> str:
    """How the user should type ``smd`` in another terminal (as this one was started)."""
    argv0 = sys.argv[0] if sys.argv else "smd"
    if argv0.endswith("__main__.py"):
        return f"{sys.executable} -m smdbus"
    on_path = shutil.which("smd")
    if on_path and os.path.realpath(on_path) == os.path.realpath(argv0):
        return "smd"
    path = Path(argv0)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve()) if path.exists() else "smd"


def _make_view(config: DaemonConfig) -> LiveView:
    smd = smd_command()
    address = config.bus.socket
    sock = "" if address == DEFAULT_ADDRESS else f" --socket {format_address(address)}"
    hints = [
        f"In another terminal:  {smd} monitor{sock}   ·   "
        f"{smd} send{sock} INTERACTION '{{\"hello\":1}}'",
        f"Also: {smd} state{sock} · {smd} peers{sock} · kill -HUP {os.getpid()} reloads "
        "the policy · Ctrl-C stops",
    ]
    return LiveView(sys.stdout, hints=hints)


def _banner(config: DaemonConfig, policy_source: str, release: str | None) -> list[str]:
    g = config.gates
    gates = []
    if g.coldplug:
        gates.append("coldplug")
    if g.dhcp:
        gates.append(f"dhcp({g.dhcp_timeout:g}s)" if g.dhcp_timeout else "dhcp")
    if g.cpd != "off" and config.cpd.enabled:
        gates.append(f"cpd({g.cpd})")
    if g.time:
        gates.append("time")
    if g.policy:
        gates.append("policy")
    return [
        f"smd daemon · pid {os.getpid()} · bus on {format_address(config.bus.socket)}",
        f"config {config.source} · policy {policy_source} (release {release}) · "
        f"gates: {' '.join(gates) or 'none'}",
    ]
