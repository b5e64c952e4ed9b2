# The two commands of the README: `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench speedups system-deps clean man

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

run: $(STAMP)
	$(BIN)/smd daemon --live --config deploy/demo.toml

test: $(STAMP) system-deps lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# The man page and the bash/zsh completions, generated from smd's parser into the package
# data (tests/test_clidoc.py checks they match the parser: run this after changing options).
DATA := src/smdbus/data
man: $(STAMP)
	mkdir -p $(DATA)/man $(DATA)/completion
	$(BIN)/python -m smdbus.clidoc man > $(DATA)/man/smd.1
	$(BIN)/python -m smdbus.clidoc bash > $(DATA)/completion/smd.bash
	$(BIN)/python -m smdbus.clidoc zsh > $(DATA)/completion/_smd

# Optional: compile the bus's hot path with mypyc (imported in place of bus.py when present).
speedups: $(STAMP)
	scripts/build-speedups.sh

bench: $(STAMP) system-deps
	$(BIN)/python bench/inproc.py
	$(BIN)/python bench/proxy.py

clean:
	rm -rf $(VENV) bench/build .mypy_cache .ruff_cache .pytest_cache src/build src/smdbus/*.so
