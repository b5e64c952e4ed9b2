"""The daemon's TOML config: documented defaults, strict validation naming file and field."""

from __future__ import annotations

import datetime as dt
import grp
import re
import tomllib
from pathlib import Path

import pytest

from smdbus.button import Regime
from smdbus.daemon._config import (
    C_TIME_VALID_AFTER,
    DEFAULT_TOML,
    DaemonConfig,
    DaemonConfigError,
    load_config,
    parse_config,
)
from smdbus.proxy import ProxySettings
from smdbus.system import State

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_defaults_are_the_dataclass_defaults() -> None:
    """The documented text and the code agree: parsing it gives DaemonConfig()."""
    parsed = parse_config(DEFAULT_TOML, "<defaults>")
    assert parsed == DaemonConfig(source="<defaults>")
    assert load_config(None) == parsed
    assert parsed.bus.proxy == ProxySettings(max_connections_per_uid=65536)  # the quota's
    assert parsed.bus.socket == "\0proxy.ss.lws"
    assert parsed.time.valid_after == C_TIME_VALID_AFTER == 1594017754
    assert parsed.gates.cpd == "result" and parsed.gates.dhcp_timeout == 0
    assert parsed.buttons.controllers == () and parsed.buttons.scripted == ()


def _scripted_example() -> str:
    """The commented ``[[buttons.scripted]]`` example (the ``[bridge]`` one has its own test)."""
    return DEFAULT_TOML.split("[[buttons.scripted]]")[1].split("# [bridge]")[0]


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
    # the commented [[buttons.scripted]] example counts too
    example = _scripted_example()
    keys |= {f"buttons.scripted.{k}" for k in re.findall(r"^# (\w+) = ", example, re.M)}
    assert len(keys) > 40
    missing = sorted(k for k in keys if f"`{k.split('.')[-1]}`" not in doc)
    assert not missing, f"undocumented keys: {missing}"
    assert "smd daemon --print-config" in doc


