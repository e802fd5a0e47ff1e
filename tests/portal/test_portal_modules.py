"""The page's scripts as ES modules (docs/portal.md#how-the-page-is-built): index.html loads one entry module and
preloads the rest; every module is served from the allow-list as text/javascript; each import names a module of
the page and a name it exports; no module imports itself back through others; none is over 400 lines. The checks
run on planted graphs too, so none passes vacuously. The modules' behaviour is the browser tests' (test_portal*.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from portal.page import CSP, FILES, MODULES, page_response, static_response
from shared.problems import NotFound
from tests.conftest import ROOT

STATIC = ROOT / "portal" / "static"
ENTRY = "app.js"
# `import { a, b as c } from "./x.js"`, `import * as x from "./x.js"`, `export { a } from "./x.js"`, across lines too.
_IMPORT = re.compile(r"^(import|export)\s+(\{[^}]*\}|\*\s+as\s+\w+)\s+from\s+\"([^\"]+)\";", re.M)
_BARE_IMPORT = re.compile(r"^import\s+[\"']", re.M)
_DYNAMIC_IMPORT = re.compile(r"\bimport\s*\(")
_EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([\w$]+)", re.M)
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
_PRELOAD = re.compile(r"<link\s+rel=\"modulepreload\"\s+href=\"/api/portal/static/([^\"]+)\">")


def imports(source: str) -> list[tuple[str, str, list[str]]]:
    """(kind, module, names) for each static import or re-export; `*` stands for a whole namespace."""
    found = []
    for kind, what, target in _IMPORT.findall(source):
        names = ["*"] if what.startswith("*") else [n.split(" as ")[0].strip() for n in what.strip("{} \n").split(",")]
        found.append((kind, target, [n for n in names if n]))
    return found


def exports(source: str) -> set[str]:
    names = set(_EXPORT.findall(source))
    for kind, _, listed in imports(source):
        if kind == "export":
            names.update(listed)
    return names


def graph(sources: dict[str, str]) -> dict[str, list[str]]:
    """Each module's relative imports, by file name; anything else (a URL, a bare name, a folder) is a problem."""
    edges = {}
    for name, source in sources.items():
        targets = [target for _, target, _ in imports(source)]
        outside = [t for t in targets if not re.fullmatch(r"\./[\w-]+\.js", t)]
        assert not outside, f"{name} imports {outside}: only ./<module>.js of the page, nothing from elsewhere"
        edges[name] = [t[2:] for t in targets]
    return edges


def circle(edges: dict[str, list[str]]) -> list[str] | None:
    """One import circle (a, b, ..., a), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def reachable(edges: dict[str, list[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, []))
    return seen


def problems(sources: dict[str, str]) -> list[str]:
    """What is wrong with a set of modules: an import of a module or a name that is not there, a circle, a module
    the entry never reaches, a classic script's leftovers (names handed over through window)."""
    found = []
    edges = graph(sources)
    for name, source in sources.items():
        for _, target, names in imports(source):
            if target[2:] not in sources:
                found.append(f"{name} imports {target}, which is not a module of the page")
                continue
            missing = sorted(set(names) - exports(sources[target[2:]]) - {"*"})
            if missing:
                found.append(f"{name} imports {missing} from {target}, which does not export them")
        if _BARE_IMPORT.search(source) or _DYNAMIC_IMPORT.search(source):
            found.append(f"{name} has an import that is not `import {{...}} from` or `import * as`")
        if re.search(r"\bwindow\.[A-Z]\w*\s*=", source):
            found.append(f"{name} hands something over through window")
    if found_circle := circle(edges):
        found.append("import circle: " + " -> ".join(found_circle))
    unreached = sorted(set(sources) - reachable(edges, ENTRY))
    if unreached:
        found.append(f"never imported from {ENTRY}: {unreached}")
    return found


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(STATIC.glob("*.js"))}


def test_the_allow_list_is_the_page_s_files_and_the_modules_are_served_as_javascript(sources):
    assert set(MODULES) == set(sources), "portal/page.py MODULES must list every module of portal/static, no other"
    assert set(FILES) == {p.name for p in STATIC.iterdir()} - {"index.html"}
    for name in MODULES:
        served = static_response(name)
        assert served.status_code == 200 and served.get_body() == (STATIC / name).read_bytes()
        assert served.headers["Content-Type"] == "text/javascript; charset=utf-8"  # a module's type is checked
        assert (
            served.headers["X-Content-Type-Options"] == "nosniff" and served.headers["Content-Security-Policy"] == CSP
        )
        assert served.headers["Cache-Control"] == "no-cache"
    for name in ("app.mjs", "App.js", "view", "api.js.map", "index.html", "page.py"):
        with pytest.raises(NotFound):
            static_response(name)


def test_the_page_loads_one_entry_module_and_preloads_the_others(sources):
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = _SCRIPT.findall(html)
    assert scripts == [(' type="module" src="/api/portal/static/app.js"', "")], scripts  # no inline or classic script
    preloads = _PRELOAD.findall(html)
    assert sorted(preloads) == sorted(set(MODULES) - {ENTRY}) and len(preloads) == len(set(preloads))
    assert "script-src 'self'" in page_response().headers["Content-Security-Policy"]


def test_each_module_imports_what_it_uses_from_modules_of_the_page_without_a_circle(sources):
    assert problems(sources) == []


def test_no_module_is_over_400_lines(sources):
    sizes = {name: source.count("\n") for name, source in sources.items()}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


PLANTED = {
    "a missing module": {"app.js": 'import { x } from "./gone.js";\n'},
    "a name not exported": {"app.js": 'import { y } from "./b.js";\n', "b.js": "export const x = 1;\n"},
    "a circle": {
        "app.js": 'import { b } from "./b.js";\nexport const a = 1;\n',
        "b.js": 'import { c } from "./c.js";\nexport const b = 1;\n',
        "c.js": 'import { a } from "./app.js";\nexport const c = 1;\n',
    },
    "a module never imported": {"app.js": "export const a = 1;\n", "b.js": "export const b = 1;\n"},
    "a helper through window": {"app.js": "window.SecurityCenterRoutes = (core) => core;\n"},
    "a dynamic import": {"app.js": 'const later = import("./b.js");\n', "b.js": "export const b = 1;\n"},
}


@pytest.mark.parametrize("plant", sorted(PLANTED))
def test_each_check_fails_on_a_planted_problem(plant):
    assert problems(PLANTED[plant]), plant
    assert problems({"app.js": 'import * as b from "./b.js";\nimport {\n  x,\n  y as z,\n} from "./b.js";\n',
                     "b.js": 'export function x() {}\nexport { y } from "./c.js";\n',
                     "c.js": "export const y = 2;\n"}) == []  # fmt: skip


def test_an_import_from_elsewhere_is_refused():
    with pytest.raises(AssertionError, match="nothing from elsewhere"):
        graph({"app.js": 'import { x } from "https://cdn.example.com/x.js";\n'})


def test_the_modules_of_the_page_are_the_ones_documented():
    documented = set(re.findall(r"`([\w-]+\.js)`", Path(ROOT / "docs" / "portal.md").read_text(encoding="utf-8")))
    assert set(MODULES) <= documented, sorted(set(MODULES) - documented)
