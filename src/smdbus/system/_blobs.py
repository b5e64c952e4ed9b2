"""System blobs: small named binary objects the platform hands to the network code.

Tokens, the client certificate and key, the serial number, the NTP server:
things set once by platform code and read by whoever needs them (lws
``lws_system_blob_t``).

Rules
-----
- There are 10 blob types in 11 slots: AUTH has two (0: registration token,
  1: auth token), every other type one. Slot numbers outside a type's count
  are an error (C only checks the flat index, so ``AUTH`` slot 2 silently
  reads the client certificate; we refuse it).
- A blob is empty, *direct* (a reference to the caller's buffer, no copy:
  the caller must keep it alive and unchanged) or *heap* (copied chunks
  appended one after another, at most :data:`MAX_HEAP_BLOB` bytes in all).
  Appending to a direct blob is an error; :meth:`Blob.heap_empty` empties
  either kind (C frees the caller's buffer of a direct blob there by
  mistake; we only drop the reference).
- Reading past the end returns no bytes (C returns an error for a direct
  blob and nothing for a heap one; we pick "nothing" for both).
- Secret types (:data:`SECRET_TYPES`) never show their content in a repr or
  a log line; no blob logs its content at all, only sizes.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator

log = logging.getLogger("smdbus.system.blobs")

MAX_HEAP_BLOB = 2 * 1024 * 1024
"""Cap on a heap blob's total size, bytes (2 MiB)."""

DEFAULT_NTP_SERVER = b"pool.ntp.org"

Buffer = bytes | bytearray | memoryview


class BlobType(enum.IntEnum):
    """Blob types, numbered as lws numbers their first slot."""

    AUTH = 0
    CLIENT_CERT_DER = 2
    CLIENT_KEY_DER = 3
    DEVICE_SERIAL = 4
    DEVICE_FW_VERSION = 5
    DEVICE_TYPE = 6
    NTP_SERVER = 7
    MQTT_CLIENT_ID = 8
    MQTT_USERNAME = 9
    MQTT_PASSWORD = 10

    @property
    def slots(self) -> int:
        return SLOTS.get(self, 1)


SLOTS: dict[BlobType, int] = {BlobType.AUTH: 2}
"""Slot counts that are not 1."""

SLOT_COUNT = 11
"""Total slots (lws ``LWS_SYSBLOB_TYPE_COUNT``)."""

AUTH_REGISTRATION = 0
"""AUTH slot of the registration token."""
AUTH_TOKEN = 1
"""AUTH slot of the auth token."""

SECRET_TYPES = frozenset({BlobType.AUTH, BlobType.CLIENT_KEY_DER, BlobType.MQTT_PASSWORD})
"""Never shown. The client certificate is public (it is sent in every TLS
handshake), so it is not in this set; being binary, it is never previewed
either."""


class BlobError(Exception):
    """A blob was misused: wrong slot, wrong kind, too big, no single buffer."""


class BlobTooLarge(BlobError):
    """A heap append would pass the cap."""

    def __init__(self, blob: Blob, adding: int, limit: int) -> None:
        self.adding, self.limit = adding, limit
        super().__init__(
            f"blob {blob.label}: appending {adding} bytes to {blob.size} would pass "
            f"the {limit}-byte cap"
        )


