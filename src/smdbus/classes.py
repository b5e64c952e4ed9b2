"""Message classes: one bit each in a 32-bit field, as lws_smd defines them.

A message usually carries one class bit; a participant's mask selects the
classes it wants, and a message reaches it when ``cls & mask != 0``.
"""

from __future__ import annotations

import enum

USER_BASE_BITNUM = 24
"""First bit of the eight private ("user") classes, as in lws_smd."""

USER_CLASS_COUNT = 8


class Class(enum.IntFlag):
    """The well-known classes of lws_smd (``LWSSMDCL_*``)."""

    INTERACTION = 1 << 0
    SYSTEM_STATE = 1 << 1
    NETWORK = 1 << 2
    METRICS = 1 << 3


ALL_CLASSES = 0xFFFFFFFF
"""A mask matching every class."""


def user_class(n: int) -> int:
    """The n-th private class (0..7), bit ``24 + n``."""
    if not 0 <= n < USER_CLASS_COUNT:
        raise ValueError(f"user class must be 0..{USER_CLASS_COUNT - 1}, got {n}")
    return 1 << (USER_BASE_BITNUM + n)


def class_names(mask: int) -> list[str]:
    """Readable names of the bits in ``mask``: ``INTERACTION``, ``USER0``, or ``BIT5``."""
    names: list[str] = []
    for bit in range(64):
        flag = 1 << bit
        if not mask & flag:
            continue
        if flag in _KNOWN:
            names.append(_KNOWN[flag])
        elif USER_BASE_BITNUM <= bit < USER_BASE_BITNUM + USER_CLASS_COUNT:
            names.append(f"USER{bit - USER_BASE_BITNUM}")
        else:
            names.append(f"BIT{bit}")
    return names


def format_mask(mask: int) -> str:
    """``INTERACTION|NETWORK`` style, or ``0`` for an empty mask."""
    return "|".join(class_names(mask)) or "0"


def parse_mask(text: str) -> int:
    """Parse ``INTERACTION,NETWORK``, ``interaction|user0``, ``0x5`` or ``ALL`` into a mask."""
    text = text.strip()
    if not text:
        raise ValueError("empty class list")
    try:
        return int(text, 0)
    except ValueError:
        pass
    mask = 0
    for raw in text.replace("|", ",").split(","):
        name = raw.strip().upper()
        if not name:
            continue
        if name == "ALL":
            mask |= ALL_CLASSES
        elif name in Class.__members__:
            mask |= Class[name]
        elif name.startswith("USER") and name[4:].isdigit():
            mask |= user_class(int(name[4:]))
        else:
            known = ", ".join([*Class.__members__, "USER0..USER7", "ALL"])
            raise ValueError(f"unknown class {raw.strip()!r} (known: {known})")
    return mask


_KNOWN: dict[int, str] = {int(c): str(c.name) for c in Class}