def test_the_bridge_table_is_listed_commented_every_key_at_its_default() -> None:
    """``[bridge]`` is in the text, commented (its presence runs the bridge); uncommented,
    it is the parser's defaults, and it names every key the parser knows but ``socket``."""
    from smdbus.fleet import BridgeConfigError, parse_bridge_config

    assert "\n[bridge]" not in DEFAULT_TOML and parse_config(DEFAULT_TOML, "-").bridge is None
    block = DEFAULT_TOML[DEFAULT_TOML.index("# [bridge]") :]
    table = tomllib.loads(re.sub(r"^# ?", "", block, flags=re.M))["bridge"]
    base = Path("/etc/smd")
    assert parse_bridge_config(table, base=base) == parse_bridge_config({}, base=base)
    with pytest.raises(BridgeConfigError) as info:
        parse_bridge_config({"no_such_key": 1})
    known = set(info.value.problem.split("known: ")[1].split(", "))
    assert set(table) == known - {"socket"}
    for sub in ("tls", "auth", "retry"):
        with pytest.raises(BridgeConfigError) as info:
            parse_bridge_config({sub: {"no_such_key": 1}})
        assert set(table[sub]) == set(info.value.problem.split("known: ")[1].split(", "))


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
        ("[buttons]\ncontroller = 3\n", "buttons.controller", "array of tables"),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "usb"\n'
            '[[buttons.controller.button]]\nname = "a"\n',
            "buttons.controller[0]",
            "'evdev' or 'gpiod'",
        ),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "gpiod"\nchip = "/dev/gpiochip0"\n'
            '[[buttons.controller.button]]\nname = "a"\n',
            "buttons.controller[0].button[0]",
            "missing 'line'",
        ),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "evdev"\ndevice = "/dev/x"\n'
            '[[buttons.controller.button]]\nname = "a"\nkey = "KEY_NOPE"\n',
            "buttons.controller[0]",
            "unknown key name",
        ),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "evdev"\ndevice = "/dev/x"\n'
            '[[buttons.controller.button]]\nname = "a"\nkey = "KEY_A"\ncolour = 1\n',
            "buttons.controller[0].button[0]",
            "colour",
        ),
        ("[buttons]\nscripted = 1\n", "buttons.scripted", "array of tables"),
        ("[[buttons.scripted]]\n", "buttons.scripted[0].pattern", "required"),
        ('[[buttons.scripted]]\npattern = "5-1"\n', "buttons.scripted[0].pattern", "ends before"),
        (
            '[[buttons.scripted]]\npattern = "x:0-10"\n',
            "buttons.scripted[0].pattern",
            "presses button 'x'",
        ),
        (
            '[[buttons.scripted]]\npattern = "0-10"\nstart = "LATER"\n',
            "buttons.scripted[0].start",
            "unknown system state",
        ),
        (
            '[[buttons.scripted]]\npattern = "0-10"\nregime = { ms_min = 3 }\n',
            "buttons.scripted[0].regime.ms_min",
            "unknown regime setting",
        ),
        (
            '[[buttons.scripted]]\npattern = "0-10"\nregime = { ms_min_down = 400 }\n',
            "buttons.scripted[0].regime",
            "greater than",
        ),
        (
            '[[buttons.scripted]]\ncontroller = "a/b"\npattern = "0-10"\n',
            "buttons.scripted[0]",
            "may not contain '/'",
        ),
        (
            '[[buttons.scripted]]\npattern = "0-1"\n[[buttons.scripted]]\npattern = "0-1"\n',
            "buttons.scripted[1].controller",
            "used twice",
        ),
        (
            '[[buttons.controller]]\nname = "demo"\nsource = "gpiod"\nchip = "c"\n'
            '[[buttons.controller.button]]\nname = "a"\nline = 1\n'
            '[[buttons.scripted]]\npattern = "0-1"\n',
            "buttons.scripted[0].controller",
            "used twice",
        ),
        (
            '[[buttons.scripted]]\npattern = "0-1"\ncolour = 3\n',
            "buttons.scripted[0].colour",
            "unknown key",
        ),
        ("[buttons]\nscript = []\n", "buttons.script", "did you mean 'scripted'"),
        # what the system must hold: a group it has, a gid, room in sockaddr_un
        ('[bus]\ngroup = "no-such-group-x"\n', "bus.group", "no group named 'no-such-group-x'"),
        ('[bus]\ngroup = "4242"\n', "bus.group", "written as a number: group = 4242"),
        ("[bus]\ngroup = 99999999999999999999\n", "bus.group", "0..4294967294"),
        ("[bus]\ngroup = -1\n", "bus.group", "0..4294967294"),
        (f'[bus]\nsocket = "/run/{"s" * 103}"\n', "bus.socket", "108 bytes; a socket path"),
        (f'[bus]\nsocket = "@{"s" * 108}"\n', "bus.socket", "108 bytes; an abstract name"),
        # nesting tomllib cannot read (it recurses), named by the key that holds it
        (f"[gates]\ndhcp = {'[' * 2000}{']' * 2000}\n", "gates.dhcp", "nested too deeply"),
        # maxima: a limit set past them would no longer limit anything
        ("[bus]\nqueue_depth = 9223372036854775807\n", "bus.queue_depth", "1..4096"),
        ("[bus]\nmax_buffer = 9223372036854775807\n", "bus.max_buffer", "1..67108864"),
        ("[bus]\nstall_timeout = 1e308\n", "bus.stall_timeout", "at most 300"),
        (
            '[[buttons.scripted]]\npattern = "0-86400001"\n',
            "buttons.scripted[0].pattern",
            "one day",
        ),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "gpiod"\nchip = "c"\n'
            '[[buttons.controller.button]]\nname = "a"\nline = 4294967296\n',
            "buttons.controller[0].button[0]",
            "0..4294967295",
        ),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "gpiod"\nchip = "c"\n'
            '[[buttons.controller.button]]\nname = "a"\nline = 1\ndebounce_ms = inf\n',
            "buttons.controller[0].button[0]",
            "debounce_ms must be 0..1000",
        ),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "gpiod"\nchip = "c"\n'
            '[[buttons.controller.button]]\nname = "a"\nline = 1\ndebounce_ms = "10"\n',
            "buttons.controller[0].button[0]",
            "debounce_ms must be a number",
        ),
        (
            '[[buttons.controller]]\nname = "bc"\nsource = "gpiod"\nchip = "c"\n'
            '[[buttons.controller.button]]\nname = "a"\nline = 1\nactive_low = "no"\n',
            "buttons.controller[0].button[0]",
            "active_low must be true or false",
        ),
    ],
)
def test_errors_name_the_file_and_the_field(text: str, field: str, words: str) -> None:
    with pytest.raises(DaemonConfigError) as info:
        parse_config(text, "/etc/smd/daemon.toml")
    e = info.value
    assert e.source == "/etc/smd/daemon.toml"
    assert e.field == field, str(e)
    assert words in str(e)
    assert str(e).startswith(f"/etc/smd/daemon.toml: {field}: ")


