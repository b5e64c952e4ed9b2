"""Where the proxy listens: Unix socket addresses in the spellings people use.

``@name`` is a Linux abstract socket (``"\\0name"`` to the kernel, no padding);
``/run/smd.sock`` is a filesystem socket. The C client writes its target as
``+@proxy.ss.lws`` (``+`` meaning "unix socket" to it), so a leading ``+`` is
accepted and ignored.
"""

from __future__ import annotations

DEFAULT_ADDRESS = "\0proxy.ss.lws"
"""The abstract socket the C proxy and client use by default."""


def parse_address(text: str) -> str:
    """The kernel form of a socket address: ``@name``/``+@name`` → ``"\\0name"``.

    Raises ``ValueError`` for an empty address or an empty abstract name.
    """
    spelled = text
    if text.startswith("+"):
        text = text[1:]
    if text.startswith("\0"):
        text = "@" + text[1:]
    if not text:
        raise ValueError(f"empty socket address {spelled!r}")
    if text.startswith("@"):
        if len(text) == 1:
            raise ValueError(f"abstract socket address {spelled!r} has no name")
        return "\0" + text[1:]
    return text


def format_address(address: str) -> str:
    """The user-facing spelling: ``"\\0name"`` → ``@name``."""
    if address.startswith("\0"):
        return "@" + address[1:]
    return address


def is_abstract(address: str) -> bool:
    """True for a Linux abstract socket (kernel form)."""
    return address.startswith("\0")
