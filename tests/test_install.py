"""Installing on a device: the wheel and sdist, `make install`'s script, the shipped units.

The install runs for real, into a scratch root (every directory the script
writes is given to it), from a wheel built here with ``python -m build``; and once
from a copy of the source tree, as `make install` without ``WHEEL=`` runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import smdbus
from smdbus.daemon import DEFAULT_TOML

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(smdbus.__file__).parent / "data"
SHIPPED = [
    "smdbus/data/systemd/smd.service",
    "smdbus/data/systemd/smd.socket",
    "smdbus/data/daemon.toml",
    "smdbus/data/man/man1/smd.1",
    "smdbus/data/completion/smd.bash",
    "smdbus/data/completion/_smd",
]
ANALYZE = shutil.which("systemd-analyze") or ""
_GENERATED = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so", "build")


def test_the_example_config_is_the_daemons_defaults() -> None:
    assert (DATA / "daemon.toml").read_text() == DEFAULT_TOML, "run `make man`"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``python -m build``: an sdist and a wheel (the build backend comes from the index).

    A pure wheel (``SMDBUS_PURE=1``): what is checked here is what the package carries
    and how it installs; the compiled build has its own test (tests/test_compiled.py).
    """
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SMDBUS_PURE": "1"},
    )
    _skip_without_an_index(r)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    yield out


def _skip_without_an_index(r: subprocess.CompletedProcess[str]) -> None:
    if r.returncode != 0 and re.search(
        r"Could not find a version|connection|resolve", r.stdout + r.stderr
    ):
        pytest.skip("a build could not fetch its build backend (no package index)")


