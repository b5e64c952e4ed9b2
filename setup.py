"""The wheel's optional compiled hot path: mypyc extensions where they can be built.

Everything about the package is in pyproject.toml; this file only decides whether a
wheel carries C extensions of :data:`COMPILED` (mypyc, from the same sources) beside
the pure-Python modules. Python imports an extension in place of the ``.py`` beside
it, so a compiled wheel runs them and any other install runs the pure modules.

Rules:

- Only a wheel build compiles (``bdist_wheel``, as ``python -m build`` and ``pip
  install`` run it; or ``build_ext``, as ``scripts/build-speedups.sh`` does). An
  sdist never does, and neither does an editable install (``pip install -e``, the
  development venv): there a stale extension would shadow the source being edited.
- ``SMDBUS_PURE=1`` in the environment builds a pure wheel (a cross-compiling
  recipe, or a target without the Python headers). At run time the same variable
  makes Python import the pure modules even where extensions are installed
  (``smdbus._pure``).
- Without mypy (the build requirement, in pyproject.toml) or a C compiler that
  builds against this Python's headers, the wheel is pure and the build says why.
  The compiler is tried on a tiny C file first, so a machine without one does not
  spend the type-checking pass that precedes compiling. A compile that fails later
  (an extension of several) removes every extension it built: the modules share
  one runtime library and are all compiled or all pure.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    "src/smdbus/bus.py",
    "src/smdbus/wire/_decoder.py",
    "src/smdbus/wire/_frames.py",
    "src/smdbus/wire/_protocol.py",
    "src/smdbus/proxy/_connection.py",
    "src/smdbus/proxy/_fanout.py",
    "src/smdbus/proxy/_access.py",
    "src/smdbus/proxy/_admission.py",
    "src/smdbus/proxy/_flow.py",
    "src/smdbus/proxy/_server.py",
    "src/smdbus/proxy/_monitor.py",
]
"""The hot path: the bus; the wire's decoder, frames and connection table; the proxy's
connection, fan-out, publish allowance, admission, outflow, server pass and monitor.
tests/test_compiled.py reads this list and runs their tests against the build.

Writing for them: mypyc checks at run time the types mypy inferred, so an attribute
that mypy narrowed (``if self.x is None: ...``) and that a call made meanwhile changed
raises ``TypeError`` when compiled where the pure module is right: read it through a
method (docs/performance.md, "The compiled build")."""

WHEEL_COMMANDS = {"bdist_wheel", "build_ext"}


def _note(message: str) -> None:
    print(f"smdbus setup.py: {message}", file=sys.stderr)


def _compiler_works() -> str | None:
    """None when a C file including Python.h compiles here, else why not."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CCompilerError, DistutilsError
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as scratch:
        source = os.path.join(scratch, "probe.c")
        with open(source, "w") as f:
            f.write("#include <Python.h>\nint smdbus_probe(void) { return 0; }\n")
        try:
            compiler.compile(
                [source], output_dir=scratch, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except (CCompilerError, DistutilsError, OSError) as exc:
            return f"no working C compiler with the Python headers ({exc})"
    return None


def extensions() -> list[Any]:
    """mypyc's extensions of :data:`COMPILED`, or none (a pure wheel), saying why."""
    if not WHEEL_COMMANDS & set(sys.argv[1:]):
        return []
    if os.environ.get("SMDBUS_PURE", "") not in ("", "0"):
        _note("SMDBUS_PURE is set: a pure-Python build")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _note("mypy (mypyc) is not installed: a pure-Python build")
        return []
    why = _compiler_works()
    if why is not None:
        _note(f"{why}: a pure-Python build")
        return []
    _note(f"compiling {len(COMPILED)} modules with mypyc")
    return mypycify(COMPILED, opt_level="3", group_name="smdbus")


class AllOrNothing(build_ext):
    """build_ext that leaves a pure package, not a partial one, when compiling fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler's or the linker's, whatever its class
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
            _note(f"compiling failed ({exc}): the modules stay pure Python")


setup(ext_modules=extensions(), cmdclass={"build_ext": AllOrNothing})
