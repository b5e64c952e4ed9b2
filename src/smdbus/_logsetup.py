"""How the ``smd`` command's log lines look: on a terminal, and under systemd's journal.

Rules
-----
- Under systemd, stderr is a stream to journald, and systemd says so: it
  sets ``JOURNAL_STREAM=<dev>:<inode>`` to the device and inode of that
  stream (systemd.exec(5)). The variable is inherited by children whose
  stderr may be elsewhere, so it counts only when stderr's own ``st_dev`` and
  ``st_ino`` match it.
- To journald each line is an entry. It reads a ``<N>`` prefix as the
  syslog priority of that line (sd-daemon(3): ``<3>`` error, ``<4>``
  warning, ``<6>`` info, ``<7>`` debug) and stamps the time itself, so the
  lines carry the prefix and no timestamp of their own; every line of a
  multi-line record (a traceback) carries the prefix, so none is demoted.
- Elsewhere (a terminal, a file, a pipe) a line is
  ``time LEVEL logger: message``, as before.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

# Python level -> syslog priority (sd-daemon(3)): crit 2, err 3, warning 4, info 6, debug 7.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level (a level between two takes the lower one's)."""
    for level, prio in _PRIORITIES:
        if levelno >= level:
            return prio
    return 7


def journal_stream(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd named in ``JOURNAL_STREAM``."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, with ``<N>`` on every line of the record."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def setup_logging(
    verbose: int = 0,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Log WARNING and up (-v: INFO, -vv: DEBUG) to ``stream`` (stderr) in the right form.

    Adds one handler to the root logger, replacing the one an earlier call added
    (so a second call does not double the lines), and returns it.
    """
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    if journal_stream(out, environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "smdbus_setup", False):
            root.removeHandler(old)
    handler.smdbus_setup = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING - 10 * min(verbose, 2))
    return handler
