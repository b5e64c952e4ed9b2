"""The build backend: setuptools', asking for mypy only for a wheel that may be compiled.

mypy (it ships mypyc) is what setup.py compiles the hot path with. It is a download of
over 10 MiB that an sdist, an editable install and a pure build (``SMDBUS_PURE=1``: a
device recipe that cannot build C extensions) never use, so it is a build requirement
of wheels only, and not when ``SMDBUS_PURE`` is set. Every other hook is setuptools'
own, unchanged. (pyproject.toml names this module with ``backend-path``.)
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the hooks this module leaves alone)

MYPY = "mypy>=1.10"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements, and mypy unless ``SMDBUS_PURE`` asks for a pure wheel."""
    pure = os.environ.get("SMDBUS_PURE", "") not in ("", "0")
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *([] if pure else [MYPY])]
