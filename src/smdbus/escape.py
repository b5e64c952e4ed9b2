"""Text a peer supplied, made safe to put on a terminal.

A payload, a streamtype name or a state name comes from whoever connected.
Printed raw, its control characters and escape sequences would act on the
reader's terminal (clear it, move the cursor, retitle the window) and its
bidirectional overrides would reorder what is shown, so a line could say
something other than what was sent. Every such character is shown as an
escape instead (``\\x1b``, ``\\t``, ``\\u202e``); everything else, non-ASCII
letters included, is kept.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 and C1 controls (ESC, CSI, newline, tab, ...)
    "\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"  # zero-width, separators, bidi controls
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _shown(match: re.Match[str]) -> str:
    c = match.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, zero-width and bidi character escaped.

    ``keep_newlines`` keeps ``\\n`` as is (for text laid out on several lines
    on purpose, such as indented JSON).
    """
    if keep_newlines:
        return _UNSAFE.sub(lambda m: m.group() if m.group() == "\n" else _shown(m), text)
    return _UNSAFE.sub(_shown, text)
