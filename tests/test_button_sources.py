"""Sources fed with their libraries' own event objects, and real devices where there are some."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smdbus.button import ButtonConfigError, Controller, Edge, PatternError, Regime, replay
from smdbus.button.sources import (
    EvdevSource,
    GpiodSource,
    LineSpec,
    Press,
    ScriptedSource,
    controller_for,
    parse_pattern,
)

evdev = pytest.importorskip("evdev")
gpiod = pytest.importorskip("gpiod")
from evdev import ecodes  # noqa: E402
from evdev.events import InputEvent  # noqa: E402

BASE_S = 1_700_000_000  # a kernel timestamp: the classifier works on any clock


def key(ms: int, code: int, value: int, type_: int = ecodes.EV_KEY) -> InputEvent:
    sec, msec = divmod(ms, 1000)
    return InputEvent(BASE_S + sec, msec * 1000, type_, code, value)


def timeline(controller: Controller, edges: list[Edge]) -> list[tuple[str, str, float]]:
    base = BASE_S * 1000
    return [(e.src, str(e.event), e.time_ms - base) for e in replay(controller, edges)]


# -- scripted ------------------------------------------------------------------------------


def test_pattern_parsing() -> None:
    assert parse_pattern("0-102, 158-262") == [Press(0, 102), Press(158, 262)]
    assert parse_pattern("user:0-10,5-9") == [Press(0, 10, "user"), Press(5, 9)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty press pattern"),
        ("0-102,", r"press '' is not FROM-TO"),
        ("10", r"press '10' is not FROM-TO"),
        ("-5-10", r"press '-5-10' is not FROM-TO"),
        ("50-50", r"press '50-50' ends before it starts"),
        ("0-100,100-200", r"press '100-200' starts before the previous press .* \(0-100\)"),
    ],
)
def test_pattern_errors(text: str, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        parse_pattern(text)


def test_scripted_edges_use_the_controllers_levels() -> None:
    low = controller_for(parse_pattern("0-10"), active_high=False)
    assert ScriptedSource("0-10", low).edges() == [Edge(0, 0, 0), Edge(10, 0, 1)]
    high = controller_for(parse_pattern("0-10"))
    assert ScriptedSource("0-10", high).edges(offset_ms=5) == [Edge(5, 0, 1), Edge(15, 0, 0)]


# -- evdev: python-evdev's own InputEvent objects -------------------------------------------


def evdev_source(controller: Controller) -> EvdevSource:
    return EvdevSource("/dev/input/unused", {"KEY_ENTER": "btn", ecodes.BTN_0: "mode"}, controller)


def test_evdev_translates_key_events_with_kernel_timestamps() -> None:
    c = Controller.of("bc", ["btn", "mode"], active_high=True)
    src = evdev_source(c)
    edge = src.translate(InputEvent(BASE_S, 250_500, ecodes.EV_KEY, ecodes.KEY_ENTER, 1))
    assert edge == Edge(BASE_S * 1000 + 250.5, 0, 1)
    assert src.translate(key(0, ecodes.BTN_0, 0)) == Edge(BASE_S * 1000, 1, 0)
    assert src.translate(key(0, ecodes.KEY_ENTER, 2)) is None  # autorepeat
    assert src.translate(key(0, ecodes.KEY_A, 1)) is None  # not mapped
    assert src.translate(key(0, ecodes.SYN_REPORT, 0, ecodes.EV_SYN)) is None
    assert src.translate(key(0, 4, 28, ecodes.EV_MSC)) is None  # MSC_SCAN with the key's scancode


def test_evdev_doubleclick_through_the_classifier() -> None:
    c = Controller.of("bc", ["btn", "mode"], active_high=True)
    src = evdev_source(c)
    stream = [
        key(0, 4, 28, ecodes.EV_MSC),
        key(0, ecodes.KEY_ENTER, 1),
        key(0, 0, 0, ecodes.EV_SYN),
        key(102, ecodes.KEY_ENTER, 0),
        key(158, ecodes.KEY_ENTER, 1),
        key(200, ecodes.KEY_ENTER, 2),  # kernel autorepeat while held: ignored
        key(230, ecodes.KEY_ENTER, 2),
        key(262, ecodes.KEY_ENTER, 0),
    ]
    edges = [e for e in map(src.translate, stream) if e is not None]
    assert timeline(c, edges) == [
        ("bc/btn", "down", 20),
        ("bc/btn", "up", 105),
        ("bc/btn", "down", 180),
        ("bc/btn", "doubleclick", 185),
        ("bc/btn", "up", 265),
    ]


def test_evdev_on_an_active_low_controller_gives_the_same_events() -> None:
    c = Controller.of("bc", ["btn", "mode"], active_high=False)
    src = evdev_source(c)
    edges = [src.translate(key(0, ecodes.BTN_0, 1)), src.translate(key(402, ecodes.BTN_0, 0))]
    assert edges[0] == Edge(BASE_S * 1000, 1, 0)  # pressed = low on this controller
    assert timeline(c, [e for e in edges if e]) == [
        ("bc/mode", "down", 20),
        ("bc/mode", "longclick", 300),
        ("bc/mode", "up", 405),
    ]


def test_evdev_key_map_errors() -> None:
    c = Controller.of("bc", ["btn"])
    with pytest.raises(ButtonConfigError, match=r"unknown key name 'KEY_NOPE'"):
        EvdevSource("/dev/null", {"KEY_NOPE": "btn"}, c)
    with pytest.raises(ButtonConfigError, match=r"has no button 'other'"):
        EvdevSource("/dev/null", {"KEY_ENTER": "other"}, c)
    with pytest.raises(ButtonConfigError, match=r"key 28 \(code 28\) is mapped twice"):
        EvdevSource("/dev/null", {"KEY_ENTER": "btn", 28: "btn"}, c)


def test_evdev_missing_device_is_a_clear_error() -> None:
    from smdbus.button import SourceUnavailable

    src = EvdevSource(
        "/dev/input/no-such-event", {"KEY_ENTER": "btn"}, Controller.of("bc", ["btn"])
    )
    with pytest.raises(SourceUnavailable, match=r"cannot open input device /dev/input/no-such"):
        src.open()


@pytest.mark.skipif(
    not os.path.exists("/dev/uinput"),
    reason="no /dev/uinput on this machine (uinput module not loaded or not exposed)",
)
async def test_evdev_real_uinput_device() -> None:
    c = Controller.of("bc", ["btn"], active_high=True)
    with evdev.UInput({ecodes.EV_KEY: [ecodes.KEY_ENTER]}, name="smdbus-test-button") as ui:
        src = EvdevSource(ui.device.path, {"KEY_ENTER": "btn"}, c)
        edges: list[Edge] = []
        task = asyncio.create_task(src.run(edges.append))
        await asyncio.sleep(0)  # the device is opened and read from the loop
        before = src.clock()
        for value in (1, 0):
            ui.write(ecodes.EV_KEY, ecodes.KEY_ENTER, value)
            ui.syn()
        for _ in range(200):
            if len(edges) == 2:
                break
            await asyncio.sleep(0.005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [(e.button, e.level) for e in edges] == [(0, 1), (0, 0)]
    assert src.monotonic, "the kernel should accept EVIOCSCLOCKID"
    assert before - 50 <= edges[0].time_ms <= edges[1].time_ms <= src.clock()
    assert replay(c, edges) == []  # a press of a few µs is a glitch


# -- gpiod: gpiod's own EdgeEvent objects --------------------------------------------------

RISING = gpiod.EdgeEvent.Type.RISING_EDGE.value
FALLING = gpiod.EdgeEvent.Type.FALLING_EDGE.value
BASE_NS = 5_000_000_000_000  # CLOCK_MONOTONIC-like


def gpio_event(ms: float, offset: int, rising: bool, seq: int = 1) -> object:
    return gpiod.EdgeEvent(RISING if rising else FALLING, int(BASE_NS + ms * 1e6), offset, seq, seq)


def gpio_source(controller: Controller) -> GpiodSource:
    lines = [
        LineSpec(17, "user", active_low=True, bias="pull-up"),
        LineSpec(4, "mode", active_low=False, bias="pull-down"),
    ]
    return GpiodSource("/dev/gpiochip0", lines, controller)


def test_gpiod_settings_request_both_edges_bias_and_active_low() -> None:
    from gpiod.line import Bias, Clock, Direction
    from gpiod.line import Edge as GEdge

    src = gpio_source(Controller.of("bc", ["user", "mode"]))
    settings = src.settings()
    assert set(settings) == {17, 4}
    user, mode = settings[17], settings[4]
    assert (user.direction, user.edge_detection, user.bias) == (
        Direction.INPUT,
        GEdge.BOTH,
        Bias.PULL_UP,
    )
    assert user.active_low and not mode.active_low
    assert mode.bias == Bias.PULL_DOWN
    assert user.event_clock == Clock.MONOTONIC


@pytest.mark.parametrize("active_high", [True, False], ids=["active-high", "active-low"])
def test_gpiod_edge_events_through_the_classifier(active_high: bool) -> None:
    c = Controller.of("bc", ["user", "mode"], active_high=active_high)
    src = gpio_source(c)
    first = src.translate(gpio_event(0, 17, rising=True))  # type: ignore[arg-type]
    assert first == Edge(BASE_NS / 1e6, 0, 1 if active_high else 0)
    events = [
        gpio_event(0, 17, True, 1),
        gpio_event(37, 4, True, 2),
        gpio_event(82, 4, False, 3),
        gpio_event(102, 17, False, 4),
        gpio_event(500, 9, True, 5),  # a line we did not ask for
    ]
    edges = [e for e in (src.translate(ev) for ev in events) if e is not None]  # type: ignore[arg-type]
    assert len(edges) == 4
    base = BASE_NS / 1e6
    assert [(e.src, str(e.event), e.time_ms - base) for e in replay(c, edges)] == [
        ("bc/user", "down", 20),
        ("bc/mode", "down", 55),
        ("bc/mode", "up", 85),
        ("bc/user", "up", 105),
        ("bc/mode", "click", 205),
        ("bc/user", "click", 225),
    ]


def test_gpiod_line_errors() -> None:
    c = Controller.of("bc", ["user"])
    with pytest.raises(ButtonConfigError, match=r"bias 'pullup' is not one of"):
        LineSpec(1, "user", bias="pullup")
    with pytest.raises(ButtonConfigError, match=r"line 1 is listed twice"):
        GpiodSource("/dev/gpiochip0", [LineSpec(1, "user"), LineSpec(1, "user")], c)
    named = GpiodSource("/dev/gpiochip0", [LineSpec("GPIO17", "user")], c)
    with pytest.raises(ButtonConfigError, match=r"lines given by name are only known after open"):
        named.translate(gpio_event(0, 17, True))  # type: ignore[arg-type]


def test_gpiod_missing_chip_is_a_clear_error() -> None:
    from smdbus.button import SourceUnavailable

    src = GpiodSource("/dev/gpiochip-none", [LineSpec(3, "user")], Controller.of("bc", ["user"]))
    with pytest.raises(SourceUnavailable, match=r"cannot request lines 3 on /dev/gpiochip-none"):
        src.open()


GPIO_SIM = Path("/sys/kernel/config/gpio-sim")


@contextlib.contextmanager
def gpio_sim_chip(lines: int) -> Iterator[tuple[str, Path]]:
    """A live gpio-sim chip: yields its /dev path and its sysfs directory (for ``pull``)."""
    name = f"smdbus-{uuid.uuid4().hex[:8]}"
    dev = GPIO_SIM / name
    bank = dev / "bank0"
    bank.mkdir(parents=True)
    try:
        (bank / "num_lines").write_text(str(lines))
        (dev / "live").write_text("1")
        chip = (bank / "chip_name").read_text().strip()
        dev_name = (dev / "dev_name").read_text().strip()
        yield f"/dev/{chip}", Path("/sys/devices/platform") / dev_name / chip
    finally:
        with contextlib.suppress(OSError):
            (dev / "live").write_text("0")
        for d in (bank, dev):
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.mark.skipif(
    not GPIO_SIM.is_dir(),
    reason="no gpio-sim here (needs configfs at /sys/kernel/config and the gpio-sim module)",
)
def test_gpiod_real_gpio_sim_line() -> None:
    c = Controller.of("bc", ["user"], regime=Regime(), active_high=False)
    with gpio_sim_chip(4) as (chip, sysfs):
        src = GpiodSource(chip, [LineSpec(2, "user", active_low=True, bias="pull-up")], c)
        request = src.open()
        try:
            pull = sysfs / "sim_gpio2" / "pull"
            before = src.clock()
            edges: list[Edge] = []
            for value in ("pull-down", "pull-up"):  # press (line low), release
                pull.write_text(value)
                assert request.wait_edge_events(1.0)
                edges += src.read()
            assert [(e.button, e.level) for e in edges] == [(0, 0), (0, 1)]  # active-low levels
            assert before - 1 <= edges[0].time_ms <= edges[1].time_ms <= src.clock() + 1
        finally:
            src.close()


# -- the run() plumbing, with the device side replaced at the library boundary -------------


class _FakeRequest:
    """A gpiod LineRequest stand-in: a real pipe fd that is readable while events wait."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.fd = self._r
        self.pending: list[object] = []
        self.released = False

    def push(self, *events: object) -> None:
        self.pending += events
        os.write(self._w, b"x")

    def read_edge_events(self) -> list[object]:
        os.read(self._r, 4096)
        out, self.pending = self.pending, []
        return out

    def release(self) -> None:
        self.released = True
        os.close(self._r)
        os.close(self._w)


