"""smdbus: a system message bus for Linux devices, faithful to libwebsockets' lws_smd.

The public API lives here; modules are named from the domain (bus, classes,
wire, proxy, client, system, button, net).
"""

from smdbus.bus import MAX_PAYLOAD, Bus, ClassStats, Participant, ParticipantInfo
from smdbus.classes import ALL_CLASSES, Class, class_names, format_mask, parse_mask, user_class
from smdbus.errors import PayloadTooLarge, QueueFull, SmdError

__all__ = [
    "ALL_CLASSES",
    "MAX_PAYLOAD",
    "Bus",
    "Class",
    "ClassStats",
    "Participant",
    "ParticipantInfo",
    "PayloadTooLarge",
    "QueueFull",
    "SmdError",
    "class_names",
    "format_mask",
    "parse_mask",
    "user_class",
]
