"""The classifier against C's timings: golden vectors from libwebsockets, derived cases."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdbus.button import (
    ButtonConfigError,
    ButtonEvent,
    ButtonSpec,
    Classifier,
    Controller,
    Edge,
    EventName,
    IllegalMove,
    Phase,
    Regime,
    RegimeError,
    replay,
)
from smdbus.button.sources import ScriptedSource, controller_for, parse_pattern

Timeline = list[tuple[str, float]]


def run(
    pattern: str, regime: Regime | None = None, *, active_high: bool = True
) -> list[ButtonEvent]:
    presses = parse_pattern(pattern)
    controller = controller_for(presses, regime=regime or Regime(), active_high=active_high)
    return replay(controller, ScriptedSource(presses, controller).edges())


def timeline(events: list[ButtonEvent]) -> Timeline:
    return [(str(e.event), e.time_ms) for e in events]


def src_timeline(events: list[ButtonEvent]) -> list[tuple[str, str, float]]:
    return [(e.src, str(e.event), e.time_ms) for e in events]


# -- golden vectors (libwebsockets' classifier), both polarities ----------------------------

GOLDEN: list[tuple[str, dict[str, bool], Timeline]] = [
    ("0-102", {}, [("down", 20), ("up", 105), ("click", 225)]),
    (
        "0-102,158-262",
        {},
        [("down", 20), ("up", 105), ("down", 180), ("doubleclick", 185), ("up", 265)],
    ),
    ("0-402", {}, [("down", 20), ("longclick", 300), ("up", 405)]),
    ("0-12", {}, []),
    ("0-102", {"classify_doubleclick": False}, [("down", 20), ("click", 105)]),
]


@pytest.mark.parametrize("active_high", [True, False], ids=["active-high", "active-low"])
@pytest.mark.parametrize(("pattern", "changes", "expected"), GOLDEN)
def test_golden_vector(
    pattern: str, changes: dict[str, bool], expected: Timeline, active_high: bool
) -> None:
    events = run(pattern, Regime(**changes), active_high=active_high)
    assert timeline(events) == expected


def test_payload_is_exactly_lws_buttons_json() -> None:
    ev = ButtonEvent(185, "bc", "user", EventName.DOUBLECLICK)
    assert ev.payload() == b'{"type":"button","src":"bc/user","event":"doubleclick"}'
    assert str(ev) == "  185 ms  bc/user  doubleclick"


# -- derived cases ---------------------------------------------------------------------------


def test_repeat_down_stilldown_timing() -> None:
    # stilldown when ticks since the last down/stilldown x 5 ms > 100, i.e. every 105 ms;
    # the longclick takes the tick at 300 and the repeat clock carries on from 230.
    events = run("0-502", Regime(ms_repeat_down=100))
    assert timeline(events) == [
        ("down", 20),
        ("stilldown", 125),
        ("stilldown", 230),
        ("longclick", 300),
        ("stilldown", 335),
        ("stilldown", 440),
        ("up", 505),
    ]


def test_repeat_after_doubleclick_counts_from_the_first_down_as_c_does() -> None:
    # C does not restart the repeat count at a doubleclick: the first stilldown
    # after it comes at once, 170 ms after the first press's down.
    events = run("0-102,158-398", Regime(ms_repeat_down=100))
    assert timeline(events) == [
        ("down", 20),
        ("up", 105),
        ("down", 180),
        ("doubleclick", 185),
        ("stilldown", 190),
        ("stilldown", 295),
        ("up", 400),
    ]


def test_no_stilldown_while_repeat_is_off() -> None:
    assert "stilldown" not in [t[0] for t in timeline(run("0-2000"))]


def test_second_press_too_short_to_qualify_is_a_click() -> None:
    presses = parse_pattern("0-102,158-172")
    controller = controller_for(presses)
    c = Classifier(controller)
    events: list[ButtonEvent] = []
    for edge in ScriptedSource(presses, controller).edges():
        events += c.feed(edge)
    events += c.advance(175)
    assert timeline(events) == [("down", 20), ("up", 105), ("click", 175)]
    assert c.phase("btn") is Phase.UP_SETTLE2
    assert c.run_until_idle() == []
    assert c.now_ms == 195  # settled 20 ms after the click, then the monitor stops
    assert not c.busy


def test_press_beginning_in_the_settle_time_is_lost() -> None:
    # click at 225 restarts the settle: idle at 245. A press at 230 is not seen.
    assert timeline(run("0-102,230-330")) == [("down", 20), ("up", 105), ("click", 225)]
    # The same press 20 ms later starts the monitor afresh (ticks at 255, 260, ...).
    assert timeline(run("0-102,250-350")) == [
        ("down", 20),
        ("up", 105),
        ("click", 225),
        ("down", 270),
        ("up", 350),  # 350 is a tick of the new monitor: the release is seen at once
        ("click", 470),
    ]


def test_glitch_then_press_inside_its_settle_is_lost() -> None:
    assert timeline(run("0-12,20-200")) == []
    assert timeline(run("0-12,40-200")) == [("down", 60), ("up", 200), ("click", 320)]


def test_press_inside_first_settle_is_sampled_later_as_a_doubleclick() -> None:
    # UP_SETTLE1 does not lose a press: WAIT_DOUBLECLICK samples the level at 135.
    assert timeline(run("0-102,110-202")) == [
        ("down", 20),
        ("up", 105),
        ("down", 155),
        ("doubleclick", 160),
        ("up", 205),
    ]


def test_doubleclick_disabled_reports_two_clicks_and_restarts_the_monitor() -> None:
    events = run("0-102,158-262", Regime(classify_doubleclick=False))
    # The monitor stopped at 125; the press at 158 restarts it: ticks at 163, 168, ...
    assert timeline(events) == [("down", 20), ("click", 105), ("down", 178), ("click", 263)]


def test_doubleclick_disabled_longclick_unchanged() -> None:
    events = run("0-402", Regime(classify_doubleclick=False))
    assert timeline(events) == [("down", 20), ("longclick", 300), ("up", 405)]


def test_min_down_off_the_tick_grid_skips_the_second_down_as_c_does() -> None:
    events = run("0-102,158-262", Regime(ms_min_down=22))
    assert timeline(events) == [("down", 25), ("up", 105), ("doubleclick", 185), ("up", 265)]
    assert any("never hit exactly" in note for note in Regime(ms_min_down=22).notes())


def test_edge_at_a_tick_instant_is_seen_by_that_tick() -> None:
    assert timeline(run("0-100")) == [("down", 20), ("up", 100), ("click", 220)]


# -- active level ----------------------------------------------------------------------------


def test_levels_mean_the_opposite_on_an_active_low_button() -> None:
    low = Controller.of("bc", ["btn"], active_high=False)
    high = Controller.of("bc", ["btn"], active_high=True)
    assert (low.level(0, True), high.level(0, True)) == (0, 1)
    # The same electrical waveform: high from 0 to 102, low after.
    wave = [Edge(0, 0, 1), Edge(102, 0, 0)]
    assert timeline(replay(high, wave)) == [("down", 20), ("up", 105), ("click", 225)]
    # Active-low idles high, so the rise at 0 is no edge; the fall at 102 is the press.
    assert timeline(replay(low, [*wave, Edge(300, 0, 1)])) == [
        ("down", 122),
        ("up", 302),
        ("click", 422),
    ]


def test_mixed_active_state_bitmap() -> None:
    c = Controller.of("bc", ["a", "b"], active_high=0b10)  # a active-low, b active-high
    assert (c.active_high(0), c.active_high(1)) == (False, True)
    k = Classifier(c)
    events = k.edge(0, "a", 0) + k.edge(0, "b", 1) + k.edge(102, "a", 1) + k.edge(102, "b", 0)
    events += k.run_until_idle()
    assert src_timeline(events) == [
        ("bc/a", "down", 20),
        ("bc/b", "down", 20),
        ("bc/a", "up", 105),
        ("bc/b", "up", 105),
        ("bc/a", "click", 225),
        ("bc/b", "click", 225),
    ]


# -- several buttons on one controller ------------------------------------------------------


def test_interleaved_buttons_share_one_monitor() -> None:
    presses = parse_pattern("0-102,user:37-82")
    controller = controller_for(presses)
    events = replay(controller, ScriptedSource(presses, controller).edges())
    # "user" pressed at 37 is aged from the tick at 35: down when 4 ticks later, at 55.
    assert src_timeline(events) == [
        ("bc/btn", "down", 20),
        ("bc/user", "down", 55),
        ("bc/user", "up", 85),
        ("bc/btn", "up", 105),
        ("bc/user", "click", 205),
        ("bc/btn", "click", 225),
    ]


def test_buttons_keep_their_own_regimes() -> None:
    c = Controller(
        "panel",
        (ButtonSpec("fast", Regime(classify_doubleclick=False)), ButtonSpec("slow")),
        active_state_bitmap=0b11,
    )
    k = Classifier(c)
    events = k.edge(0, "fast", 1) + k.edge(0, "slow", 1)
    events += k.edge(102, "fast", 0) + k.edge(102, "slow", 0) + k.run_until_idle()
    assert src_timeline(events) == [
        ("panel/fast", "down", 20),
        ("panel/slow", "down", 20),
        ("panel/fast", "click", 105),
        ("panel/slow", "up", 105),
        ("panel/slow", "click", 225),
    ]


def test_monitor_keeps_running_while_any_button_is_busy() -> None:
    c = Controller.of("bc", ["a", "b"], active_high=True)
    k = Classifier(c)
    k.edge(0, "a", 1)
    k.edge(12, "a", 0)  # a glitch: a is idle again at 35
    k.edge(30, "b", 1)
    k.advance(40)
    assert k.phase("a") is Phase.IDLE
    assert k.busy and k.next_tick_ms == 45


# -- the explicit tick API --------------------------------------------------------------------


def test_ticks_only_while_busy_and_at_5ms() -> None:
    c = Classifier(Controller.of("bc", ["btn"], active_high=True))
    assert c.next_tick_ms is None and not c.busy
    assert c.edge(1000.5, 0, 1) == []
    assert c.next_tick_ms == 1005.5
    events: list[ButtonEvent] = []
    for _ in range(4):
        due = c.next_tick_ms
        assert due is not None
        events += c.tick(due)
    assert timeline(events) == [("down", 1020.5)]
    assert c.ticks_run == 4


def test_tick_on_a_stopped_monitor_is_an_illegal_move() -> None:
    c = Classifier(Controller.of("bc", ["btn"]))
    with pytest.raises(IllegalMove, match=r"tick at 5 ms refused in state monitor STOPPED") as ei:
        c.tick(5)
    assert (ei.value.state, ei.value.event) == ("monitor STOPPED", "tick at 5 ms")


def test_tick_at_the_wrong_time_is_an_illegal_move() -> None:
    c = Classifier(Controller.of("bc", ["btn"], active_high=True))
    c.edge(0, 0, 1)
    with pytest.raises(IllegalMove, match=r"tick at 7 ms refused .* next tick is due at 5 ms"):
        c.tick(7)


def test_time_going_backwards_is_refused() -> None:
    c = Classifier(Controller.of("bc", ["btn"], active_high=True))
    c.edge(10, 0, 1)
    with pytest.raises(IllegalMove, match=r"edge at 9 ms refused .* already at 10 ms"):
        c.edge(9, 0, 0)


def test_run_until_idle_refuses_a_held_button() -> None:
    c = Classifier(Controller.of("bc", ["btn"], active_high=True))
    c.edge(0, 0, 1)
    c.advance(400)
    with pytest.raises(IllegalMove, match=r"WAIT_UP \(bc/btn held\)"):
        c.run_until_idle()
    assert c.now_ms == 400  # refused before running anything
    c2 = Classifier(Controller.of("bc", ["btn"], active_high=True))
    c2.edge(0, 0, 1)
    with pytest.raises(IllegalMove, match=r"refused in state MIN_DOWN_QUALIFY \(bc/btn held\)"):
        c2.run_until_idle()


def test_bad_inputs_name_the_problem() -> None:
    c = Classifier(Controller.of("bc", ["btn", "mode"]))
    with pytest.raises(ButtonConfigError, match=r"no button 'nope' \(it has: btn, mode\)"):
        c.edge(0, "nope", 1)
    with pytest.raises(ButtonConfigError, match=r"no button 2 \(indexes 0..1\)"):
        c.edge(0, 2, 1)
    with pytest.raises(ButtonConfigError, match=r"a level is 0 or 1"):
        c.edge(0, 0, 2)


def test_repeated_level_is_no_edge() -> None:
    c = Classifier(Controller.of("bc", ["btn"], active_high=True))
    c.edge(0, 0, 1)
    c.advance(50)
    c.edge(60, 0, 1)  # e.g. an input event replayed after SYN_DROPPED
    assert timeline(c.edge(102, 0, 0) + c.run_until_idle()) == [("up", 105), ("click", 225)]


def test_edge_feeding_equals_explicit_ticking() -> None:
    presses = parse_pattern("0-102,158-262,600-1000,1003-1011")
    controller = controller_for(presses, regime=Regime(ms_repeat_down=50))
    edges = ScriptedSource(presses, controller).edges()
    by_edges = replay(controller, edges)
    k = Classifier(controller)
    by_ticks: list[ButtonEvent] = []
    for edge in edges:
        while (due := k.next_tick_ms) is not None and due < edge.time_ms:
            by_ticks += k.tick(due)
        by_ticks += k.feed(edge)
    while (due := k.next_tick_ms) is not None:
        by_ticks += k.tick(due)
    assert by_ticks == by_edges
    assert len(by_edges) > 10


# -- regime and controller validation -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ms_min_down": -1}, r"ms_min_down must be 0..65535 ms \(a uint16\), got -1"),
        ({"ms_up_settle": 70000}, r"ms_up_settle must be 0..65535"),
        ({"ms_doubleclick_grace": 1.5}, r"ms_doubleclick_grace must be whole milliseconds"),
        ({"ms_repeat_down": True}, r"ms_repeat_down must be whole milliseconds"),
        ({"classify_doubleclick": 1}, r"classify_doubleclick must be a bool"),
        (
            {"ms_min_down": 300, "ms_min_down_longpress": 300},
            r"ms_min_down_longpress \(300\) must be greater than ms_min_down \(300\)",
        ),
    ],
)
def test_regime_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RegimeError, match=message):
        Regime(**kwargs)  # type: ignore[arg-type]


def test_regime_defaults_are_cs() -> None:
    r = Regime()
    assert (r.ms_min_down, r.ms_min_down_longpress, r.ms_up_settle) == (20, 300, 20)
    assert (r.ms_doubleclick_grace, r.ms_repeat_down, r.classify_doubleclick) == (120, 0, True)
    assert r.notes() == []


def test_regime_settings_from_text() -> None:
    r = Regime().with_settings(["ms_min_down=30, ms_repeat_down=100", "classify_doubleclick=off"])
    assert (r.ms_min_down, r.ms_repeat_down, r.classify_doubleclick) == (30, 100, False)
    with pytest.raises(RegimeError, match=r"unknown regime setting 'ms_foo' \(known: ms_min_down"):
        Regime().with_settings(["ms_foo=1"])
    with pytest.raises(RegimeError, match=r"'ms_min_down' is not name=value"):
        Regime().with_settings(["ms_min_down"])
    with pytest.raises(RegimeError, match=r"ms_up_settle must be whole milliseconds, got 'x'"):
        Regime().with_settings(["ms_up_settle=x"])
    with pytest.raises(RegimeError, match=r"classify_doubleclick must be on/off"):
        Regime().with_settings(["classify_doubleclick=maybe"])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Controller.of("bc", ["a", "a"]), r"button names repeat: a"),
        (lambda: Controller.of("bc", []), r"has 0 buttons; it must have 1..16"),
        (lambda: Controller.of("bc", [f"b{i}" for i in range(17)]), r"has 17 buttons"),
        (lambda: Controller.of("bc", ["a"], active_high=0b10), r"bits beyond the 1 buttons"),
        (lambda: Controller.of("b/c", ["a"]), r"controller name 'b/c' may not contain '/'"),
        (lambda: Controller.of("bc", ['x"y']), r"button name 'x\"y' may not contain"),
        (lambda: Controller.of("", ["a"]), r"non-empty string"),
    ],
)
def test_controller_validation(build: object, message: str) -> None:
    with pytest.raises(ButtonConfigError, match=message):
        build()  # type: ignore[operator]


# -- properties ------------------------------------------------------------------------------

_LETTER = {"down": "D", "up": "U", "click": "C", "longclick": "L", "doubleclick": "X"}
_LETTER["stilldown"] = "S"
GRAMMAR_DC = re.compile(r"(DS*(LS*U|U(D?C|D?XS*U)))*")
GRAMMAR_NO_DC = re.compile(r"(DS*(LS*U|C))*")


@st.composite
def patterns(draw: st.DrawFn) -> str:
    t, items = 0, []
    for _ in range(draw(st.integers(1, 6))):
        gap = draw(st.integers(1, 400))
        held = draw(st.integers(1, 700))
        items.append(f"{t + gap}-{t + gap + held}")
        t += gap + held
    return ",".join(items)


@settings(max_examples=150, deadline=None)
@given(
    pattern=patterns(),
    min_down=st.integers(0, 60),
    longpress=st.integers(61, 700),
    settle=st.integers(0, 60),
    grace=st.integers(0, 300),
    repeat=st.sampled_from([0, 3, 50, 120]),
    dc=st.booleans(),
)
def test_event_sequences_follow_the_users_grammar(
    pattern: str, min_down: int, longpress: int, settle: int, grace: int, repeat: int, dc: bool
) -> None:
    regime = Regime(min_down, longpress, settle, grace, repeat, dc)
    events = run(pattern, regime)
    letters = "".join(_LETTER[str(e.event)] for e in events)
    assert (GRAMMAR_DC if dc else GRAMMAR_NO_DC).fullmatch(letters), letters
    times = [e.time_ms for e in events]
    assert times == sorted(times)
