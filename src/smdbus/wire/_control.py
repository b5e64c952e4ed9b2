"""Our own additions to the wire, which C peers never see: the proxy's mark and ``_smdbus_ctl``.

Both ends import this module; nothing else spells these bytes.

Rules:

- **The mark.** Our proxy's CREATE_RESULT carries the rideshare text
  :data:`PROXY_MARK` (``,smdbus``) where the C proxy sends ``,(null)``: the
  same shape and length, which the C client takes as it takes the C proxy's.
  A client that finds the mark knows its peer batches safely and answers on
  the control stream; a client that does not find it must treat the peer as
  a C proxy (see ``docs/client.md``: one frame per write, paced).
- **The control stream.** A connection whose STREAMTYPE names
  :data:`CONTROL_STREAMTYPE` is not an SMD participant. Its TX_PAYLOADs are
  queries, one compact JSON object each (``{"op": ...}``, class 0); every
  reply is one RX_PAYLOAD of class 0 whose body is one JSON object. C
  clients only ever ask for ``_lws_smd``, so they never meet it.
- **Interest.** ``{"op": "watch"}`` subscribes the connection to the proxy's
  *union mask*: the classes somebody on the proxy's bus listens to (local
  participants and every ``_lws_smd`` connection, the asker's own stream
  included). The proxy answers ``{"interest": mask}`` at once and again on
  every change, for as long as the control connection stays open. Where its
  policy refuses the asker some classes, the reply says which:
  ``{"interest": mask, "denied": mask}`` (:mod:`smdbus.policy`).
- **Describing.** ``{"op": "describe", "label": text}`` attaches a short
  label (at most :data:`MAX_LABEL` characters; ``null`` clears it) to the
  asker's own ``_lws_smd`` connections: those whose SO_PEERCRED pid and uid
  are the control connection's (``"id": N`` narrows it to connection N,
  which must be one of them). The label lives as long as the connection it
  describes and shows in ``smd peers``; the proxy answers
  ``{"described": [ids], "end": true}``. A process can label nothing but its
  own connections, so ``smd peers`` can trust whose words a label is.
- **Monitor.** ``{"op": "monitor", "mask": M}`` streams every message of the
  classes in ``M`` that the asker may receive, with its sender, for as long
  as the connection stays open: first ``{"monitor": mask}`` (the classes it
  gets), then one ``{"msg": {"cls", "ts", "hex", "from"}}`` per message,
  ``from`` being ``{"id", "pid", "uid", "comm"}`` of the publishing
  connection, ``"local"`` (sent inside the proxy's process) or
  ``"unknown"`` (queued before its class was watched). See
  :mod:`smdbus.proxy._monitor`; the C proxy refuses this stream.
"""

from __future__ import annotations

import json

from smdbus.wire._events import ConnState, ConnStateCode, CreateResult
from smdbus.wire._frames import encode_all

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (smd send loads this)
if TYPE_CHECKING:
    from typing import Any

CONTROL_STREAMTYPE = "_smdbus_ctl"
"""Our own streamtype on the proxy's socket, for tools and for interest."""

PROXY_MARK = b",smdbus"
"""CREATE_RESULT rideshare text of our proxy (the C proxy's is ``,(null)``)."""

GREETING_EVENTS = (
    CreateResult(0, rideshare=PROXY_MARK),
    ConnState(ConnStateCode.CREATING),
    ConnState(ConnStateCode.CONNECTING),
    ConnState(ConnStateCode.CONNECTED),
)
"""Our proxy's answer to a STREAMTYPE it accepts: CREATE_RESULT ok with the mark, then
CONNSTATE CREATING, CONNECTING, CONNECTED (the C client needs that order)."""
GREETING = encode_all(GREETING_EVENTS)
""":data:`GREETING_EVENTS` as bytes (39)."""

CONTROL_MAX_PAYLOAD = 0xFFFF - 32
"""Largest reply payload on the control stream (the frame's len field is a u16)."""

WATCH_QUERY = b'{"op":"watch"}'
"""Ask for the proxy's union mask, now and on every change."""


MAX_LABEL = 120
"""Characters of a connection's label at most (``describe``)."""


def describe_query(label: str | None, conn_id: int | None = None) -> bytes:
    """The query that labels the asker's own connections (all of them, or ``conn_id``)."""
    query: dict[str, Any] = {"op": "describe", "label": label}
    if conn_id is not None:
        query["id"] = conn_id
    return control_reply(query)


def monitor_query(mask: int) -> bytes:
    """Ask for every message of ``mask`` (that the asker may receive), with its sender."""
    return control_reply({"op": "monitor", "mask": mask})


def is_our_proxy(rideshare: bytes) -> bool:
    """Whether a CREATE_RESULT's rideshare text is our proxy's mark."""
    return rideshare == PROXY_MARK


def control_reply(obj: dict[str, Any]) -> bytes:
    """One control reply body (compact JSON)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def interest_reply(mask: int, denied: int = 0) -> bytes:
    """The body announcing the proxy's union mask, and the classes the asker may not send."""
    return control_reply({"interest": mask, "denied": denied} if denied else {"interest": mask})


def parse_interest(body: bytes) -> int | None:
    """The mask in an interest reply, or None for any other (or malformed) body."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    mask = obj.get("interest") if isinstance(obj, dict) else None
    if type(mask) is not int or not 0 <= mask < 1 << 64:
        return None
    return mask


def parse_denied(body: bytes) -> int:
    """The classes an interest reply says the asker may not send (0: none, or not said)."""
    try:
        obj = json.loads(body)
    except ValueError:
        return 0
    denied = obj.get("denied") if isinstance(obj, dict) else None
    return denied if type(denied) is int and 0 <= denied < 1 << 64 else 0
