"""The repository is self-contained: code, configs, tests and the README cite documents
that are in it (``docs/algorithm.md §n`` for the algorithm, never an outside spec)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (".py", ".yaml", ".md", ".sh", ".toml", ".cfg", ".in")
SOURCES = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"] + [
    p for folder in ("lica", "tests", "hydra_plugins", "slurm") for p in sorted((ROOT / folder).rglob("*"))
    if p.is_file() and p.suffix in TEXT and "__pycache__" not in p.parts]
OUTSIDE_SPEC = "LICA" + "_SPEC"  # the external spec the code used to cite (spelled apart: this file cites nothing)


def citations(pattern: str) -> list[tuple[Path, str]]:
    return [(p, m) for p in SOURCES for m in re.findall(pattern, p.read_text(errors="replace"))]


def test_no_file_cites_the_outside_spec():
    assert not [p for p in SOURCES if OUTSIDE_SPEC in p.read_text(errors="replace")]


def test_algorithm_citations_name_sections_that_exist():
    sections = set(re.findall(r"^## §(\d+)", (ROOT / "docs" / "algorithm.md").read_text(), re.M))
    cited = citations(r"docs/algorithm\.md §(\d+)")
    assert cited, "the code cites docs/algorithm.md"
    assert not [(str(p), n) for p, n in cited if n not in sections]


def test_cited_docs_exist():
    cited = citations(r"\bdocs/[\w./-]+\.(?:md|png|gif)")
    assert {m for _, m in cited} >= {"docs/algorithm.md", "docs/performance.md"}
    assert not [(str(p), m) for p, m in cited if not (ROOT / m).exists()]
