"""The web view in a real browser: Debian's chromium driven by Playwright, against a real
``smd daemon --web`` process whose TIME_VALID is really held (by SNTP, from a responder of
the test) and messages sent with the real ``smd send``.

One daemon, one browser and one page for the module (the page's event stream stays open
across the tests, as a person's would). Every wait is for an element or an event, bounded;
the one timed assertion is the issue's "an ``smd send`` appears within 1 s".
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smdbus.daemon import BOOT_STATES
from smdbus.daemon._sntp import build_response

pytest.importorskip("h11")
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

SMD = str(Path(sys.executable).with_name("smd"))
ROOT = Path(__file__).resolve().parents[1]
FUTURE = 4_100_000_000
VALID_AFTER = 4_000_000_000
WAIT = 10.0
BOOT = list(BOOT_STATES)  # CONTEXT_CREATED .. OPERATIONAL, in order
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    socket: str
    url: str
    base: str
    token: str
    config: Path


def _sntp(sock: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(512)
        except TimeoutError:
            continue
        except OSError:
            return
        sock.sendto(build_response(data, receive_unix=FUTURE, transmit_unix=FUTURE), peer)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("web")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    stop = threading.Event()
    responder = threading.Thread(target=_sntp, args=(udp, stop), daemon=True)
    responder.start()
    name = f"smdweb-{uuid.uuid4().hex[:10]}"
    config = tmp / "daemon.toml"
    config.write_text(
        f'[bus]\nsocket = "@{name}"\n'
        "[routes]\nenabled = false\n[cpd]\nenabled = false\n"
        "[gates]\ncoldplug = false\ndhcp = false\n"
        f'[time]\nvalid_after = {VALID_AFTER}\nntp_server = "127.0.0.1"\n'
        f'ntp_port = {udp.getsockname()[1]}\nset_clock = "process"\n'
        "[systemd]\nnotify = false\nsocket_activation = false\n"
        f'[web]\nport = 0\nruntime_dir = "{tmp / "run"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS")}
    proc = subprocess.Popen(
        [SMD, "daemon", "--web", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr

    def pump() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + WAIT
    while True:  # the daemon's own line says the view is up
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if "web view on" in line:
            break
        assert "web view off" not in line, line
    url = subprocess.run(
        [SMD, "web-url", "--config", str(config)], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    token = url.split("token=")[1]
    try:
        yield Daemon(proc, f"@{name}", url, url.split("/?")[0], token, config)
    finally:
        proc.terminate()
        proc.wait(WAIT)
        stop.set()
        udp.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(browser: Browser, daemon: Daemon) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(daemon.url)
    expect(pg.locator("#link")).to_have_text("live", timeout=WAIT * 1000)
    yield pg
    context.close()
    assert not errors, errors


def send(daemon: Daemon, cls: str, payload: str) -> None:
    subprocess.run([SMD, "send", "--socket", daemon.socket, cls, payload], check=True)


@contextlib.contextmanager
def monitor(daemon: Daemon) -> Iterator[int]:
    """A real ``smd monitor`` connected to the daemon (a peer on every class); its pid."""
    mon = subprocess.Popen(
        [SMD, "monitor", "--socket", daemon.socket],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield mon.pid
    finally:
        mon.terminate()
        mon.wait(WAIT)


def rows(page: Page, text: str) -> Any:
    return page.locator("#messages tbody tr", has_text=text)


def reset(page: Page) -> None:
    page.select_option("#filter-class", "")
    page.fill("#filter-text", "")
    if page.locator("#pause.on").count():
        page.click("#pause")


def test_the_page_shows_every_boot_state_and_what_held_it(page: Page) -> None:
    assert "token=" not in page.url  # moved into a cookie
    expect(page.locator("#state")).to_have_text("OPERATIONAL", timeout=WAIT * 1000)
    for state in BOOT:
        expect(page.locator(f'#timeline li[data-state="{state}"]')).to_have_count(1)
    held = page.locator('#timeline li[data-state="TIME_VALID"] .held')
    expect(held).to_contain_text("held by time")
    expect(page.locator('#timeline li[data-state="DHCP"] .held')).to_have_count(0)


def test_an_smd_send_appears_within_one_second(page: Page, daemon: Daemon) -> None:
    marker = f"hello-{uuid.uuid4().hex[:8]}"
    send(daemon, "INTERACTION", json.dumps({"greeting": marker}))
    sent = time.monotonic()
    expect(rows(page, marker)).to_have_count(1, timeout=1000)
    assert time.monotonic() - sent < 1.0
    expect(page.locator('#classes tr[data-cls="INTERACTION"]')).to_contain_text(marker)
    expect(page.locator("#sequence g.msg title", has_text=marker)).to_have_count(1)


def test_html_and_script_in_a_payload_are_shown_as_text(page: Page, daemon: Daemon) -> None:
    evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold</b>'
    send(daemon, "INTERACTION", evil)
    row = rows(page, "window.pwned=2")
    expect(row).to_have_count(1, timeout=WAIT * 1000)
    assert evil in (row.locator("pre").text_content() or "")
    assert page.locator("main img, main script, main b").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(page.locator('#classes tr[data-cls="INTERACTION"] pre')).to_have_text(evil)


def test_filters_by_class_and_by_text(page: Page, daemon: Daemon) -> None:
    reset(page)
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    send(daemon, "INTERACTION", a)
    send(daemon, "NETWORK", b)
    expect(rows(page, b)).to_have_count(1, timeout=WAIT * 1000)
    expect(rows(page, a)).to_have_count(1)
    page.select_option("#filter-class", "NETWORK")
    expect(rows(page, a)).to_have_count(0)
    expect(rows(page, b)).to_have_count(1)
    page.select_option("#filter-class", "")
    page.fill("#filter-text", a)
    expect(rows(page, b)).to_have_count(0)
    expect(rows(page, a)).to_have_count(1)
    expect(page.locator("#messages tbody tr")).to_have_count(1)
    reset(page)
    expect(rows(page, b)).to_have_count(1)


def test_pause_holds_new_messages_until_resumed(page: Page, daemon: Daemon) -> None:
    reset(page)
    page.click("#pause")
    expect(page.locator("#pause")).to_have_text("Resume")
    c = f"c-{uuid.uuid4().hex[:8]}"
    send(daemon, "INTERACTION", c)
    expect(page.locator("#held")).to_have_text("1 new while paused", timeout=WAIT * 1000)
    expect(rows(page, c)).to_have_count(0)  # arrived (the counter says so), not shown
    page.click("#pause")
    expect(rows(page, c)).to_have_count(1)
    expect(page.locator("#held")).to_have_text("")


def test_export_gives_the_shown_messages_as_json_lines(page: Page, daemon: Daemon) -> None:
    reset(page)
    d = f"d-{uuid.uuid4().hex[:8]}"
    send(daemon, "INTERACTION", json.dumps({"d": d}))
    expect(rows(page, d)).to_have_count(1, timeout=WAIT * 1000)
    page.fill("#filter-text", d)
    with page.expect_download() as info:
        page.click("#export")
    path = info.value.path()
    lines = [json.loads(x) for x in Path(path).read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["class"] == "INTERACTION"
    assert json.loads(lines[0]["text"]) == {"d": d}
    reset(page)


def test_peers_table_shows_a_connected_client(page: Page, daemon: Daemon) -> None:
    with monitor(daemon) as pid:
        row = page.locator("#peers tbody tr", has_text=str(pid))
        expect(row).to_have_count(1, timeout=WAIT * 1000)
        expect(row).to_contain_text("smd")


def test_api_refuses_a_missing_token(daemon: Daemon) -> None:
    for path in ("/api/state", "/api/messages", "/api/events", "/metrics", "/"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(daemon.base + path, timeout=WAIT)
        assert e.value.code == 401, path
    req = urllib.request.Request(
        daemon.base + "/api/state", headers={"Authorization": f"Bearer {daemon.token}"}
    )
    with urllib.request.urlopen(req, timeout=WAIT) as r:
        assert json.load(r)["state"] == "OPERATIONAL"


def test_screenshot(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    """Saved for a person to look at (SMD_WEB_SCREENSHOT=path also keeps a copy there)."""
    reset(page)
    with monitor(daemon) as pid:
        expect(page.locator("#peers tbody tr", has_text=str(pid))).to_have_count(
            1, timeout=WAIT * 1000
        )
        for i in range(3):
            send(daemon, "INTERACTION", json.dumps({"type": "button", "src": "demo/user", "n": i}))
        expect(rows(page, '"n": 2')).to_have_count(1, timeout=WAIT * 1000)
        # the monitor is a receiver: an arrow from "bus" to its column
        arrow = page.locator("#sequence g.msg", has_text='"n": 2').locator("polygon")
        expect(arrow).to_have_count(1, timeout=WAIT * 1000)
        last = page.locator('#classes tr[data-cls="INTERACTION"] pre')
        expect(last).to_contain_text('"n": 2', timeout=WAIT * 1000)
        shot = tmp_path / "web-view.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("SMD_WEB_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
