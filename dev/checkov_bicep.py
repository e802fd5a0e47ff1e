"""checkov on infra/, offline (`make lint`, with .venv-checkov's checkov): fails on any parsing error, on any
failed check not accepted with a reason in infra/checkov-skips.txt, on an accepted one that no longer occurs, and on
any resource the Bicep declares that checkov did not parse (and so never checked): it lists every declared resource
it saw scanned. Child resources are declared at the top level with `parent:`, since pycep keeps only the last
child nested inside a resource; a nested declaration fails the gate.

pycep (checkov's Bicep parser, 0.5.1) predates Bicep's `extension` statement, so the files that declare the
Microsoft Graph extension are analysed from a copy with that one declaration line turned into a comment; every
resource in them is still parsed and checked. checkov's own exit code ignores parsing errors: the summary is read.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_PYTHON = CHECKOV.parent / "python"
_EXTENSION = re.compile(r"^extension\s+\S+.*$", re.MULTILINE)
_RESOURCE = re.compile(
    r"^(?P<indent>[ \t]*)resource\s+(?P<name>\w+)\s+'(?P<type>[^'@]+)(?:@[^']*)?'\s+(?P<existing>existing\s+)?=",
    re.MULTILINE,
)


def declared(infra: Path = INFRA) -> list[dict[str, object]]:
    """Every `resource` the Bicep files declare: file, type, name, whether `existing`, whether nested."""
    found = []
    for path in sorted(infra.rglob("*.bicep")):
        for match in _RESOURCE.finditer(path.read_text()):
            found.append({"file": path.relative_to(infra).as_posix(), "type": match["type"], "name": match["name"],
                          "existing": bool(match["existing"]), "nested": bool(match["indent"])})  # fmt: skip
    return found


def unscanned(declarations: list[dict[str, object]], parsed: list[dict[str, object]]) -> list[str]:
    """Declared resources checkov did not parse (or nested ones it cannot), each as a line saying what to do."""
    seen = {(p["file"], p["type"], p["name"]) for p in parsed}
    problems = []
    for resource in declarations:
        where = f"{resource['file']}: {resource['type']} {resource['name']}"
        if resource["nested"]:
            problems.append(f"{where} is declared inside another resource: declare it at the top level with parent:")
        elif (resource["file"], resource["type"], resource["name"]) not in seen:
            problems.append(f"{where} is declared but checkov did not parse it, so nothing checks it")
    return problems


def accepted(infra: Path = INFRA) -> dict[tuple[str, str], str]:
    skips = {}
    for line in (infra / "checkov-skips.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        entry = re.fullmatch(r"(\S+) (\S+) -- (.+)", line.strip())
        if entry is None:
            raise SystemExit(f"infra/checkov-skips.txt: not '<check> <resource> -- <reason>': {line}")
        skips[(entry.group(1), entry.group(2))] = entry.group(3)
    return skips


def run(infra: Path = INFRA) -> tuple[dict[str, Any], list[dict[str, object]]]:
    """checkov's report, and every resource its Bicep runner parsed (dev/checkov_inventory.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "infra"
        shutil.copytree(infra, copy)
        for path in copy.rglob("*.bicep"):
            text = path.read_text()
            path.write_text(_EXTENSION.sub(lambda m: "// " + m.group(0) + "  (hidden from pycep 0.5.1)", text))
        output = subprocess.run(
            [str(CHECKOV), "-d", str(copy), "--framework", "bicep", "--skip-download", "-o", "json", "--quiet"],
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        listing = subprocess.run(
            [str(CHECKOV_PYTHON), str(ROOT / "dev" / "checkov_inventory.py"), str(copy)],
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
    try:
        report = json.loads(output.stdout)
        parsed = json.loads(listing.stdout)
    except ValueError:
        print(output.stdout[-2000:], output.stderr[-2000:], listing.stderr[-2000:], file=sys.stderr)
        raise SystemExit("checkov did not report JSON") from None
    return (report if isinstance(report, dict) else report[0]), parsed


def main(infra: Path = INFRA) -> int:
    report, parsed = run(infra)
    summary = report["summary"]
    failed = {(f["check_id"], f["resource"]): f for f in report["results"].get("failed_checks", [])}
    skips = accepted(infra)
    problems = []
    if summary["parsing_errors"]:
        problems.append(f"{summary['parsing_errors']} Bicep file(s) could not be parsed")
    for key, finding in failed.items():
        if key not in skips:
            problems.append(f"{key[0]} {key[1]} ({finding['file_path']}): {finding['check_name']}")
    for key in skips.keys() - failed.keys():
        problems.append(f"{key[0]} {key[1]} is accepted in infra/checkov-skips.txt but no longer occurs")
    declarations = [d for d in declared(infra) if not d["existing"]]
    missing = unscanned(declarations, parsed)
    problems.extend(missing)
    print(f"checkov: {summary['passed']} passed, {len(failed)} failed ({len(failed.keys() & skips.keys())} accepted), "
          f"{summary['parsing_errors']} parsing errors, {summary['resource_count']} resources")  # fmt: skip
    seen = {(p["file"], p["type"], p["name"]) for p in parsed}
    scanned = [d for d in declarations if not d["nested"] and (d["file"], d["type"], d["name"]) in seen]
    print(f"checkov scanned {len(scanned)} of the {len(declarations)} resources declared in infra/:")
    for resource in scanned:
        print(f"  {resource['file']}: {resource['type']} {resource['name']}")
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
