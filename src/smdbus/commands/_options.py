"""What the subcommands share on their command line: argument types, the proxy address, examples.

Rules
-----
- A value the command cannot use is refused by the parser, with one line
  naming the option and the value (``--count 0``, a group that does not
  exist), before anything connects or starts.
- Every subcommand's ``--help`` ends with examples; the man page and the
  shell completions are generated from the same parser (:mod:`smdbus._clidoc`),
  so what ``--help`` says is what the manual says.
"""

from __future__ import annotations

import argparse

from smdbus.wire import DEFAULT_ADDRESS, format_address, parse_address


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of messages, of connections)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return value


def address(text: str) -> str:
    """A proxy address in any spelling (``@name``, ``+@name``, ``/path``), in kernel form."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_socket(parser: argparse.ArgumentParser, what: str = "proxy address") -> None:
    """The ``--socket ADDR`` option every client command has."""
    parser.add_argument(
        "--socket",
        type=address,
        default=DEFAULT_ADDRESS,
        metavar="ADDR",
        help=f"{what}: @name (abstract), +@name (C spelling) or /path "
        f"(default {format_address(DEFAULT_ADDRESS)})",
    )


def examples(parser: argparse.ArgumentParser, *lines: str) -> None:
    """End ``--help`` with example command lines, kept as written (one per line)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "\n".join(["examples:", *(f"  {line}" for line in lines)])
