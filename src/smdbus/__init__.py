"""smdbus: a system message bus for Linux devices, faithful to libwebsockets' lws_smd.

The public API lives here; modules are named from the domain (bus, classes,
wire, proxy, client, system, button, net).
"""

from smdbus.bus import MAX_PAYLOAD, Bus, ClassStats, Participant, ParticipantInfo
from smdbus.classes import ALL_CLASSES, Class, class_names, format_mask, parse_mask, user_class
from smdbus.client import (
    BufferFull,
    Client,
    ClientClosed,
    Message,
    ProxyUnavailable,
    ThreadedClient,
    connect,
    connect_threaded,
)
from smdbus.errors import PayloadTooLarge, QueueFull, SmdError
from smdbus.proxy import Proxy, ProxySettings

__all__ = [
    "ALL_CLASSES",
    "MAX_PAYLOAD",
    "BufferFull",
    "Bus",
    "Class",
    "ClassStats",
    "Client",
    "ClientClosed",
    "Message",
    "Participant",
    "ParticipantInfo",
    "PayloadTooLarge",
    "Proxy",
    "ProxySettings",
    "ProxyUnavailable",
    "QueueFull",
    "SmdError",
    "ThreadedClient",
    "class_names",
    "connect",
    "connect_threaded",
    "format_mask",
    "parse_mask",
    "user_class",
]