def test_toml_syntax_and_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[bus\n")
    with pytest.raises(DaemonConfigError, match=r"bad\.toml: not valid TOML.*line 1"):
        load_config(bad)
    with pytest.raises(DaemonConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(DaemonConfigError, match="not UTF-8"):
        load_config(bad)


def test_buttons_real_and_scripted() -> None:
    cfg = parse_config(
        """
[[buttons.controller]]
name = "front"
source = "evdev"
device = "/dev/input/event3"
regime = { ms_min_down = 30 }
  [[buttons.controller.button]]
  name = "ok"
  key = "KEY_ENTER"
  [[buttons.controller.button]]
  name = "back"
  key = 1

[[buttons.controller]]
name = "panel"
source = "gpiod"
chip = "/dev/gpiochip0"
  [[buttons.controller.button]]
  name = "reset"
  line = "GPIO17"
  active_low = true
  bias = "pull-up"

[[buttons.scripted]]
controller = "demo"
pattern = "0-102,158-262"
start = "DHCP"
delay = 1.5
repeat = 10
regime = { ms_min_down = 30, classify_doubleclick = false }
"""
    )
    front, panel = cfg.buttons.controllers
    assert front["name"] == "front" and len(front["button"]) == 2
    assert panel["button"][0]["line"] == "GPIO17"
    (demo,) = cfg.buttons.scripted
    assert demo.buttons == ("btn",) and demo.active_high == 1 and demo.start == State.DHCP
    assert (demo.delay, demo.repeat, demo.index) == (1.5, 10.0, 0)
    assert demo.regime == Regime(ms_min_down=30, classify_doubleclick=False)


def _numeric_keys() -> list[tuple[str, str, object]]:
    """Every number the config takes: (table, key, default), from the documented defaults."""
    doc = tomllib.loads(DEFAULT_TOML)
    out: list[tuple[str, str, object]] = [
        (table, key, value)
        for table, keys in doc.items()
        for key, value in keys.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    example = _scripted_example()
    for key, value in re.findall(r"^# (\w+) = ([0-9.]+)", example, re.M):
        out.append(("buttons.scripted", key, float(value)))
    return out


def test_the_numeric_keys_are_all_here() -> None:
    names = {f"{t}.{k}" for t, k, _ in _numeric_keys()}
    assert {"bus.queue_depth", "bus.max_buffer", "bus.stall_timeout", "time.valid_after"} <= names
    assert {"buttons.scripted.delay", "buttons.scripted.repeat"} <= names
    assert len(names) == 25, sorted(names)


@pytest.mark.parametrize(("table", "key", "default"), _numeric_keys())
@pytest.mark.parametrize("huge", [2**63 - 1, 1e308])
def test_every_number_has_a_maximum(table: str, key: str, default: object, huge: float) -> None:
    """A limit of 2^63 or 1e308 is no limit: each number the config takes is refused there."""
    if table == "buttons.scripted":
        text = f'[[buttons.scripted]]\npattern = "0-10"\n{key} = {huge!r}\n'
        field = f"buttons.scripted[0].{key}"
    else:
        text = f"[{table}]\n{key} = {huge!r}\n"
        field = f"{table}.{key}"
    with pytest.raises(DaemonConfigError) as info:
        parse_config(text, "/etc/smd/daemon.toml")
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"/etc/smd/daemon.toml: {field}: ")


def test_the_maxima_themselves_are_accepted() -> None:
    """The documented maxima are usable values (bounds inclusive), and documented."""
    cfg = parse_config(
        "[bus]\nmax_connections = 65536\nqueue_depth = 4096\nhigh_water = 67108864\n"
        "max_buffer = 67108864\nfirst_frame_timeout = 60\nstall_grace = 10\n"
        "max_outbound = 1073741824\nreserved_connections = 65536\n"
        "stall_timeout = 300\n[gates]\ndhcp_timeout = 86400\n[cpd]\ntimeout = 60\n"
        "[time]\nvalid_after = 9999-12-31T23:59:59Z\nntp_timeout = 60\nretry_interval = 3600\n"
        "[boot]\nwait_for_peers = 1024\nwait_for_peers_timeout = 3600\n"
        "[web]\nport = 65535\nring = 100000\nmax_rate = 100000\nmax_clients = 1024\n"
        '[[buttons.scripted]]\npattern = "0-86400000"\ndelay = 86400\nrepeat = 86400\n'
    )
    assert cfg.bus.proxy.queue_depth == 4096 and cfg.bus.proxy.stall_timeout == 300
    assert cfg.time.valid_after == 253402300799
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert (cfg.web.port, cfg.web.ring, cfg.web.max_clients) == (65535, 100000, 1024)
    figures = ("65536", "4096", "67108864", "1073741824", "300", "86400", "3600", "253402300799")
    for figure in figures:
        assert figure in doc, figure


def test_a_gid_and_a_group_that_exist_are_kept() -> None:
    name = grp.getgrgid(0).gr_name
    assert parse_config(f'[bus]\ngroup = "{name}"\n').bus.proxy.group == name
    assert parse_config("[bus]\ngroup = 4294967294\n").bus.proxy.group == 4294967294
    assert parse_config('[bus]\nsocket = "/run/' + "s" * 102 + '"\n').bus.socket.endswith("s")


def test_one_per_uid_connection_limit_the_access_quota() -> None:
    """``[bus] max_connections_per_uid`` is refused, pointing at the quota that replaced it;
    the daemon's proxy leaves the per-uid limit to the quota (no second, lower bound)."""
    with pytest.raises(DaemonConfigError) as info:
        parse_config("[bus]\nmax_connections_per_uid = 10\n", "/etc/smd/daemon.toml")
    assert info.value.field == "bus.max_connections_per_uid"
    assert "[access.quota.user] connections" in str(info.value)
    cfg = parse_config("", "/etc/smd/daemon.toml")
    assert cfg.bus.proxy.max_connections_per_uid == 65536
