"""smdbus._namedtuple makes the classes typing.NamedTuple makes, without importing typing."""

from __future__ import annotations

import pickle
import subprocess
import sys
import typing
from typing import Any

import pytest

from smdbus._namedtuple import NamedTuple as Light


def _pair() -> tuple[Any, Any]:
    def make(base: object) -> type:
        class Point(base):  # type: ignore[misc,valid-type]
            """A point."""

            x: int
            y: int = 2
            label: str = "p"

            @property
            def norm1(self) -> int:
                return abs(self.x) + abs(self.y)

            def __str__(self) -> str:
                return f"<{self.x},{self.y}>"

        return Point

    return make(typing.NamedTuple), make(Light)


def test_same_shape_and_behaviour_as_typing() -> None:
    heavy, light = _pair()
    for cls in (heavy, light):
        p: Any = cls(1)
        assert p == (1, 2, "p") and issubclass(cls, tuple)
        assert cls._fields == ("x", "y", "label")
        assert cls._field_defaults == {"y": 2, "label": "p"}
        assert cls.__match_args__ == ("x", "y", "label")
        assert p._replace(y=5) == (1, 5, "p")
        assert cls._make([3, 4, "q"]).label == "q"
        assert p.norm1 == 3 and str(p) == "<1,2>"
        assert repr(p) == "Point(x=1, y=2, label='p')"
        assert cls.__doc__ == "A point."
        assert cls.__qualname__ == heavy.__qualname__
        assert cls.__module__ == __name__
        assert tuple.__new__(cls, (7, 8, "r")).y == 8  # the hot paths build them this way
    assert light.__new__.__defaults__ == heavy.__new__.__defaults__


def test_events_pickle_as_before() -> None:
    from smdbus.wire import RxPayload, TxPayload

    event = TxPayload(1, 2, b"x")
    assert pickle.loads(pickle.dumps(event)) == event
    other: object = RxPayload(1, 2, b"x")
    assert event != other  # equality still includes the event's type


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="follows y"):

        class Bad(Light):  # type: ignore[misc,valid-type]
            x: int
            y: int = 0
            z: int


def test_the_tuple_machinery_cannot_be_overridden() -> None:
    with pytest.raises(AttributeError, match="_make"):

        class Bad(Light):  # type: ignore[misc,valid-type]
            x: int

            @classmethod
            def _make(cls, it: object) -> None: ...


def test_the_wire_events_load_without_typing() -> None:
    code = (
        "import sys, smdbus.wire\n"
        "from smdbus.system import StateReport\n"
        "print('typing' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
