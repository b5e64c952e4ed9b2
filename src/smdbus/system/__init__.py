"""lws_system on the bus: boot states and notifiers, attach, blobs, platform ops.

See docs/system.md for the design and the differences from libwebsockets.

The names are imported on first use (PEP 562): ``smd state`` reads
:class:`State` and the query's helpers without the attach queue, the blobs or
asyncio.
"""

from __future__ import annotations

from smdbus._lazy import lazy_names

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from smdbus.scheduler import LoopScheduler, ManualScheduler, Scheduler, Timer, sleep
    from smdbus.system._attach import AttachCallback, AttachClosed, AttachItem, AttachQueue
    from smdbus.system._blobs import (
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
    from smdbus.system._context import SystemContext
    from smdbus.system._ops import OTA_PERIODIC_CHECK_SECS, MissingOp, OtaOps, SystemOps, TrustQuery
    from smdbus.system._query import (
        QUERY,
        StateReport,
        StateResponder,
        is_query,
        parse_state_message,
    )
    from smdbus.system._state import (
        JUMPS,
        IllegalTransition,
        ModalRequest,
        Move,
        Notifier,
        NotifierError,
        NotifyLink,
        ReentrantTransition,
        ShutdownError,
        StateError,
        StateManager,
    )
    from smdbus.system._states import State

_HOME = {
    "smdbus.system._attach": (
        "AttachCallback",
        "AttachClosed",
        "AttachItem",
        "AttachQueue",
    ),
    "smdbus.system._blobs": (
        "AUTH_REGISTRATION",
        "AUTH_TOKEN",
        "DEFAULT_NTP_SERVER",
        "MAX_HEAP_BLOB",
        "SECRET_TYPES",
        "SLOT_COUNT",
        "Blob",
        "BlobError",
        "Blobs",
        "BlobTooLarge",
        "BlobType",
    ),
    "smdbus.system._context": ("SystemContext",),
    "smdbus.system._ops": (
        "OTA_PERIODIC_CHECK_SECS",
        "MissingOp",
        "OtaOps",
        "SystemOps",
        "TrustQuery",
    ),
    "smdbus.system._query": (
        "QUERY",
        "StateReport",
        "StateResponder",
        "is_query",
        "parse_state_message",
    ),
    "smdbus.scheduler": (
        "LoopScheduler",
        "ManualScheduler",
        "Scheduler",
        "Timer",
        "sleep",
    ),
    "smdbus.system._states": ("State",),
    "smdbus.system._state": (
        "JUMPS",
        "IllegalTransition",
        "ModalRequest",
        "Move",
        "Notifier",
        "NotifierError",
        "NotifyLink",
        "ReentrantTransition",
        "ShutdownError",
        "StateError",
        "StateManager",
    ),
}

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
    "is_query",
    "parse_state_message",
    "sleep",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
