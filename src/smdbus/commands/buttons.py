"""``smd buttons``: watch real buttons (evdev, GPIO, a pattern) and print or send their events."""

from smdbus.button.runner import configure, run

__all__ = ["configure", "run"]
