"""Controllers and sources from TOML, as the daemon and ``python -m smdbus.button`` read them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smdbus.button import ButtonConfigError, Regime
from smdbus.button._config import load_controllers, load_file
from smdbus.button.sources import EvdevSource, GpiodSource, LineSpec

pytest.importorskip("evdev")

EXAMPLE = """
[buttons]

[[buttons.controller]]
name = "bc"
source = "evdev"
device = "/dev/input/by-path/platform-gpio-keys-event"
grab = true
regime = { ms_min_down = 30 }

  [[buttons.controller.button]]
  name = "user"
  key = "KEY_ENTER"
  regime = { ms_repeat_down = 250 }

  [[buttons.controller.button]]
  name = "power"
  key = 116

[[buttons.controller]]
name = "panel"
source = "gpiod"
chip = "/dev/gpiochip0"

  [[buttons.controller.button]]
  name = "mode"
  line = 17
  active_low = true
  bias = "pull-up"

  [[buttons.controller.button]]
  name = "aux"
  line = "GPIO27"
  regime = { classify_doubleclick = false }
"""


def test_example_config(tmp_path: Path) -> None:
    path = tmp_path / "buttons.toml"
    path.write_text(EXAMPLE)
    bc, panel = load_file(path)
    assert bc.controller.name == "bc"
    user, power = bc.controller.buttons
    assert user.regime == Regime(ms_min_down=30, ms_repeat_down=250)
    assert power.regime == Regime(ms_min_down=30)
    assert isinstance(bc.source, EvdevSource)
    assert bc.source.codes == {28: 0, 116: 1} and bc.source.grab
    assert isinstance(panel.source, GpiodSource)
    assert panel.source.lines == [
        LineSpec(17, "mode", active_low=True, bias="pull-up"),
        LineSpec("GPIO27", "aux"),
    ]
    assert panel.controller.active_state_bitmap == 0b10  # mode active-low, aux active-high
    assert panel.controller.buttons[1].regime == Regime(classify_doubleclick=False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, r"config: no \[\[controller\]\] tables"),
        ({"controller": [{"name": "bc", "source": "usb", "button": [{"name": "a"}]}]}, "'usb'"),
        (
            {"controller": [{"name": "bc", "source": "evdev", "device": "/d", "button": [{}]}]},
            r"controller\[0\]\.button\[0\]: missing 'name'",
        ),
        (
            {
                "controller": [
                    {"name": "bc", "source": "evdev", "device": "/d", "button": [{"name": "a"}]}
                ]
            },
            r"controller\[0\]\.button\[0\]: missing 'key'",
        ),
        (
            {
                "controller": [
                    {
                        "name": "bc",
                        "source": "gpiod",
                        "chip": "/c",
                        "button": [{"name": "a", "line": 1, "bias": "up"}],
                    }
                ]
            },
            r"controller\[0\]\.button\[0\]: line 1: bias 'up' is not one of",
        ),
        (
            {
                "controller": [
                    {
                        "name": "bc",
                        "source": "gpiod",
                        "chip": "/c",
                        "colour": 1,
                        "button": [{"name": "a", "line": 1}],
                    }
                ]
            },
            r"controller\[0\]: unknown setting\(s\) colour",
        ),
        (
            {
                "controller": [
                    {
                        "name": "bc",
                        "source": "gpiod",
                        "chip": "/c",
                        "regime": {"ms_min_down": 2.5},
                        "button": [{"name": "a", "line": 1}],
                    }
                ]
            },
            r"controller\[0\]: regime: ms_min_down must be whole milliseconds, got '2.5'",
        ),
        (
            {
                "controller": [
                    {
                        "name": "bc",
                        "source": "gpiod",
                        "chip": "/c",
                        "button": [{"name": "a", "line": 1}],
                    },
                    {
                        "name": "bc",
                        "source": "gpiod",
                        "chip": "/d",
                        "button": [{"name": "a", "line": 1}],
                    },
                ]
            },
            r"controller names repeat: bc",
        ),
    ],
)
def test_config_errors_name_the_place(data: dict[str, object], message: str) -> None:
    with pytest.raises(ButtonConfigError, match=message):
        load_controllers(data)


def test_runner_reports_a_bad_config_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[controller]]\nname = 'bc'\n")
    out = subprocess.run(
        [sys.executable, "-m", "smdbus.button", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "controller[0]: missing 'source'" in out.stderr
