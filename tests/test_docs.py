"""The documentation holds together: every relative link in README.md and docs/*.md reaches an existing file, and
an existing heading when it names one (as GitHub makes heading anchors), and the README stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT, docs_pictures

# characters (bytes, as `wc -c` counts): read in five minutes (docs/design.md#layout-and-ownership)
README_LIMIT = 12_000
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are code, not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(heading)
        name, n = base, 0
        while name in found:  # GitHub numbers repeated headings: name, name-1, name-2, ...
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def relative_links(path: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(path.read_text())) if not _EXTERNAL.match(t)]


def broken_links(paths: list[Path]) -> list[str]:
    broken = []
    for path in paths:
        for target in relative_links(path):
            file_part, _, anchor = target.partition("#")
            goal = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}: {target}"
            if not goal.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
                broken.append(f"{where} (no such heading)")
    return broken


def test_every_relative_link_in_the_docs_resolves():
    assert broken_links(documents()) == []


def test_the_link_scan_sees_the_links_at_all():
    """Not vacuous: the README links into docs/, and docs/ links to headings of other pages."""
    readme = relative_links(ROOT / "README.md")
    assert "docs/settings.md" in readme and "docs/images/portal-admin-1280.png" in readme
    assert sum(len(relative_links(path)) for path in documents()) >= 50
    assert "docs/api.md#problems" in readme


def test_a_broken_link_or_anchor_is_found(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A page\n\n## Two words\n\n```\n## Not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[fine](docs/a.md#two-words) [fine too](#a-title) `[code](missing.md)`\n"
        "[gone](docs/missing.md) [no heading](docs/a.md#not-a-heading) ![picture](docs/gone.png)\n"
        "[web](https://example.com/x.md) [mail](mailto:someone@example.com)\n\n# A title\n"
    )
    assert broken_links([page]) == [
        "page.md: docs/missing.md (no such file)",
        "page.md: docs/a.md#not-a-heading (no such heading)",
        "page.md: docs/gone.png (no such file)",
    ]


def test_github_anchors():
    assert slug("Input rules (every route)") == "input-rules-every-route"
    assert slug("What `azd up` creates") == "what-azd-up-creates"
    assert slug("1a. Sign-in and roles: who may do what") == "1a-sign-in-and-roles-who-may-do-what"
    assert slug("Exactly-once ticket creation") == "exactly-once-ticket-creation"


def test_the_readme_is_a_front_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} characters; move reference material to docs/"


def test_every_picture_in_docs_images_is_shown_by_a_doc_and_every_one_shown_is_there():
    """`make pictures` renews docs/images/ from the browser tests (PICTURES=1) and fails on a picture the docs show
    that no test took; here, nothing in the folder is an orphan a test would never renew, and nothing shown is
    missing."""
    shown = docs_pictures()
    assert shown and shown == {p.stem for p in (ROOT / "docs" / "images").glob("*.png")}
