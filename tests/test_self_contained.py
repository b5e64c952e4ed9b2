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
# Three ways a text points outside: a relative path that climbs to what the repository
# does not have ("..." is an ellipsis, not a climb); a document named that the repository
# does not have (looked up beside the file, at the root and in docs/); and the absolute
# path of the checkout it was written in.
CLIMB = re.compile(r"(?<![\w.])(?:\.\./)+[\w.-]+")
DOCUMENT = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
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
            if _points_outside(path, line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def _points_outside(path: Path, line: str) -> bool:
    if str(ROOT) in line:
        return True
    for m in CLIMB.finditer(line):
        target = (path.parent / m.group()).resolve()
        if not (target.is_relative_to(ROOT) and target.exists()):
            return True
    return any(
        not any((base / m.group(1)).exists() for base in (path.parent, ROOT, ROOT / "docs"))
        for m in DOCUMENT.finditer(line)
    )


def test_each_way_of_pointing_outside_is_caught() -> None:
    doc = ROOT / "docs" / "bus.md"
    assert _points_outside(doc, "see ../../elsewhere/notes for the rules")
    assert _points_outside(doc, "the specs in ../shared, beside the checkout")
    assert _points_outside(doc, "as the design guide says (GUIDE.md)")
    assert _points_outside(doc, f"built in {ROOT}/build")
    assert not _points_outside(doc, "see [the proxy](proxy.md) and ../README.md")