class Blob:
    """One slot: empty, a direct reference, or a chain of copied chunks."""

    __slots__ = ("_chunks", "_direct", "slot", "type")

    def __init__(self, type: BlobType, slot: int = 0) -> None:
        self.type = type
        self.slot = slot
        self._direct: memoryview | None = None
        self._chunks: list[bytes] = []

    @property
    def label(self) -> str:
        return self.type.name if self.type.slots == 1 else f"{self.type.name}[{self.slot}]"

    @property
    def secret(self) -> bool:
        return self.type in SECRET_TYPES

    @property
    def is_direct(self) -> bool:
        return self._direct is not None

    @property
    def chunks(self) -> int:
        """Heap chunks held (0 for a direct or empty blob)."""
        return len(self._chunks)

    @property
    def size(self) -> int:
        if self._direct is not None:
            return self._direct.nbytes
        return sum(len(c) for c in self._chunks)

    def get_size(self) -> int:
        return self.size

    def direct_set(self, data: Buffer) -> None:
        """Refer to ``data`` without copying (replaces any content)."""
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        self._chunks = []
        self._direct = view.toreadonly()
        log.debug("blob %s: direct, %d bytes", self.label, view.nbytes)

    def heap_append(self, data: Buffer) -> None:
        """Copy ``data`` onto the end of a heap blob (an empty blob becomes one)."""
        if self._direct is not None:
            raise BlobError(
                f"blob {self.label} is direct (refers to the caller's buffer): "
                "heap_empty() it before appending"
            )
        chunk = bytes(data)
        if not chunk:
            return
        total = self.size
        if total + len(chunk) > MAX_HEAP_BLOB:
            raise BlobTooLarge(self, len(chunk), MAX_HEAP_BLOB)
        self._chunks.append(chunk)
        log.debug(
            "blob %s: appended %d bytes (%d in all)", self.label, len(chunk), total + len(chunk)
        )

    def set(self, data: Buffer) -> None:
        """Replace the content with a copy of ``data`` (one heap chunk)."""
        self.heap_empty()
        self.heap_append(data)

    def heap_empty(self) -> None:
        """Drop the content, heap or direct (a direct buffer is only let go)."""
        self._direct = None
        self._chunks = []

    destroy = heap_empty

    def get(self, length: int | None = None, offset: int = 0) -> bytes:
        """Copy up to ``length`` bytes from ``offset`` (all the rest by default).

        An offset at or past the end gives ``b""``.
        """
        if offset < 0:
            raise ValueError(f"blob {self.label}: offset must be >= 0, got {offset}")
        if length is not None and length < 0:
            raise ValueError(f"blob {self.label}: length must be >= 0, got {length}")
        end = None if length is None else offset + length
        if self._direct is not None:
            return bytes(self._direct[offset:end])
        out = bytearray()
        pos = 0
        for chunk in self._chunks:
            lo, hi = pos, pos + len(chunk)
            pos = hi
            if hi <= offset:
                continue
            if end is not None and lo >= end:
                break
            out += chunk[max(offset - lo, 0) : None if end is None else min(end - lo, len(chunk))]
        return bytes(out)

    def get_into(self, buf: bytearray | memoryview, offset: int = 0) -> int:
        """Fill ``buf`` from ``offset`` (the C form); returns the bytes copied."""
        data = self.get(len(buf), offset)
        memoryview(buf)[: len(data)] = data
        return len(data)

    def get_single_ptr(self) -> memoryview:
        """The content as one read-only buffer without copying.

        An error unless the blob is direct or holds exactly one heap chunk.
        """
        if self._direct is not None:
            return self._direct
        if len(self._chunks) != 1:
            raise BlobError(
                f"blob {self.label} has {len(self._chunks)} heap chunks: "
                "no single buffer (use get())"
            )
        return memoryview(self._chunks[0])

    def __bytes__(self) -> bytes:
        return self.get()

    def __repr__(self) -> str:
        kind = "direct" if self.is_direct else f"heap x{len(self._chunks)}"
        if self.size == 0:
            return f"<Blob {self.label} empty>"
        if self.secret:
            return f"<Blob {self.label} {kind} {self.size} bytes, secret>"
        preview = self._preview()
        shown = f" {preview!r}" if preview is not None else ""
        return f"<Blob {self.label} {kind} {self.size} bytes{shown}>"

    __str__ = __repr__

    def _preview(self) -> str | None:
        if self.type is BlobType.CLIENT_CERT_DER:
            return None
        head = self.get(48)
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not text.isprintable():
            return None
        return text + ("..." if self.size > len(head) else "")


class Blobs:
    """The 11 blob slots of a system (NTP_SERVER starts as ``pool.ntp.org``)."""

    def __init__(self) -> None:
        self._slots: dict[tuple[BlobType, int], Blob] = {
            (t, i): Blob(t, i) for t in BlobType for i in range(t.slots)
        }
        self._slots[(BlobType.NTP_SERVER, 0)].direct_set(DEFAULT_NTP_SERVER)

    def get(self, type: BlobType | int | str, slot: int = 0) -> Blob:
        """The blob for ``type`` and ``slot`` (an error naming both if out of range)."""
        t = _blob_type(type)
        if not 0 <= slot < t.slots:
            raise BlobError(
                f"blob {t.name} has {t.slots} slot(s) (0..{t.slots - 1}): "
                f"slot {slot} does not exist"
            )
        return self._slots[(t, slot)]

    __getitem__ = get

    def __iter__(self) -> Iterator[Blob]:
        return iter(self._slots.values())

    def __len__(self) -> int:
        return len(self._slots)

    def ntp_server(self) -> str:
        """The NTP server name, falling back to the default if emptied."""
        blob = self.get(BlobType.NTP_SERVER)
        return (blob.get() or DEFAULT_NTP_SERVER).decode("utf-8", "replace")

    def __repr__(self) -> str:
        filled = ", ".join(repr(b) for b in self if b.size)
        return f"<Blobs {filled or 'all empty'}>"


def _blob_type(value: BlobType | int | str) -> BlobType:
    if isinstance(value, BlobType):
        return value
    if isinstance(value, str):
        try:
            return BlobType[value.strip().upper()]
        except KeyError:
            known = ", ".join(BlobType.__members__)
            raise BlobError(f"unknown blob type {value!r} (known: {known})") from None
    try:
        return BlobType(value)
    except ValueError:
        if value == 1:
            raise BlobError("blob index 1 is AUTH slot 1: use get(BlobType.AUTH, 1)") from None
        raise BlobError(f"no blob type numbered {value} (0..{SLOT_COUNT - 1})") from None
