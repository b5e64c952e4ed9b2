"""``typing.NamedTuple``'s class syntax without importing :mod:`typing`.

Why: the wire's events, :class:`~smdbus.wire.SmdMessage` and the state
reports are ``NamedTuple`` classes, and the one-shot tools (``smd send``,
``smd state``, ``smd peers``) load them. Importing :mod:`typing` and building
the classes with it costs those tools about 6 ms and 1 MiB each run, a fifth
of a bare Python's start-up (docs/performance.md): ``typing`` itself is the
biggest module they would load, and ``typing.NamedTuple`` compiles every
field's annotation into a ``ForwardRef``. The classes it makes are plain
:func:`collections.namedtuple` classes with the class body's methods and
docstring copied on; this module makes the same classes the same way,
without the rest.

Rules of this module:

- A module writes::

      TYPE_CHECKING = False
      if TYPE_CHECKING:
          from typing import NamedTuple
      else:
          from smdbus._namedtuple import NamedTuple

  Type checkers see ``typing.NamedTuple`` (field types, defaults, unpacking
  all checked as before); at run time the class is what ``typing`` would
  have made: a ``collections.namedtuple`` (same ``__new__``, C field
  getters, ``_replace``, ``_fields``, ``__match_args__``, built with
  ``tuple.__new__`` on the hot paths), with the body's docstring, methods
  and properties. What it does not carry is ``typing``'s bookkeeping:
  ``__orig_bases__``, and ``__annotations__`` as given (strings, under
  ``from __future__ import annotations``, unevaluated).
- The defining module has ``from __future__ import annotations`` (every
  module here does): the body's ``__annotations__`` are then strings that
  nothing evaluates. (Python 3.14 without it keeps them in ``__annotate__``;
  a body without ``__annotations__`` but with ``__annotate__`` is refused.)
- Fields are the class body's annotations, in order; a field with a value
  in the body has that default, and, as with ``typing``, a field without a
  default after one with a default is an error (``namedtuple`` raises it).
- The body cannot override the tuple's own machinery (``__new__``,
  ``_make``, ``__slots__`` ...): ``typing`` refuses that too, so this
  refuses it with the same kind of error.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

_MACHINERY = frozenset(
    {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults", "_make"}
)
"""Names a body may not define (``typing`` prohibits the same ones)."""
_GIVEN = frozenset({"__module__", "__qualname__", "__annotations__", "__orig_bases__"})
"""Names the new class gets from :func:`namedtuple` or does without, not from the body."""


class _NamedTupleMeta(type):
    def __new__(mcls, name: str, bases: tuple[type, ...], body: dict[str, Any]) -> Any:
        if "__annotations__" not in body and "__annotate__" in body:
            raise TypeError(f"{name}: define it under 'from __future__ import annotations'")
        fields = tuple(body.get("__annotations__", {}))
        with_default = [field for field in fields if field in body]
        if fields[len(fields) - len(with_default) :] != tuple(with_default):
            raise TypeError(f"{name}: a field without a default follows {with_default[0]}")
        defaults = [body[field] for field in with_default]
        cls = namedtuple(name, fields, defaults=defaults, module=body["__module__"])  # type: ignore[misc]
        cls.__annotations__ = dict(body.get("__annotations__", {}))
        for key, value in body.items():
            if key in _MACHINERY:
                raise AttributeError(f"cannot overwrite NamedTuple attribute {key}")
            if key not in _GIVEN and key not in fields:
                setattr(cls, key, value)
        cls.__qualname__ = body.get("__qualname__", name)
        return cls


_Base = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})


class _NamedTupleBase:
    """What ``class X(NamedTuple)`` subclasses: the metaclass above builds X."""

    @staticmethod
    def __mro_entries__(bases: tuple[object, ...]) -> tuple[type]:
        return (_Base,)


NamedTuple = _NamedTupleBase()
"""Subclass it as ``typing.NamedTuple`` (see the module's rules)."""
