"""Text a peer supplied, made safe to put on a terminal or in a log line.

A payload, a streamtype name or a state name comes from whoever connected.
Printed raw, its control characters and escape sequences would act on the
reader's terminal (clear it, move the cursor, retitle the window) and its
bidirectional overrides would reorder what is shown, so a line could say
something other than what was sent; in a log, a newline would start a line
of the peer's choosing. Every such character is shown as an escape instead
(``\\x1b``, ``\\t``, ``\\u202e``); everything else, non-ASCII letters
included, is kept.

Rules:

- Escaped is whatever ``str.isprintable`` refuses: C0 and C1 controls, DEL,
  line and paragraph separators, zero-width and bidirectional format
  characters, tag characters, non-ASCII spaces, unassigned code points. Bytes
  that are not UTF-8 come out as ``\\xNN``.
- Backslashes are kept, so escaping twice changes nothing (the proxy escapes a
  name into a close reason; ``smd peers`` escapes the reason again). The price:
  a peer can write a literal ``\\n`` that reads like an escaped newline; it
  still cannot end the line.
- ``limit`` bounds the length: past it the rest is counted, not shown, so one
  peer cannot make one log line arbitrarily long.
"""

from __future__ import annotations

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _shown(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str | bytes, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """``text`` with every unprintable character escaped (at most ``limit`` of it shown).

    ``keep_newlines`` keeps ``\\n`` as is (for text laid out on several lines
    on purpose, such as indented JSON).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    extra = len(text) - limit if limit is not None else 0
    if extra > 0:
        text = text[:limit]
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() or (keep_newlines and c == "\n") else _shown(c) for c in text
        )
    return f"{text}...(+{extra} chars)" if extra > 0 else text
