"""The ``smd`` command: a table of subcommands, each in its own module.

Every subcommand lives in ``smdbus.commands._<module>`` and exposes
``configure(parser)`` and ``run(args) -> int``. Modules are imported only
when their command runs, so ``smd send`` does not pay for the daemon's network side.

Rules
-----
- **Ctrl-C at any moment exits 130, without a traceback.** :func:`main`
  first replaces SIGINT's handler with a quiet exit, before argparse,
  logging or any subcommand is imported (``import smdbus`` itself imports
  nothing). Once the command is about to run, a handler that raises
  ``KeyboardInterrupt`` once (and ignores every later SIGINT) takes over;
  the commands on asyncio run through :func:`smdbus._aiorun.run`, where the
  first SIGINT cancels the task so that it closes its sockets, and the later
  ones change nothing while the loop closes. The ``KeyboardInterrupt`` then
  becomes status 130, and a Ctrl-C held down cannot interrupt the way out
  (``asyncio.run`` alone would raise in its own shutdown). The servers
  (``smd daemon``, ``smd proxy``) catch SIGINT themselves once serving and
  stop cleanly with 0, as for SIGTERM.
- **Errors are one line** saying what to do (:mod:`smdbus.commands._failure`).
  A connection error a subcommand lets through is explained here, status 1.
- **Logging is set up when the command's modules use it** (they import
  ``logging`` when loaded) or ``-v`` is given; the one-shot tools
  (``send``, ``state``, ``peers``) import neither it nor asyncio.
- **A one-shot tool's start-up is not garbage-collected** (``send``,
  ``state``, ``peers``, run as the process's own command): the cyclic
  collector is off while the parser and the modules load, and what they made
  is frozen (:func:`gc.freeze`) before the command runs, which then collects
  as usual. Modules, classes and the parser live until exit anyway; walking
  them in collections during the imports and again in the interpreter's
  final collections at exit was 3-4 ms of ``smd send``'s ~25 ms
  (docs/performance.md). A process that calls :func:`main` with ``argv``
  (a test) keeps its collector as it was.
- **A closed stdout is not an error**: ``smd monitor | head`` ends quietly
  with 0 when ``head`` has read enough.
- Exit statuses: 0 done, 1 failed (no proxy, ...), 2 bad arguments or
  config, 130 interrupted; ``smd cpd`` adds its own (see its help).
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing before SIGINT is ours
if TYPE_CHECKING:
    import argparse
    import signal as _signal
    from collections.abc import Sequence
    from typing import Any, NoReturn
else:
    import _signal  # signal's C half, loaded by the interpreter already (signal.py imports enum)

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "a short live demonstration of the in-process bus"),
    "proxy": ("proxy", "run the cross-process bus proxy on a Unix socket"),
    "monitor": ("monitor", "print the messages on the proxy's bus, as sent"),
    "send": ("send", "send one message through the proxy"),
    "peers": ("peers", "list the proxy's connections"),
    "state": ("state", "print the system state (--watch: each change)"),
    "button-replay": ("button_replay", "replay a press pattern through the classifier"),
    "buttons": ("buttons", "classify real buttons (evdev, GPIO) live"),
    "routes": ("routes", "print the routing-table cache"),
    "cpd": ("cpd", "run one captive portal detection check"),
    "daemon": ("daemon", "the device daemon: proxy, boot states, buttons, network"),
    "bridge": ("bridge", "bridge the bus to an MQTT broker (--status: how it is doing)"),
    "fleet": ("fleet", "the devices on an MQTT broker; monitor; send a command down"),
    "web-url": ("web_url", "print the address (with its token) of the daemon's web view"),
}

EXAMPLES = (
    "smd daemon --live                     the device daemon, watching its bus",
    "smd monitor --class NETWORK           every NETWORK message, as sent",
    "smd send INTERACTION '{\"hello\":1}'    publish one message",
    "smd state --watch                     the system state, then each change",
    "smd peers                             who is connected, with counters",
)

INTERRUPTED = 130

ONE_SHOT = frozenset({"send", "state", "peers"})
"""Commands that start, do one thing and exit: their start-up is not garbage-collected."""

NO_ASYNCIO_TLS = frozenset({"daemon", "proxy"})
"""Commands that run on asyncio and need none of its TLS: asyncio is imported for them without
``ssl`` (4 MiB less; :mod:`smdbus._nossl`). The daemon's CPD does https over memory BIOs."""


def _interrupted(signum: int, frame: object) -> NoReturn:
    """SIGINT before the command runs: nothing to clean up yet, so leave at once."""
    os._exit(INTERRUPTED)


def _interrupt_once(signum: int, frame: object) -> NoReturn:
    """SIGINT while the command runs: ``KeyboardInterrupt`` (status 130), and only once.

    The handler ignores SIGINT before it raises, so a second Ctrl-C cannot land in the
    ``except``/``finally`` that turns the first into the exit status.
    """
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    raise KeyboardInterrupt


