"""The token: where a request may carry it, and the comparison.

Rules
-----
- Every route wants the token, the page and its files included (the page
  shows what is on the bus). It may come as ``Authorization: Bearer T``
  (scripts, curl), as ``?token=T`` (the URL ``smd web-url`` prints; an
  ``EventSource`` cannot set headers), or as the ``smd_token`` cookie, which
  the page's first load sets (``HttpOnly``, ``SameSite=Strict``) so the
  token need not stay in the address bar.
- Compared without an early exit: every byte is looked at whatever the
  first difference (:func:`allowed`). Not :func:`hmac.compare_digest`:
  ``hmac`` and ``secrets`` import ``hashlib``, which maps OpenSSL's
  libcrypto into the daemon (4.5 MiB measured with the view on), a library
  the daemon otherwise does without (``smdbus._nossl``).
- A token is 32 bytes from :func:`os.urandom` (the kernel's CSPRNG, what
  :mod:`secrets` uses), URL-safe base64 (:func:`new_token`), unless the
  operator keeps one in a file.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

COOKIE = "smd_token"


def new_token() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def presented(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token a request carries (header, then query, then cookie), if any.

    ``headers`` has lower-case names."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query.get("token"):
        return query["token"]
    return _cookie(headers.get("cookie", ""))


def allowed(expected: str, given: str | None) -> bool:
    """Whether ``given`` is the token (the length is not a secret: 43 characters)."""
    if given is None:
        return False
    a, b = expected.encode(), given.encode("utf-8", "surrogateescape")
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b, strict=True):
        diff |= x ^ y
    return diff == 0


def set_cookie(token: str) -> str:
    """The ``Set-Cookie`` value for the page's first load."""
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
