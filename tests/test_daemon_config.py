"""The daemon's TOML config: documented defaults, strict validation naming file and field."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path

import pytest

from smdbus.button.regime import Regime
from smdbus.daemon.config import (
    C_TIME_VALID_AFTER,
    DEFAULT_TOML,
    ConfigError,
    DaemonConfig,
    load_config,
    parse_config,
)
from smdbus.proxy.settings import ProxySettings
from smdbus.system.state import State

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_defaults_are_the_dataclass_defaults() -> None:
    """The documented text and the code agree: parsing it gives DaemonConfig()."""
    parsed = parse_config(DEFAULT_TOML, "<defaults>")
    assert parsed == DaemonConfig(source="<defaults>")
    assert load_config(None) == parsed
    assert parsed.bus.proxy == ProxySettings()
    assert parsed.bus.socket == "\0proxy.ss.lws"
    assert parsed.time.valid_after == C_TIME_VALID_AFTER == 1594017754
    assert parsed.gates.cpd == "result" and parsed.gates.dhcp_timeout == 0
    assert parsed.buttons == ()


def _keys(doc: dict[str, object], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _keys(v, f"{name}.")
        else:
            out.add(name)
    return out


def test_every_key_is_documented_in_configuration_md() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    keys = _keys(tomllib.loads(DEFAULT_TOML))
    # the commented [[button]] example counts too
    keys |= {
        f"button.{k}" for k in re.findall(r"^# (\w+) = ", DEFAULT_TOML.split("[[button]]")[1], re.M)
    }
    assert len(keys) > 40
    missing = sorted(k for k in keys if f"`{k.split('.')[-1]}`" not in doc)
    assert not missing, f"undocumented keys: {missing}"
    assert "smd daemon --print-config" in doc


def test_a_file_overrides_and_resolves_paths_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    f = tmp_path / "etc" / "daemon.toml"
    f.write_text(
        '[bus]\nsocket = "run/smd.sock"\nmode = "0600"\ngroup = "adm"\n'
        '[policy]\nfile = "policy.json"\n'
        '[gates]\ncpd = "ok"\ndhcp_timeout = 2.5\n'
        "[time]\nvalid_after = 2024-01-01T00:00:00Z\n"
    )
    cfg = load_config(f)
    assert cfg.source == str(f)
    assert cfg.bus.socket == str(tmp_path / "etc" / "run" / "smd.sock")
    assert cfg.bus.proxy.mode == 0o600 and cfg.bus.proxy.group == "adm"
    assert cfg.policy.file == tmp_path / "etc" / "policy.json"
    assert cfg.gates.cpd == "ok" and cfg.gates.dhcp_timeout == 2.5
    assert cfg.time.valid_after == int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp())
    assert cfg.gates.time is True  # untouched keys keep their defaults


def test_abstract_socket_spellings() -> None:
    assert parse_config('[bus]\nsocket = "@mine"').bus.socket == "\0mine"
    assert parse_config('[bus]\nsocket = "+@mine"').bus.socket == "\0mine"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[gates]\ncpd = 1\n", "gates.cpd", "must be a string"),
        ('[gates]\ncpd = "yes"\n', "gates.cpd", "'result', 'ok', 'off'"),
        ("[gates]\ndchp = true\n", "gates.dchp", "did you mean 'dhcp'"),
        ("[gatez]\n", "gatez", "unknown key"),
        ("[gates]\ndhcp_timeout = -1\n", "gates.dhcp_timeout", ">= 0"),
        ('[gates]\ndhcp = "yes"\n', "gates.dhcp", "true or false"),
        ('[bus]\nsocket = "@"\n', "bus.socket", "no name"),
        ('[bus]\nmode = "rw"\n', "bus.mode", "octal"),
        ('[bus]\nmode = "1777"\n', "bus.mode", "not a permission mode"),
        ("[bus]\nmax_frame = 10\n", "bus.max_frame", "32..65535"),
        ("[bus]\nstall_grace = 5.0\nstall_timeout = 1.0\n", "bus.stall_timeout", "out of range"),
        ("[bus]\nqueue_depth = 1.5\n", "bus.queue_depth", "whole number"),
        ('[cpd]\nurl = "ftp://x"\n', "cpd.url", "http://"),
        ("[cpd]\ntimeout = -3\n", "cpd.timeout", ">= 0"),
        ("[time]\nntp_port = 0\n", "time.ntp_port", "1..65535"),
        ("[time]\nvalid_after = 2020-01-01T00:00:00\n", "time.valid_after", "time zone"),
        ("[time]\nvalid_after = 2020-01-01\n", "time.valid_after", "date-time"),
        ('[time]\nset_clock = "ntpd"\n', "time.set_clock", "'system', 'process'"),
        ('[time]\nntp_server = "a b"\n', "time.ntp_server", "not a host"),
        ("[boot]\nwait_for_peers_timeout = 0\n", "boot.wait_for_peers_timeout", "> 0"),
        ('[log]\nlevel = "loud"\n', "log.level", "'debug'"),
        ("bus = 3\n", "bus", "must be a table"),
        ('[[button]]\nbuttons = ["a"]\n', "button[0].source", "is required"),
        ('[[button]]\nsource = "usb"\n', "button[0].source", "'evdev'"),
        ('[[button]]\nsource = "evdev"\n', "button[0].buttons", "is required"),
        ('[[button]]\nsource = "evdev"\nbuttons = ["a"]\n', "button[0].device", "required"),
        (
            '[[button]]\nsource = "evdev"\nbuttons = ["a"]\ndevice = "/dev/input/event0"\n',
            "button[0].keys",
            "required",
        ),
        (
            '[[button]]\nsource = "evdev"\nbuttons = ["a"]\ndevice = "/dev/x"\n'
            'keys = { KEY_ENTER = "b" }\n',
            "button[0].keys.KEY_ENTER",
            "one of the buttons",
        ),
        (
            '[[button]]\nsource = "evdev"\nbuttons = ["a"]\ndevice = "/dev/x"\n'
            'keys = { KEY_NOPE = "a" }\n',
            "button[0].keys",
            "unknown key name",
        ),
        ('[[button]]\nsource = "gpio"\nbuttons = ["a"]\n', "button[0].chip", "required"),
        (
            '[[button]]\nsource = "gpio"\nbuttons = ["a"]\nchip = "/dev/gpiochip0"\n'
            'lines = [{ line = -1, button = "a" }]\n',
            "button[0].lines[0].line",
            "offset >= 0",
        ),
        (
            '[[button]]\nsource = "gpio"\nbuttons = ["a"]\nchip = "c"\n'
            'lines = [{ line = 1, button = "a", bias = "strong" }]\n',
            "button[0].lines[0].bias",
            "'pull-up'",
        ),
        ('[[button]]\nsource = "scripted"\n', "button[0].pattern", "required"),
        ('[[button]]\nsource = "scripted"\npattern = "5-1"\n', "button[0].pattern", "ends before"),
        (
            '[[button]]\nsource = "scripted"\npattern = "x:0-10"\n',
            "button[0].pattern",
            "presses button 'x'",
        ),
        (
            '[[button]]\nsource = "scripted"\npattern = "0-10"\nstart = "LATER"\n',
            "button[0].start",
            "unknown system state",
        ),
        (
            '[[button]]\nsource = "scripted"\npattern = "0-10"\nregime = { ms_min = 3 }\n',
            "button[0].regime.ms_min",
            "unknown regime setting",
        ),
        (
            '[[button]]\nsource = "scripted"\npattern = "0-10"\nregime = { ms_min_down = 400 }\n',
            "button[0].regime",
            "greater than",
        ),
        (
            '[[button]]\ncontroller = "a/b"\nsource = "scripted"\npattern = "0-10"\n',
            "button[0]",
            "may not contain '/'",
        ),
        (
            '[[button]]\nsource = "scripted"\npattern = "0-1"\n'
            '[[button]]\nsource = "scripted"\npattern = "0-1"\n',
            "button[1].controller",
            "used twice",
        ),
        (
            '[[button]]\nsource = "scripted"\npattern = "0-1"\ncolour = 3\n',
            "button[0].colour",
            "unknown key",
        ),
    ],
)
def test_errors_name_the_file_and_the_field(text: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/smd/daemon.toml")
    e = info.value
    assert e.source == "/etc/smd/daemon.toml"
    assert e.field == field, str(e)
    assert words in str(e)
    assert str(e).startswith(f"/etc/smd/daemon.toml: {field}: ")


def test_toml_syntax_and_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[bus\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML.*line 1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_buttons_of_each_source() -> None:
    cfg = parse_config(
        """
[[button]]
controller = "front"
source = "evdev"
buttons = ["ok", "back"]
device = "/dev/input/event3"
keys = { KEY_ENTER = "ok", "1" = "back" }
active_high = 2
regime = { ms_min_down = 30, classify_doubleclick = false }

[[button]]
controller = "panel"
source = "gpio"
buttons = ["reset"]
chip = "/dev/gpiochip0"
lines = [{ line = "GPIO17", button = "reset", active_low = true, bias = "pull-up" }]

[[button]]
controller = "demo"
source = "scripted"
pattern = "0-102,158-262"
start = "DHCP"
delay = 1.5
repeat = 10
"""
    )
    front, panel, demo = cfg.buttons
    assert front.buttons == ("ok", "back") and front.active_high == 2
    assert front.regime == Regime(ms_min_down=30, classify_doubleclick=False)
    assert dict(front.keys) == {"KEY_ENTER": "ok", "1": "back"}
    assert panel.lines[0].line == "GPIO17" and panel.lines[0].active_low
    assert demo.buttons == ("btn",) and demo.start == State.DHCP
    assert (demo.delay, demo.repeat, demo.index) == (1.5, 10.0, 2)
