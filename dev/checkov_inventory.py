"""Every resource checkov's Bicep runner parsed in a folder, as JSON: `[{"file", "type", "name", "existing"}]`.

Run with .venv-checkov's Python by dev/checkov_bicep.py (checkov's report lists only the resources a check
failed or passed on, not the ones it parsed). These definitions are what checkov's checks scan: a resource its
parser (pycep) drops is never checked, which is how nested child resources went unchecked.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def inventory(folder: Path) -> list[dict[str, object]]:
    runner = importlib.import_module("checkov.bicep.runner").Runner()
    runner_filter = importlib.import_module("checkov.runner_filter").RunnerFilter(framework=["bicep"])
    runner.run(root_folder=str(folder), runner_filter=runner_filter)
    parsed = []
    for path, definition in runner.definitions.items():
        for name, conf in (definition.get("resources") or {}).items():
            parsed.append({"file": Path(path).relative_to(folder).as_posix(), "type": str(conf.get("type")),
                           "name": str(name), "existing": bool(conf.get("existing"))})  # fmt: skip
    return sorted(parsed, key=lambda r: (str(r["file"]), str(r["name"])))


if __name__ == "__main__":
    print(json.dumps(inventory(Path(sys.argv[1]).resolve())))
