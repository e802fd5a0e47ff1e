"""Every citation resolves inside the repository: a clone carries its own design
(docs/design.md#the-house-features-public-modules-tests).

Code, tests, Bicep, scripts and docs cite the project's own pages as `docs/<page>.md` or `docs/<page>.md#<heading>`;
each must name a page that exists and, with an anchor, a heading of it (GitHub's anchors, as tests/test_docs.py
makes them). The markdown links of README.md and docs/ are followed too. Nothing may cite a document that a clone
does not have: numbered sections of an outside design document, `../shared`, or the outside reference notes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_docs import anchors, broken_links

TEXT_SUFFIXES = {".py", ".md", ".js", ".html", ".css", ".toml", ".bicep", ".json", ".yaml", ".yml", ".txt", ".cfg",
                 ".ini", ".sh", ".ps1", ".example"}  # fmt: skip
TEXT_NAMES = {"Makefile", ".funcignore", ".gitignore"}
SKIPPED_DIRS = {".git", ".venv", ".venv-checkov", "node_modules", "mutants", ".local", "__pycache__", ".mypy_cache",
                ".ruff_cache", ".pytest_cache", ".hypothesis", "artifacts", ".import_linter_cache"}  # fmt: skip
# A project page, with its anchor when one is given: docs/design.md#secure-score, docs/api.md.
_CITATION = re.compile(r"(?<![\w./-])docs/([\w.-]+\.md)(?:#([\w-]+))?")
# What a clone does not have: "DESIGN section 9" / "DESIGN 12b", the folder beside the checkout, the reference notes.
_OUTSIDE = re.compile(
    r"\bDESIGN\s+(?:sections?\s+)?\d+[a-z]?"
    r"|\.\./shared\b|/work/shared\b"
    r"|\breference/[\w-]+\.md"
    r"|\breference\s+(?:[\w-]+\.md|sections?\s+\d)"
    r"|\b(?:tenants-and-routing|servicenow-api|microsoft-graph-secure-score|azure-functions|security-reliability"
    r"|original-connector)\.md\b"
)
# Files whose text plants bad citations on purpose, as the data of tests that prove the checks can fail.
PLANTED = {Path(__file__).resolve(), (ROOT / "tests" / "test_docs.py").resolve()}


def sources(root: Path) -> list[Path]:
    """Every text file of the project under `root`, the installed tools and generated output left out."""
    found = []
    for folder, dirs, files in os.walk(root):  # does not follow the symlinked installs (.venv, node_modules)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(folder) / name
            if (path.suffix in TEXT_SUFFIXES or name in TEXT_NAMES) and path.resolve() not in PLANTED:
                found.append(path)
    return found


def citations(root: Path) -> list[tuple[str, str, str | None]]:
    """(where, page, anchor) for each citation of a project page, `where` being `path:line`."""
    found = []
    for path in sources(root):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for match in _CITATION.finditer(line):
                found.append((f"{path.relative_to(root)}:{number}", match.group(1), match.group(2)))
    return found


def unresolved(root: Path) -> list[str]:
    """Citations whose page or heading does not exist, and broken links of README.md and docs/."""
    broken = []
    for where, page, anchor in citations(root):
        target = root / "docs" / page
        if not target.is_file():
            broken.append(f"{where}: docs/{page} (no such file)")
        elif anchor and anchor not in anchors(target):
            broken.append(f"{where}: docs/{page}#{anchor} (no such heading)")
    pages = [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]
    return broken + broken_links(pages)


def outside(root: Path) -> list[str]:
    """Lines that cite a document outside the repository."""
    found = []
    for path in sources(root):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            match = _OUTSIDE.search(line)
            if match:
                found.append(f"{path.relative_to(root)}:{number}: {match.group(0)}")
    return found


def test_every_citation_of_a_project_page_resolves():
    assert unresolved(ROOT) == []


def test_nothing_cites_a_document_outside_the_repository():
    assert outside(ROOT) == []


def test_the_scan_sees_the_citations_at_all():
    """Not vacuous: code of every kind cites the design's headings, and each heading cited exists."""
    found = citations(ROOT)
    design = [(where, anchor) for where, page, anchor in found if page == "design.md" and anchor]
    assert len(design) >= 80
    kinds = {where.split(":")[0].rsplit(".", 1)[-1] for where, _ in design}
    assert {"py", "js", "bicep", "toml"} <= kinds
    assert {"robustness", "secure-score", "connections-and-routes", "servicenow-facts"} <= {a for _, a in design}
    assert {where.split("/")[0] for where, _ in design} >= {"shared", "dev", "tests", "infra", "portal", "status_sync"}


def _tree(root: Path, text: str) -> None:
    (root / "docs").mkdir()
    (root / "docs" / "design.md").write_text("# Design\n\n## Secure Score\n\n## Consent, clouds and identities\n")
    (root / "README.md").write_text("See [the design](docs/design.md#secure-score).\n")
    (root / "feature").mkdir()
    (root / "feature" / "module.py").write_text(text)


@pytest.mark.parametrize(
    ("text", "unresolved_found", "outside_found"),
    [
        ('"""Edges (docs/design.md#secure-score, docs/design.md#consent-clouds-and-identities)."""\n', [], []),
        ("# docs/design.md#scores\n", ["feature/module.py:1: docs/design.md#scores (no such heading)"], []),
        ("// docs/missing.md says so\n", ["feature/module.py:1: docs/missing.md (no such file)"], []),
        ('"""Edges (DESIGN section 9)."""\n', [], ["feature/module.py:1: DESIGN section 9"]),
        ("# (DESIGN 12b)\n", [], ["feature/module.py:1: DESIGN 12b"]),
        ("Sources: ../shared/reference/servicenow-api.md.\n", [], ["feature/module.py:1: ../shared"]),
        ("(reference/servicenow-api.md)\n", [], ["feature/module.py:1: reference/servicenow-api.md"]),
        ("(reference servicenow-api.md section 7)\n", [], ["feature/module.py:1: reference servicenow-api.md"]),
        ("see reference section 7\n", [], ["feature/module.py:1: reference section 7"]),
        ("a design decision, not a citation; the DESIGN of it\n", [], []),
    ],
)  # fmt: skip
def test_a_bad_citation_is_found(tmp_path: Path, text: str, unresolved_found: list[str], outside_found: list[str]):
    """The checks fail on a planted bad citation (and pass on good ones), so they cannot pass vacuously."""
    _tree(tmp_path, text)
    assert unresolved(tmp_path) == unresolved_found
    assert outside(tmp_path) == outside_found


def test_a_broken_link_in_the_docs_is_found(tmp_path: Path):
    _tree(tmp_path, "")
    (tmp_path / "docs" / "other.md").write_text("[gone](design.md#secure-scores) [fine](design.md#secure-score)\n")
    assert unresolved(tmp_path) == ["other.md: design.md#secure-scores (no such heading)"]