def _load(name: str) -> Any:
    if name in NO_ASYNCIO_TLS:
        from smdbus._nossl import import_asyncio_without_ssl

        import_asyncio_without_ssl()
    module, _ = COMMANDS[name]
    __import__(f"smdbus.commands._{module}")  # importlib.import_module, without importlib
    return sys.modules[f"smdbus.commands._{module}"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smdbus")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _width() -> int:
    """The help's width, as argparse finds it (shutil.get_terminal_size, less 2)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


def build_parser(
    only: str | None = None, *, every: bool = False, alone: bool = False
) -> argparse.ArgumentParser:
    """The parser; only the subcommand ``only`` (or, with ``every``, all) is configured.

    Configuring a subcommand imports its module; ``every`` is for the man
    page and the completions (:mod:`smdbus._clidoc`). With ``alone`` the
    other subcommands are left out altogether: for a command line that names
    ``only`` before anything the top level would read but ``-v``
    (:func:`_alone`), where the parser never reaches them.
    """
    import argparse

    from smdbus.commands import examples

    class Parser(argparse.ArgumentParser):
        def _get_formatter(self) -> argparse.HelpFormatter:
            """Sized without shutil: argparse makes one to check each option's metavar, and
            shutil's import (bz2, lzma) is a tenth of a one-shot tool's time."""
            return self.formatter_class(prog=self.prog, width=_width())  # type: ignore[call-arg]

        def error(self, message: str) -> NoReturn:
            """One line: what is wrong, and where the help is (not the whole usage)."""
            self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    class Version(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
            print(f"smd (smdbus) {_version()}")
            parser.exit()

    parser = Parser(
        prog="smd",
        description="smdbus: a system message bus for Linux devices (libwebsockets' lws_smd)",
    )
    verbose_help = "more logging (-vv: debug)"
    parser.add_argument("-v", "--verbose", action="count", default=0, help=verbose_help)
    parser.add_argument("--version", action=Version, nargs=0, help="print the version and exit")
    examples(parser, *EXAMPLES)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        if alone and name != only:
            continue
        p = sub.add_parser(name, help=summary, description=summary)
        # -v after the subcommand too (its own dest: the subparser would overwrite ours)
        p.add_argument(
            "-v", "--verbose", dest="verbose_after", action="count", default=0, help=verbose_help
        )
        if every or name == only:
            _load(name).configure(p)
    return parser


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has gone (``| head`` is done)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    previous = _signal.signal(_signal.SIGINT, _interrupted)
    leaving = _signal.SIG_IGN if argv is None else previous
    try:
        try:
            return _main(list(sys.argv[1:] if argv is None else argv), own_process=argv is None)
        finally:
            # Exiting either way: a late Ctrl-C must not print a traceback now.
            _signal.signal(_signal.SIGINT, leaving)
    except KeyboardInterrupt:
        # The command's, or a second Ctrl-C that landed before the line above ran.
        _signal.signal(_signal.SIGINT, leaving)
        return INTERRUPTED


def _alone(args_list: list[str], chosen: str | None) -> bool:
    """True when nothing but ``-v``/``--verbose`` comes before the subcommand ``chosen``.

    The top-level parser then reads those flags and hands the rest to that
    subcommand's parser: the others' parsers would never be used, and making
    them (13 ``ArgumentParser`` objects, 40 gettext lookups) is 2 ms, a tenth of
    ``smd send``'s start-up beyond Python's own. Anything else before the
    command (``--help``, an abbreviation, a mistake) gets the whole parser, so
    help and errors that list the subcommands list them all.
    """
    if chosen is None:
        return False
    for arg in args_list:
        if arg == chosen:
            return True
        if arg != "--verbose" and not (len(arg) > 1 and arg == "-" + "v" * (len(arg) - 1)):
            return False
    return False


def _main(args_list: list[str], *, own_process: bool = False) -> int:
    chosen = next((a for a in args_list if a in COMMANDS), None)
    one_shot = own_process and chosen in ONE_SHOT
    if one_shot:
        gc.disable()  # until the command runs (the module's rules)
    parser = build_parser(chosen, alone=_alone(args_list, chosen))
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    args.verbose += args.verbose_after  # one count, wherever the -v were given
    command = _load(args.command)
    if args.verbose or "logging" in sys.modules:  # a one-shot tool logs nothing: 10 ms less
        from smdbus._logsetup import setup_logging

        setup_logging(args.verbose)
    if one_shot:
        gc.freeze()
        gc.enable()
    _signal.signal(_signal.SIGINT, _interrupt_once)
    try:
        result: int = command.run(args)
    except BrokenPipeError:
        if not _stdout_gone():
            raise
        _silence_stdout()
        return 0
    except ConnectionError as exc:
        from smdbus.commands import connect_failure

        address = getattr(args, "socket", None) or "@proxy.ss.lws"
        print(f"smd {args.command}: {connect_failure(exc, address)}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
