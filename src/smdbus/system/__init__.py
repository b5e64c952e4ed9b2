"""lws_system on the bus: boot states and notifiers, attach, blobs, platform ops.

See docs/system.md for the design and the differences from libwebsockets.
"""

from smdbus.system.attach import AttachCallback, AttachClosed, AttachItem, AttachQueue
from smdbus.system.blobs import (
    AUTH_REGISTRATION,
    AUTH_TOKEN,
    DEFAULT_NTP_SERVER,
    MAX_HEAP_BLOB,
    SECRET_TYPES,
    SLOT_COUNT,
    Blob,
    BlobError,
    Blobs,
    BlobTooLarge,
    BlobType,
)
from smdbus.system.context import SystemContext
from smdbus.system.ops import OTA_PERIODIC_CHECK_SECS, MissingOp, OtaOps, SystemOps, TrustQuery
from smdbus.system.query import QUERY, StateReport, StateResponder, parse_state_message
from smdbus.system.scheduler import LoopScheduler, ManualScheduler, Scheduler, Timer
from smdbus.system.state import (
    JUMPS,
    IllegalTransition,
    ModalRequest,
    Move,
    Notifier,
    NotifierError,
    NotifyLink,
    ReentrantTransition,
    ShutdownError,
    State,
    StateError,
    StateManager,
)

__all__ = [
    "AUTH_REGISTRATION",
    "AUTH_TOKEN",
    "DEFAULT_NTP_SERVER",
    "JUMPS",
    "MAX_HEAP_BLOB",
    "OTA_PERIODIC_CHECK_SECS",
    "QUERY",
    "SECRET_TYPES",
    "SLOT_COUNT",
    "AttachCallback",
    "AttachClosed",
    "AttachItem",
    "AttachQueue",
    "Blob",
    "BlobError",
    "BlobTooLarge",
    "BlobType",
    "Blobs",
    "IllegalTransition",
    "LoopScheduler",
    "ManualScheduler",
    "MissingOp",
    "ModalRequest",
    "Move",
    "Notifier",
    "NotifierError",
    "NotifyLink",
    "OtaOps",
    "ReentrantTransition",
    "Scheduler",
    "ShutdownError",
    "State",
    "StateError",
    "StateManager",
    "StateReport",
    "StateResponder",
    "SystemContext",
    "SystemOps",
    "Timer",
    "TrustQuery",
    "parse_state_message",
]
