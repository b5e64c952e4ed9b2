"""Log lines on a terminal and under systemd's journal (``JOURNAL_STREAM``)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import uuid

from smdbus._logsetup import JournalFormatter, journal_stream, priority, setup_logging

SMD = [sys.executable, "-m", "smdbus"]


def test_priorities_are_syslogs() -> None:
    assert [priority(level) for level in (50, 40, 30, 25, 20, 10, 5)] == [2, 3, 4, 6, 6, 7, 7]


def test_journal_stream_must_name_stderr_itself() -> None:
    read, write = os.pipe()
    with os.fdopen(write, "w") as stream, os.fdopen(read):
        st = os.fstat(stream.fileno())
        assert journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        # inherited by a child whose stderr went elsewhere: not ours
        assert not journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not journal_stream(stream, {})
        assert not journal_stream(stream, {"JOURNAL_STREAM": "garbage"})
        assert not journal_stream(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_every_line_of_a_record_carries_the_priority() -> None:
    record = logging.LogRecord("smdbus.x", logging.ERROR, __file__, 1, "one\ntwo", None, None)
    assert JournalFormatter().format(record) == "<3>smdbus.x: one\n<3>two"


def test_setup_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    # handlers other code added stay; one an earlier setup_logging call added is replaced
    before = [h for h in root.handlers if not getattr(h, "smdbus_setup", False)]
    level = root.level
    try:
        first = setup_logging(1, stream=io.StringIO())
        second = setup_logging(2, stream=io.StringIO())
        assert first not in root.handlers and second in root.handlers
        assert root.handlers[: len(before)] == before and root.level == logging.DEBUG
    finally:
        root.removeHandler(second)
        root.setLevel(level)


def _proxy_log_line(env: dict[str, str] | None) -> str:
    """The first log line of ``smd proxy -v`` when a client joins, its stderr a pipe.

    ``env`` may name that pipe as the journal stream: ``{"JOURNAL_STREAM": "{pipe}"}``.
    """
    address = f"@smdbus-log-{uuid.uuid4().hex[:8]}"
    read, write = os.pipe()
    st = os.fstat(write)
    environ = dict(os.environ)
    environ.pop("JOURNAL_STREAM", None)
    for key, value in (env or {}).items():
        environ[key] = value.replace("{pipe}", f"{st.st_dev}:{st.st_ino}")
    proxy = subprocess.Popen(
        [*SMD, "-v", "proxy", "--socket", address],
        stdout=subprocess.PIPE,
        stderr=write,
        env=environ,
        text=True,
    )
    os.close(write)
    try:
        assert proxy.stdout is not None and "listening" in proxy.stdout.readline()
        sent = subprocess.run([*SMD, "send", "--socket", address, "NETWORK", "x"], timeout=20)
        assert sent.returncode == 0
        with os.fdopen(read) as err:
            line = err.readline()
            proxy.terminate()
            proxy.wait(5)
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait(5)
    return line


def test_under_systemd_lines_have_a_priority_and_no_timestamp() -> None:
    line = _proxy_log_line({"JOURNAL_STREAM": "{pipe}"})
    assert line.startswith("<6>smdbus.proxy"), line  # INFO


def test_elsewhere_lines_are_as_before() -> None:
    for env in (None, {"JOURNAL_STREAM": "1:1"}):
        line = _proxy_log_line(env)
        assert line[:4].isdigit() and " INFO smdbus.proxy" in line, line
