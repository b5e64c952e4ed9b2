"""Replay: run edges through a fresh classifier to the end, with no clock and no sleeping."""

from __future__ import annotations

from collections.abc import Iterable

from smdbus.button._classifier import Classifier
from smdbus.button._controller import Controller
from smdbus.button._events import ButtonEvent, Edge


def replay(controller: Controller, edges: Iterable[Edge]) -> list[ButtonEvent]:
    """Every event the edges cause, with the times a device running C would stamp."""
    classifier = Classifier(controller)
    events: list[ButtonEvent] = []
    for edge in edges:
        events += classifier.feed(edge)
    events += classifier.run_until_idle()
    return events
