"""The web view's sans-I/O core: ring, class table, boot timeline, sampler, payloads, SSE ids,
the token and the ``[web]`` table. Clocks are injected; nothing here opens a socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smdbus.classes import Class
from smdbus.daemon import DaemonConfigError, parse_config
from smdbus.web import BusView, WebConfig, WebConfigError, parse_web_config
from smdbus.web._auth import allowed, presented
from smdbus.web._classes import OTHER, ClassTable
from smdbus.web._metrics import Exposition
from smdbus.web._payload import render, visible
from smdbus.web._ring import EventRing
from smdbus.web._sse import event, resume_after
from smdbus.web._timeline import BootTimeline


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_ring_keeps_the_newest_and_says_how_many_a_late_reader_missed() -> None:
    ring: EventRing[str] = EventRing(3)
    assert ring.since(0) == ([], 0)
    for word in "abcde":
        ring.append(word)
    assert ring.last_id == 5 and len(ring) == 3
    assert ring.since(0) == ([(3, "c"), (4, "d"), (5, "e")], 2)
    assert ring.since(3) == ([(4, "d"), (5, "e")], 0)
    assert ring.since(1, limit=1) == ([(3, "c")], 1)
    assert ring.since(5) == ([], 0)
    assert ring.since(99) == ([], 0)
    with pytest.raises(ValueError, match="at least 1"):
        EventRing(0)


def test_class_table_counts_every_message_and_rates_come_from_ticks() -> None:
    table = ClassTable(max_rows=2)
    for _ in range(5):
        table.seen(Class.INTERACTION, 1, b"x", 10.0)
    table.tick()
    table.seen(Class.INTERACTION, 2, b'{"a":1}', 11.0)
    table.tick()
    rows = table.rows(12.5, render)
    assert rows[0]["class"] == "INTERACTION"
    assert rows[0]["spark"] == [5, 1] and rows[0]["rate"] == 1 and rows[0]["count"] == 6
    assert rows[0]["age"] == 1.5 and rows[0]["json"] is True


def test_class_table_is_bounded_and_counts_the_rest_together() -> None:
    table = ClassTable(max_rows=2)
    for cls in (1, 2, 1 << 40, 1 << 41, 1):
        table.seen(cls, 0, b"", 0.0)
    assert table.counts() == {1: 2, 2: 1, OTHER: 2}
    assert table.total == 5
    assert [r["class"] for r in table.rows(0.0, render)] == ["other", "INTERACTION", "SYSTEM_STATE"]


def test_payload_is_text_with_invisible_characters_made_visible() -> None:
    r = render(b"<script>alert(1)</script>\x1b[2J\xff\xe2\x80\xae")
    assert r["text"] == "<script>alert(1)</script>\\u001b[2J\\xff\\u202e"
    assert r["json"] is False and r["size"] == 33
    assert render(b'{"a": "<b>"}') == {"text": '{"a": "<b>"}', "json": True, "size": 12}
    assert render(b"12")["json"] is True
    assert visible("evil\u202etxt.exe\x07") == "evil\\u202etxt.exe\\u0007"
    assert render(b"line\nnext\ttab")["text"] == "line\nnext\ttab"


def test_sampler_passes_max_rate_a_second_and_counts_the_rest() -> None:
    clock = Clock()
    view = BusView(ring=100, max_rate=10, clock=clock)
    for i in range(50):
        view.message(Class.INTERACTION, i, b"%d" % i)
    assert view.counters() == {"seen": 50, "shown": 10, "skipped": 40}
    clock.t += 0.5
    view.advance(clock.t)  # half a second: five more
    for i in range(50):
        view.message(Class.INTERACTION, i, b"x")
    assert view.counters() == {"seen": 100, "shown": 15, "skipped": 85}
    new = view.take_new()
    assert [ident for ident, _ in new] == list(range(1, 16))
    assert json.loads(new[0][1])["text"] == "0"
    assert view.take_new() == []
    assert view.classes.count(Class.INTERACTION) == 100


def test_receivers_are_open_peers_whose_mask_matches() -> None:
    view = BusView(ring=10, max_rate=10, clock=Clock())
    view.set_peers(
        [
            {"id": 1, "mask": int(Class.INTERACTION), "state": "open"},
            {"id": 2, "mask": int(Class.NETWORK), "state": "open"},
            {"id": 3, "mask": int(Class.INTERACTION), "state": "closed"},
        ]
    )
    view.message(Class.INTERACTION, 0, b"")
    record = json.loads(view.take_new()[0][1])
    assert record["from"] == "bus" and record["to"] == [1]


def test_timeline_names_who_held_each_state_and_for_how_long() -> None:
    t = BootTimeline("CONTEXT_CREATED", 10.0, wall_offset=1000.0)
    t.attempt("CONTEXT_CREATED", "PRE_PRIV_DROP", 10.1, "stale")  # first attempt: nobody yet
    t.entered("PRE_PRIV_DROP", 10.1)
    t.attempt("PRE_PRIV_DROP", "DHCP", 10.2, None)
    assert t.snapshot(10.5, "dhcp")["waiting"] == {
        "state": "DHCP",
        "held_by": ["dhcp"],
        "for": 0.3,
    }
    t.attempt("PRE_PRIV_DROP", "DHCP", 11.0, "dhcp")  # the retry: dhcp held the first
    t.attempt("PRE_PRIV_DROP", "DHCP", 11.2, "time")
    t.entered("DHCP", 11.2)
    snap = t.snapshot(12.0, None)
    assert snap["waiting"] is None
    states = [(e["state"], e["held_by"], e["waited"]) for e in snap["entries"]]
    assert states == [
        ("CONTEXT_CREATED", [], 0.0),
        ("PRE_PRIV_DROP", [], 0.0),
        ("DHCP", ["dhcp", "time"], 1.0),
    ]
    assert snap["entries"][2]["at"] == pytest.approx(1.2)
    assert snap["entries"][2]["wall"] == pytest.approx(1011.2)


def test_timeline_is_bounded() -> None:
    t = BootTimeline("A", 0.0)
    for i in range(300):
        t.entered(f"S{i}", float(i))
    snap = t.snapshot(0.0, None)
    assert len(snap["entries"]) == 128 and snap["dropped"] == 173
    assert snap["entries"][-1]["state"] == "S299"


def test_sse_events_and_where_a_reader_resumes() -> None:
    assert event('{"a":1}', ident="ab-3") == b'id: ab-3\ndata: {"a":1}\n\n'
    assert event("x\ny", name="state") == b"event: state\ndata: x\ndata: y\n\n"
    assert resume_after("ab-3", "ab") == 3
    assert resume_after(" ab-3 ", "ab") == 3
    assert resume_after("cd-3", "ab") is None  # another daemon run: start afresh
    assert resume_after("ab-", "ab") is None
    assert resume_after("ab-1-2", "ab") is None
    assert resume_after(None, "ab") is None


def test_token_from_header_query_or_cookie_compared_whole() -> None:
    assert presented({"authorization": "Bearer tok"}, {}) == "tok"
    assert presented({}, {"token": "tok"}) == "tok"
    assert presented({"cookie": "a=b; smd_token=tok"}, {}) == "tok"
    assert presented({"authorization": "Basic x"}, {}) is None
    assert allowed("tok", "tok")
    assert not allowed("tok", "to")
    assert not allowed("tok", None)


def test_web_table_is_checked_and_errors_name_the_field(tmp_path: Path) -> None:
    cfg = parse_web_config({"enabled": True, "port": 0, "token_file": "t"}, base=tmp_path)
    assert cfg == WebConfig(enabled=True, port=0, token_file=tmp_path / "t")
    assert cfg.is_loopback()
    assert not WebConfig(host="0.0.0.0").is_loopback()
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"port": 70000}, "port", "must be 0..65535"),
        ({"port": True}, "port", "whole number"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"host": 1}, "host", "a string"),
        ({"rign": 5}, "rign", "unknown key"),
        ({"enabled": True, "host": "", "unix_socket": False}, "host", "nowhere to listen"),
        ({"send_as": "no-such-user-here"}, "send_as", "no such user 'no-such-user-here'"),
        ({"send_as": 4294967296}, "send_as", "no such user"),
        ({"send_as": True}, "send_as", "a user name or uid"),
    ]
    for table, field, problem in cases:
        with pytest.raises(WebConfigError, match=problem) as e:
            parse_web_config(table, base=tmp_path)
        assert e.value.field == field
    assert parse_web_config({"send_as": 0}, base=tmp_path).send_as == "0"
    assert parse_web_config({"send_as": "root"}, base=tmp_path).send_as == "root"


def test_daemon_config_reads_the_web_table_and_names_the_file() -> None:
    assert parse_config("[web]\nenabled = true\nport = 0\n").web == WebConfig(enabled=True, port=0)
    with pytest.raises(DaemonConfigError) as e:
        parse_config("[web]\nmax_rate = 0\n", "d.toml")
    assert str(e.value) == "d.toml: web.max_rate: must be 1..100000, got 0"


def test_metrics_text_format() -> None:
    e = Exposition()
    e.family("smd_x_total", "counter", "X.", [({"class": 'a"b\\'}, 3)])
    e.one("smd_y", "gauge", "Y.", 1.5)
    assert e.text() == (
        "# HELP smd_x_total X.\n# TYPE smd_x_total counter\n"
        'smd_x_total{class="a\\"b\\\\"} 3\n'
        "# HELP smd_y Y.\n# TYPE smd_y gauge\nsmd_y 1.5\n"
    )


def test_web_url_says_where_it_looked_when_no_view_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smdbus.cli import main

    cfg = tmp_path / "d.toml"
    cfg.write_text('[web]\nruntime_dir = "run"\n')
    assert main(["web-url", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'run' / 'web.json'}: not found" in err
    cfg.write_text("[web]\nport = -1\n")
    assert main(["web-url", "--config", str(cfg)]) == 2
    assert "web.port: must be 0..65535" in capsys.readouterr().err


def test_the_view_does_not_map_openssl_into_the_daemon() -> None:
    """hmac/secrets import hashlib, which maps libcrypto (4.5 MiB in a daemon without it)."""
    import subprocess
    import sys

    code = (  # asyncio as the daemon imports it (smd: smdbus._nossl)
        "from smdbus._nossl import import_asyncio_without_ssl as f; f(); "
        "import sys, smdbus.web._service as s; from smdbus.web._auth import new_token; "
        "t = new_token(); assert len(t) == 43, t; "
        "print(sorted(m for m in ('_hashlib', 'hashlib', 'ssl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
