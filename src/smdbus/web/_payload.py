"""How a payload travels to the page: text the browser can show as it is, never as markup.

Rules
-----
- A payload is peer-supplied bytes. It goes to the page as a JSON string:
  valid UTF-8 as it is, other bytes as ``\\xNN``; control characters (C0,
  C1, DEL) and the bidirectional overrides (which can make text read
  differently from what it is) become ``\\uNNNN`` escapes, visible.
- The page puts text in the document with ``textContent`` only, so HTML or
  script in a payload is shown as characters (tests/test_web_browser.py).
- Other peer-supplied strings shown (a peer's command name, which any
  process sets for itself; a close reason quoting what a peer sent) go
  through :func:`visible` the same way.
- ``json`` says whether the payload parses as JSON (the page pretty-prints
  it then, still as text).
"""

from __future__ import annotations

import json
import re
from typing import Any

_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def visible(text: str) -> str:
    """``text`` with control and bidirectional-override characters as ``\\uNNNN``."""
    return _INVISIBLE.sub(_escape, text)


def render(payload: bytes) -> dict[str, Any]:
    """``{"text": ..., "json": bool, "size": n}`` for a payload."""
    text = payload.decode("utf-8", "backslashreplace")
    is_json = False
    if payload[:1] in (b"{", b"[", b'"') or payload[:1].isdigit():
        try:
            json.loads(payload)
            is_json = True
        except ValueError:
            pass
    return {"text": visible(text), "json": is_json, "size": len(payload)}
