"""The fleet: a device's bus bridged to an MQTT broker, and the backend's view of the devices.

    cfg = parse_bridge_config(toml["bridge"], base=config_dir)
    bridge = FleetBridge(cfg)
    await bridge.run()

Up: ``<prefix>/<device-id>/<CLASS>`` (state classes retained); down:
``<prefix>/<device-id>/cmd/<CLASS>`` for an allow-list of classes, rate
limited; presence on ``<prefix>/<device-id>/status``. What goes up waits in
an on-disk outbox until the broker acknowledges it. See docs/fleet.md.

The sans-IO parts (config, topics, envelope, core decisions, outbox) are
stdlib only; :class:`FleetBridge` and :class:`FleetClient` need paho-mqtt
(the ``fleet`` extra) and are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smdbus._lazy import lazy_names
from smdbus.fleet._config import (
    BridgeConfig,
    BridgeConfigError,
    BrokerConfig,
    DownRule,
    check_device_id,
    check_prefix,
    parse_bridge_config,
    parse_broker_config,
    parse_broker_url,
)
from smdbus.fleet._core import BridgeCore, Downlink, Refused, Uplink
from smdbus.fleet._outbox import DropReport, Outbox, OutboxBusy, read_status
from smdbus.fleet._topics import Envelope, Topics, decode_envelope, encode_envelope, split_topic
from smdbus.fleet._view import DeviceView, FleetView

if TYPE_CHECKING:
    from smdbus.fleet._backend import FleetClient
    from smdbus.fleet._bridge import FleetBridge
    from smdbus.fleet._mqtt import LinkError

_HOME = {
    "smdbus.fleet._backend": ("FleetClient",),
    "smdbus.fleet._bridge": ("FleetBridge",),
    "smdbus.fleet._mqtt": ("LinkError",),
}


__all__ = [
    "BridgeConfig",
    "BridgeConfigError",
    "BridgeCore",
    "BrokerConfig",
    "DeviceView",
    "DownRule",
    "Downlink",
    "DropReport",
    "Envelope",
    "FleetBridge",
    "FleetClient",
    "FleetView",
    "LinkError",
    "Outbox",
    "OutboxBusy",
    "Refused",
    "Topics",
    "Uplink",
    "check_device_id",
    "check_prefix",
    "decode_envelope",
    "encode_envelope",
    "parse_bridge_config",
    "parse_broker_config",
    "parse_broker_url",
    "read_status",
    "split_topic",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
