"""Server-Sent Events: the bytes of an event, and where a reconnecting reader resumes.

Rules
-----
- Message events carry an id ``<epoch>-<n>``: ``n`` is the message's id in
  the ring, ``epoch`` is drawn at each daemon start. A browser sends the
  last id it saw back as ``Last-Event-ID`` when it reconnects; the same
  epoch resumes after ``n``, another epoch (the daemon restarted, its ring
  is new) starts afresh, as does a malformed id.
- Other events (snapshots) carry no id, so they do not move the browser's
  resume point.
- Data is split at line ends into ``data:`` lines (SSE has no escaping);
  JSON text from :func:`json.dumps` never holds a raw line end anyway.
"""

from __future__ import annotations

import re

_ID = re.compile(r"([0-9a-f]{1,32})-([0-9]{1,19})")


def event(data: str, *, name: str | None = None, ident: str | None = None) -> bytes:
    """One event, encoded."""
    parts = []
    if name is not None:
        parts.append(f"event: {name}\n")
    if ident is not None:
        parts.append(f"id: {ident}\n")
    for line in data.splitlines() or [""]:
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def retry(ms: int) -> bytes:
    """Tell the browser how long to wait before reconnecting."""
    return f"retry: {ms}\n\n".encode()


def comment(text: str = "") -> bytes:
    """A keep-alive line (ignored by readers)."""
    return f": {text}\n\n".encode()


def resume_after(last_event_id: str | None, epoch: str) -> int | None:
    """The message id to resume after, or None (a fresh start) for another epoch or junk."""
    if not last_event_id:
        return None
    m = _ID.fullmatch(last_event_id.strip())
    if m is None or m.group(1) != epoch:
        return None
    return int(m.group(2))
