"""Why a command could not talk to the proxy, in one line that says what to do.

The kernel's words (``[Errno 111] Connection refused``) are the symptom; the
user wants the cause: no proxy runs there (start ``smd daemon`` or ``smd
proxy``, or name another with ``--socket``), or one runs but this user may
not connect (the socket's mode and group), or it did not answer. The errno
is read from the exception chain when there is one, else from the text that
libraries put in their messages (``[Errno N] ...``).
"""

from __future__ import annotations

import errno
import os
import re

from smdbus.wire import format_address

_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ?([^:\]]*)")

NO_PROXY = "start one with `smd daemon` (or `smd proxy`), or give its address with --socket"


_KNOWN = (errno.ENOENT, errno.ECONNREFUSED, errno.EACCES, errno.EPERM, errno.EAGAIN)


def _errno_of(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    for _ in range(5):  # the exception, its cause or context, and theirs
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        if isinstance(seen, TimeoutError):
            return errno.ETIMEDOUT
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    found = _ERRNO_TEXT.search(text)
    if found:
        return int(found.group(1))
    for code in _KNOWN:  # a library that kept only the words ("connect failed: Connection refused")
        if os.strerror(code) in text:
            return code
    return None


def strip_errno(text: str) -> str:
    """``"... [Errno 2] No such file or directory: 'x'"`` → ``"... no such file ..."``."""
    return _ERRNO_TEXT.sub(lambda m: m.group(2)[:1].lower() + m.group(2)[1:], text)


def connect_failure(exc: BaseException, address: str) -> str:
    """One line: why connecting to the proxy at ``address`` failed, and what to do."""
    shown = format_address(address)
    code = _errno_of(exc)
    if code in (errno.ENOENT, errno.ECONNREFUSED):
        return f"no proxy at {shown}: {NO_PROXY}"
    if code in (errno.EACCES, errno.EPERM):
        look = f"`ls -l {shown}`: " if not address.startswith("\0") else ""
        return (
            f"permission denied on {shown}: a proxy is there, but its socket does not let "
            f"uid {os.getuid()} in ({look}join the socket's group, or run as its owner)"
        )
    if code == errno.ETIMEDOUT:
        return f"the proxy at {shown} did not answer (is it stopped with SIGSTOP, or overloaded?)"
    if code == errno.EAGAIN:
        return f"the proxy at {shown} is not accepting connections (its backlog is full)"
    if code in (errno.ECONNRESET, errno.EPIPE):
        return (
            f"the proxy at {shown} hung up at once (at its connection limit, "
            "or this user is not allowed: see the proxy's log)"
        )
    return strip_errno(str(exc))