async def test_gpiod_run_reads_events_when_the_fd_is_readable() -> None:
    c = Controller.of("bc", ["user", "mode"], active_high=True)
    src = gpio_source(c)
    fake = _FakeRequest()
    src._request = fake  # type: ignore[assignment]  # as if open() had requested the lines
    edges: list[Edge] = []
    task = asyncio.create_task(src.run(edges.append))
    await asyncio.sleep(0)
    fake.push(gpio_event(0, 17, True, 1), gpio_event(3, 4, True, 2))
    fake.push(gpio_event(102, 17, False, 3))
    for _ in range(100):
        if len(edges) == 3:
            break
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    base = BASE_NS / 1e6
    assert [(e.time_ms - base, e.button, e.level) for e in edges] == [
        (0, 0, 1),
        (3, 1, 1),
        (102, 0, 0),
    ]
    assert fake.released and src._request is None


class _FakeDevice:
    """An evdev InputDevice stand-in whose async_read_loop yields real InputEvent objects."""

    def __init__(self, events: list[InputEvent]) -> None:
        self.events = events
        self.closed = False

    async def async_read_loop(self) -> object:
        for ev in self.events:
            await asyncio.sleep(0)
            yield ev

    def close(self) -> None:
        self.closed = True


async def test_evdev_run_feeds_translated_edges_and_closes() -> None:
    c = Controller.of("bc", ["btn", "mode"], active_high=True)
    src = evdev_source(c)
    dev = _FakeDevice(
        [
            key(0, ecodes.KEY_ENTER, 1),
            key(0, 0, 0, ecodes.EV_SYN),
            key(40, ecodes.KEY_ENTER, 2),
            key(102, ecodes.KEY_ENTER, 0),
        ]
    )
    src._dev = dev  # type: ignore[assignment]  # as if open() had opened the device
    edges: list[Edge] = []
    await src.run(edges.append)
    assert [(e.time_ms - BASE_S * 1000, e.level) for e in edges] == [(0, 1), (102, 0)]
    assert dev.closed
