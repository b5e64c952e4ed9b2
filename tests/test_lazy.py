"""Every package with names imported on first use gets them from smdbus._lazy.

The contract, per package: importing it imports none of the modules its lazy
names live in; a name imports its own module when first used; ``dir()`` lists
each public name once, before and after use; an unknown name raises the
interpreter's own AttributeError wording. The import checks run in a fresh
interpreter, since this one has imported everything already.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "smdbus",
    "smdbus.button",
    "smdbus.daemon",
    "smdbus.fleet",
    "smdbus.net",
    "smdbus.policy",
    "smdbus.system",
    "smdbus.web",
]

_IMPORTS = """
import importlib, sys
package = importlib.import_module(sys.argv[1])
homes = sorted(package._HOME)
early = [home for home in homes if home in sys.modules]
assert early == [], ("imported with the package", early)
for home, names in package._HOME.items():
    getattr(package, names[0])
    assert home in sys.modules, ("not imported by its name", home, names[0])
print("ok")
"""


@pytest.mark.parametrize("name", PACKAGES)
def test_a_lazy_name_imports_its_module_on_first_use_only(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, name], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("name", PACKAGES)
def test_dir_lists_each_public_name_once_before_and_after_use(name: str) -> None:
    package = importlib.import_module(name)
    for public in package.__all__:
        getattr(package, public)
    listed = dir(package)
    assert len(listed) == len(set(listed)), sorted(n for n in set(listed) if listed.count(n) > 1)
    assert set(package.__all__) <= set(listed)


@pytest.mark.parametrize("name", PACKAGES)
def test_an_unknown_name_raises_the_interpreters_wording(name: str) -> None:
    package = importlib.import_module(name)
    with pytest.raises(AttributeError) as raised:
        package.no_such_name  # noqa: B018
    assert str(raised.value) == f"module {name!r} has no attribute 'no_such_name'"


def test_a_submodule_name_is_the_module() -> None:
    import smdbus.button

    assert smdbus.button.sources is importlib.import_module("smdbus.button.sources")
