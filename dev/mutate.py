"""`make mutate`: mutation testing of the modules that keep one customer from reaching another (pyproject.toml
[tool.mutmut] names them and the test files that exercise them).

mutmut plants one small bug at a time (a changed comparison, a dropped argument, a swapped constant) in a copy of the
code under `mutants/`, and runs the tests that reach the changed function: a mutant the tests notice is killed, one
they do not is a survivor. This prints the mutation score and every survivor with its change, so each can be killed
by a test or said harmless. Not part of `make test`: it takes a long while (runs are cached in `mutants/`, so a second
run only tests what changed). Usage: `python dev/mutate.py [--max-children N] [--report-only]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = [sys.executable, "-m", "mutmut"]


def _mutmut(*args: str, check: bool = True) -> str:
    done = subprocess.run([*MUTMUT, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(done.returncode)
    return done.stdout


def results() -> dict[str, str]:
    """Every mutant by name, with its status (killed, survived, timeout, suspicious, no tests, ...)."""
    found = {}
    for line in _mutmut("results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def change(name: str) -> str:
    """A survivor's change: its file and the lines it swaps (from `mutmut show`)."""
    shown = _mutmut("show", name, check=False).splitlines()
    where = next((line[4:] for line in shown if line.startswith("--- ")), "?")
    lines = [line for line in shown if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    return f"{where}: " + " | ".join(line.strip() for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--report-only", action="store_true", help="print the last run's results without running")
    options = parser.parse_args()
    if not options.report_only:
        subprocess.run([*MUTMUT, "run", "--max-children", str(options.max_children)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    statuses = results()
    counts = Counter(statuses.values())
    tested = sum(n for status, n in counts.items() if status not in ("no tests", "skipped", "not checked"))
    killed = counts["killed"] + counts["timeout"]  # a mutant that makes the tests hang is noticed too
    score = 100 * killed / tested if tested else 0.0
    print(f"mutation score = {score:.1f}% ({killed} of {tested} mutants killed; " +
          ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")")  # fmt: skip
    survivors = sorted(name for name, status in statuses.items() if status in ("survived", "suspicious", "no tests"))
    if survivors:
        print(f"survivors ({len(survivors)}):")
        for name in survivors:
            print(f"  {name} [{statuses[name]}]: {change(name)}")


if __name__ == "__main__":
    main()