def test_wheel_and_sdist_carry_units_config_manual_and_completions(dist: Path) -> None:
    (wheel,) = dist.glob("smdbus-*.whl")
    (sdist,) = dist.glob("smdbus-*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"src/{name}" for name in SHIPPED} <= in_sdist


def test_the_sdist_installs_pure_python_where_nothing_compiles(dist: Path, tmp_path: Path) -> None:
    """A device without a working C compiler (``CC=false``) still gets smdbus from the sdist:
    setup.py's probe fails, so the wheel is pure Python and runs."""
    (sdist,) = dist.glob("smdbus-*.tar.gz")
    env = {k: v for k, v in os.environ.items() if k != "SMDBUS_PURE"} | {"CC": "false"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheel"),
            str(sdist),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "no working C compiler" in r.stdout + r.stderr
    (wheel,) = (tmp_path / "wheel").glob("smdbus-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert not [n for n in whl.namelist() if n.endswith(".so")]
        whl.extractall(tmp_path / "site")
    check = (
        "import smdbus.bus as b; bus = b.Bus(); got = []\n"
        "bus.register(1, lambda c, t, p: got.append(p)); bus.send(1, b'hi'); bus.service()\n"
        "print(b.COMPILED, b.__file__, got)"
    )
    run = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(tmp_path / "site")},
    )
    assert run.stdout.split() == ["False", str(tmp_path / "site/smdbus/bus.py"), "[b'hi']"], (
        run.stdout + run.stderr
    )


def _install(env: dict[str, str], src: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [src / "scripts/install.sh"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def install_env(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`make install`'s settings for a scratch root, from the wheel, without extras."""
    (wheel,) = dist.glob("smdbus-*.whl")
    return _settings(tmp_path_factory.mktemp("root")) | {"EXTRAS": "", "WHEEL": str(wheel)}


def _settings(root: Path) -> dict[str, str]:
    """Every directory the script writes, under ``root``."""
    return {
        "ROOT": str(root),
        "PREFIX": str(root / "opt/smdbus"),
        "PYTHON": sys.executable,
        "UNITDIR": str(root / "etc/systemd/system"),
        "MANDIR": str(root / "usr/local/share/man"),
        "CONFDIR": str(root / "etc/smd"),
        "BASHCOMPDIR": str(root / "usr/share/bash-completion/completions"),
        "ZSHCOMPDIR": str(root / "usr/local/share/zsh/site-functions"),
    }


@pytest.fixture(scope="module")
def installed(install_env: dict[str, str]) -> Path:
    """The scratch root after `make install`'s script ran once."""
    r = _install(install_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "done: smd (smdbus) " in r.stdout
    return Path(install_env["ROOT"])


def test_install_makes_a_venv_and_points_the_unit_at_it(installed: Path) -> None:
    smd = installed / "opt/smdbus/bin/smd"
    assert subprocess.run([smd, "--version"], capture_output=True, text=True).stdout.startswith(
        "smd (smdbus) "
    )
    service = (installed / "etc/systemd/system/smd.service").read_text()
    assert f"\nExecStart={smd} daemon --config /etc/smd/daemon.toml " in service
    assert "\nDocumentation=man:smd(1)\n" in service
    for path in (
        "etc/systemd/system/smd.socket",
        "usr/local/share/man/man1/smd.1",
        "usr/share/bash-completion/completions/smd",
        "usr/local/share/zsh/site-functions/_smd",
    ):
        assert (installed / path).is_file(), path
    assert (installed / "etc/smd/daemon.toml").read_text() == DEFAULT_TOML
    man = subprocess.run(
        ["man", "-w", "smd"],
        env={**os.environ, "MANPATH": str(installed / "usr/local/share/man")},
        capture_output=True,
        text=True,
    )
    assert man.stdout.strip() == str(installed / "usr/local/share/man/man1/smd.1")


def test_install_again_keeps_an_existing_config(
    installed: Path, install_env: dict[str, str]
) -> None:
    config = installed / "etc/smd/daemon.toml"
    config.write_text("# mine\n")
    r = _install(install_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "daemon.toml exists: left as it is" in r.stdout
    assert config.read_text() == "# mine\n"


SOURCE_TREE = ["pyproject.toml", "setup.py", "build_backend.py", "MANIFEST.in", "README.md"]
"""With ``src`` and ``scripts``: what `make install` needs of a checkout."""


def test_install_from_the_source_tree_leaves_out_what_earlier_builds_left(tmp_path: Path) -> None:
    """`make install` without WHEEL= builds the wheel from the tree's sdist, elsewhere: a
    wheel built in the checkout carries whatever an earlier build left in build/lib (here a
    module since deleted and an extension of a module since renamed), and installs it."""
    src = tmp_path / "src-tree"
    for name in SOURCE_TREE:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for name in ("src", "scripts"):
        shutil.copytree(ROOT / name, src / name, ignore=_GENERATED)
    ext = sysconfig.get_config_var("EXT_SUFFIX")
    stale = ["smdbus/_deleted_module.py", f"smdbus/proxy/connection{ext}"]
    for name in stale:
        (src / "build/lib" / name).parent.mkdir(parents=True, exist_ok=True)
        (src / "build/lib" / name).write_text("raise ImportError('stale')\n")
    root = tmp_path / "root"
    # pure (SMDBUS_PURE=1): the compiled build has its own test and costs a minute here
    r = _install(_settings(root) | {"EXTRAS": "net", "SMDBUS_PURE": "1"}, src=src)
    _skip_without_an_index(r)
    assert r.returncode == 0 and "done: smd (smdbus) " in r.stdout, r.stdout + r.stderr
    where = subprocess.run(
        [root / "opt/smdbus/bin/python", "-c", "import h11, smdbus; print(smdbus.__file__)"],
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr  # the net extra came along
    package = Path(where.stdout.strip()).parent
    assert (package / "proxy/_connection.py").is_file()
    assert [name for name in stale if (package.parent / name).exists()] == []
    assert "built smdbus-0.1.0-py3-none-any.whl (SMDBUS_PURE is set" in r.stdout, r.stdout


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze is not installed")
def test_installed_units_verify_with_their_manual(installed: Path) -> None:
    unitdir = installed / "etc/systemd/system"
    r = subprocess.run(
        [ANALYZE, "verify", str(unitdir / "smd.socket"), str(unitdir / "smd.service")],
        env={**os.environ, "MANPATH": str(installed / "usr/local/share/man")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "smd." not in r.stderr, r.stderr


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze is not installed")
def test_the_service_is_rated_at_most_3_by_systemd_analyze_security() -> None:
    r = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(DATA / "systemd/smd.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for smd.service: (\d+\.\d+)", r.stdout)
    assert found is not None, r.stdout + r.stderr
    assert float(found.group(1)) <= 3.0, r.stdout
