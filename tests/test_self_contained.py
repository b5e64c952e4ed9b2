"""The repository stands alone: nothing in it points at files outside it.

Users of the repository have its docs, its tests and their data, nothing else; a
reference to a sibling directory (the specs the project was written from) or to an
absolute path on the machine it was written on is a dead link for them, and a test
that reads one skips where it should run.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = re.compile(r"shared/spec|shared/seeds|\.\./shared|/work/|spec/\w+\.md")
TREES = ("src", "tests", "docs", "bench", "scripts", "deploy")


def test_nothing_points_outside_the_repository() -> None:
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    for tree in TREES:
        files += [p for p in (ROOT / tree).rglob("*") if p.is_file() and p.suffix != ".so"]
    hits = []
    for path in files:
        if path == Path(__file__) or any(
            part == "__pycache__" or part.endswith(".egg-info") for part in path.parts
        ):  # generated, and rewritten meanwhile by the tests that build and install
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):  # not text; gone since the listing
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
