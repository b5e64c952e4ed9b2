# The two commands of the README: `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
GLIB   := $(VENV)/.glib

.PHONY: run test lint typecheck unit bench speedups system-deps clean man install dist

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

run: $(STAMP)
	$(BIN)/smd daemon --live --web --config deploy/demo.toml

test: $(STAMP) system-deps lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench setup.py build_backend.py
	$(BIN)/ruff format --check src tests bench setup.py build_backend.py
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# PyGObject (the glib extra) builds against Debian headers that system-deps installs; where
# it cannot build, the GLib tests skip and say why.
$(GLIB): $(STAMP) | system-deps
	$(BIN)/python -m pip install -q -e '.[glib]' || echo "note: PyGObject did not build (see docs/loops.md): the GLib tests will skip"
	touch $(GLIB)

# The suite runs on TEST_WORKERS pytest-xdist workers: more than the cores, since most tests
# wait on processes and sockets rather than compute (docs/performance.md has the figures).
TEST_WORKERS ?= 4
unit: $(STAMP) $(GLIB)
	$(BIN)/pytest -n $(TEST_WORKERS)

# Generated files shipped as package data (src/smdbus/data/): the man page and the bash/zsh
# completions from smd's parser, the example config from the daemon's defaults. Run after
# changing an option or a default; tests/test_clidoc.py and test_install.py check they match.
DATA := src/smdbus/data
man: $(STAMP)
	mkdir -p $(DATA)/man/man1 $(DATA)/completion
	$(BIN)/python -m smdbus._clidoc man > $(DATA)/man/man1/smd.1
	$(BIN)/python -m smdbus._clidoc bash > $(DATA)/completion/smd.bash
	$(BIN)/python -m smdbus._clidoc zsh > $(DATA)/completion/_smd
	$(BIN)/smd daemon --print-config > $(DATA)/daemon.toml

# Install on this machine (as root): a venv in /opt/smdbus, the systemd units pointing into it,
# the man page, the completions, /etc/smd/daemon.toml if absent; the wheel is built as `make
# dist` builds it, from an sdist, in a scratch directory. See scripts/install.sh for the
# settings (make install PREFIX=... EXTRAS=... WHEEL=...).
install:
	scripts/install.sh

# A wheel and an sdist in dist/ (units, example config, man page, completions as package data)
# for Yocto or Buildroot recipes, or for `make install WHEEL=dist/smdbus-....whl`.
dist: $(STAMP)
	$(BIN)/python -m build --outdir dist

# Optional: compile the hot path in place with mypyc, as a wheel build does (setup.py; the
# extensions shadow the sources until `make clean`; SMDBUS_PURE=1 ignores them). docs/performance.md
speedups: $(STAMP)
	scripts/build-speedups.sh

bench: $(STAMP) system-deps
	$(BIN)/python bench/inproc.py
	$(BIN)/python bench/proxy.py

clean:
	rm -rf $(VENV) dist bench/build .mypy_cache .ruff_cache .pytest_cache src/build build src/smdbus__mypyc.*
	find src -name '*.so' -delete
