"""``smd buttons``: watch real buttons (evdev, GPIO, a pattern) and print or send their events."""

import argparse

from smdbus.button import configure_live, run_live
from smdbus.commands._options import examples

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    configure_live(parser)
    examples(
        parser,
        "smd buttons --list                              input devices that have keys",
        "smd buttons --evdev /dev/input/event3           classify its keys, print the events",
        "smd buttons --gpiod /dev/gpiochip0 --line 17=user --active-low --send",
        "smd buttons --pattern 0-102,158-262             a pretend button, in real time",
    )


def run(args: argparse.Namespace) -> int:
    return run_live(args)
