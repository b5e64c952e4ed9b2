"""Topics and the uplink envelope: how a bus message looks on the broker, and back.

Rules
-----
- Up: ``<prefix>/<device-id>/<CLASS>``, where ``CLASS`` is the class's name
  as :func:`smdbus.classes.class_names` spells it (``SYSTEM_STATE``,
  ``USER0``). A message whose class is a *state type* (``NETWORK:cpd``:
  NETWORK messages whose JSON ``type`` is ``cpd``) goes to
  ``<prefix>/<device-id>/<CLASS>/<type>`` instead, retained, so that one
  topic holds the last result and other NETWORK messages do not overwrite it.
- Down: ``<prefix>/<device-id>/cmd/<CLASS>``; the payload is the message body
  as is (the backend sends what a peer on the bus would send).
- Presence: ``<prefix>/<device-id>/status``, retained ``online``/``offline``.
  Drop reports: ``<prefix>/<device-id>/dropped`` (JSON, QoS 1).
- A message with several class bits goes up once, under its lowest bit
  that is in the up mask (lws messages carry one bit; this keeps one topic
  per message).
- The envelope (up only) is one JSON object, built without re-encoding the
  body: ``{"seq":N,"origin":"dev","time":T,"data":<body>}`` when the body is
  JSON, ``"text":"..."`` when it is other UTF-8 text, ``"b64":"..."`` when
  it is binary. ``seq`` counts up per device, across restarts (the outbox
  keeps it), so a backend sees gaps and QoS 1 duplicates; ``origin`` is how
  a bridge recognises its own messages should they ever come back down.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from smdbus.classes import class_names, parse_mask

_KIND_DATA, _KIND_TEXT, _KIND_B64 = "data", "text", "b64"


@dataclass(frozen=True)
class Topics:
    """The topic names of one device under one prefix."""

    prefix: str
    device_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def dropped(self) -> str:
        return f"{self.base}/dropped"

    @property
    def commands(self) -> str:
        """The subscription for everything sent down to this device."""
        return f"{self.base}/cmd/+"

    def up(self, cls: int, kind: str | None = None) -> str:
        name = class_names(cls)[0]
        return f"{self.base}/{name}/{kind}" if kind else f"{self.base}/{name}"

    def down(self, cls: int) -> str:
        return f"{self.base}/cmd/{class_names(cls)[0]}"

    def down_class(self, topic: str) -> int | None:
        """The class a command topic names, or None when it is not one of ours."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        try:
            cls = parse_mask(topic[len(head) :])
        except ValueError:
            return None
        return cls if 0 < cls <= 0xFFFFFFFF and not cls & (cls - 1) else None


def split_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """``<prefix>/<device>/<rest>`` → (device, rest), for the backend's view."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    device, sep, rest = topic[len(head) :].partition("/")
    return (device, rest) if sep and device else None


def encode_envelope(seq: int, origin: str, time_s: float, body: bytes) -> bytes:
    """The JSON object sent up for one message (see the module rules)."""
    head = b'{"seq":%d,"origin":%s,"time":%.6f,' % (seq, json.dumps(origin).encode(), time_s)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return head + b'"b64":"' + base64.b64encode(body) + b'"}'
    try:
        json.loads(text)
    except ValueError:
        return head + b'"text":' + json.dumps(text).encode() + b"}"
    return head + b'"data":' + body + b"}"


@dataclass(frozen=True)
class Envelope:
    """A decoded uplink message."""

    seq: int
    origin: str
    time: float
    body: bytes


def decode_envelope(payload: bytes) -> Envelope:
    """Parse an envelope; ValueError when the payload is not one."""
    obj: Any = json.loads(payload)
    if not isinstance(obj, dict) or not isinstance(obj.get("seq"), int):
        raise ValueError("not an smd envelope (no integer seq)")
    origin = obj.get("origin")
    if not isinstance(origin, str):
        raise ValueError("not an smd envelope (no origin)")
    if _KIND_DATA in obj:
        body = json.dumps(obj[_KIND_DATA], separators=(",", ":")).encode()
    elif isinstance(obj.get(_KIND_TEXT), str):
        body = obj[_KIND_TEXT].encode()
    elif isinstance(obj.get(_KIND_B64), str):
        body = base64.b64decode(obj[_KIND_B64])
    else:
        raise ValueError("not an smd envelope (no data, text or b64)")
    return Envelope(obj["seq"], origin, float(obj.get("time", 0.0)), body)


def origin_of(payload: bytes) -> str | None:
    """The ``origin`` of a payload that looks like an envelope, else None (cheap check first)."""
    if not payload.startswith(b'{"seq":') or b'"origin":' not in payload:
        return None
    try:
        return decode_envelope(payload).origin
    except ValueError:
        return None
