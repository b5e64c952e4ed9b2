"""The backend's view of a fleet, sans I/O: broker messages in, one record per device out.

Rules
-----
- Fed every message under ``<prefix>/`` (retained ones first, as the broker
  sends them on subscribe); it keeps, per device: presence (``status``),
  the last message of each topic (``SYSTEM_STATE`` is the one shown), the
  highest sequence number, and how many numbers were skipped (gaps) or
  seen again (duplicates, which QoS 1 allows).
- Bounded: at most ``max_devices`` devices and ``max_topics`` topics per
  device are kept; more are counted in ``ignored``. Text from devices is
  kept as is; whoever shows it escapes it (:func:`smdbus._escape.printable`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from smdbus.fleet._topics import Envelope, decode_envelope, split_topic


@dataclass
class DeviceView:
    device: str
    status: str = "unknown"
    last: dict[str, bytes] = field(default_factory=dict)
    """topic rest (``SYSTEM_STATE``, ``NETWORK/cpd``) -> the body last seen."""
    last_seq: int = 0
    gaps: int = 0
    duplicates: int = 0
    dropped_reported: int = 0

    @property
    def state(self) -> str | None:
        body = self.last.get("SYSTEM_STATE")
        return None if body is None else body.decode(errors="replace")


class FleetView:
    def __init__(self, prefix: str, max_devices: int = 100_000, max_topics: int = 64) -> None:
        self.prefix = prefix
        self.max_devices, self.max_topics = max_devices, max_topics
        self.devices: dict[str, DeviceView] = {}
        self.ignored = 0

    def apply(self, topic: str, payload: bytes) -> tuple[DeviceView, str, Envelope | None] | None:
        """Take one broker message; (device, topic rest, envelope or None), or None if ignored."""
        where = split_topic(self.prefix, topic)
        if where is None:
            self.ignored += 1
            return None
        device, rest = where
        view = self.devices.get(device)
        if view is None:
            if len(self.devices) >= self.max_devices:
                self.ignored += 1
                return None
            view = self.devices[device] = DeviceView(device)
        if rest == "status":
            view.status = payload.decode(errors="replace")[:32]
            return view, rest, None
        if rest.startswith("cmd/"):
            return view, rest, None
        env: Envelope | None = None
        with contextlib.suppress(ValueError):
            env = decode_envelope(payload)
        if rest == "dropped":
            return view, rest, env
        if env is not None:
            if env.seq <= view.last_seq:
                view.duplicates += 1
            else:
                if view.last_seq and env.seq > view.last_seq + 1:
                    view.gaps += env.seq - view.last_seq - 1
                view.last_seq = env.seq
        if rest in view.last or len(view.last) < self.max_topics:
            view.last[rest] = env.body if env is not None else payload
        else:
            self.ignored += 1
        return view, rest, env
