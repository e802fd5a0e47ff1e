"""The ServiceNow simulator's state in a file, so `make run` is one instance across restarts.

A real instance keeps its records, its number counter, its OAuth clients and the tokens it issued; the
connector's store keeps tickets that point at them. A simulator that forgot them on restart would hand out
INC0010001 a second time and reject tokens the connector still holds. So `make run` restores the state from
`LOCAL_DATA_DIR/servicenow-simulator.json` and the simulator saves it after every request that may change it
(`ServiceNowSimulator.on_change`), replacing the file atomically (a crash leaves the old state or the new,
never half of one). It holds the OAuth client secret and tokens, so it is readable by its owner only.
`make reset` removes it together with the connector's store and secrets.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dev.servicenow.instance import ServiceNowSimulator
from dev.servicenow.state import Grant, OAuthClient
from shared.secrets import replace_private_file

STATE_FILE = "servicenow-simulator.json"
SECOND_STATE_FILE = "servicenow-simulator-2.json"  # make run's second instance
VERSION = 1


def snapshot(simulator: ServiceNowSimulator) -> dict[str, Any]:
    """What a restart must not lose. Authorization codes (single use, a minute long) and faults are not kept."""
    with simulator.lock:
        return {
            "version": VERSION,
            "number": simulator._number,
            "tables": simulator.tables,
            "fields": {table: sorted(names) for table, names in simulator.fields.items()},
            "clients": [asdict(client) for client in simulator.clients.values()],
            "access_tokens": {token: asdict(grant) for token, grant in simulator.access_tokens.items()},
            "refresh_tokens": {token: asdict(grant) for token, grant in simulator.refresh_tokens.items()},
            "current_access": simulator.current_access,
            "journal": [list(entry) for entry in simulator.journal],
            "signed_in_user": simulator.signed_in_user,
        }


def restore(simulator: ServiceNowSimulator, data: dict[str, Any]) -> None:
    if data.get("version") != VERSION:
        raise ValueError(f"the simulator state has version {data.get('version')!r}, not {VERSION}")
    with simulator.lock:
        simulator._number = int(data["number"])
        # Tables the code seeds and an older state file lacks (groups, companies) keep their seeded records.
        simulator.tables = {**simulator.tables, **{table: dict(rows) for table, rows in data["tables"].items()}}
        for table, names in data["fields"].items():  # a table's fields: the code's and the saved ones
            simulator.fields.setdefault(table, set()).update(names)
        simulator.clients = {c["client_id"]: OAuthClient(**c) for c in data["clients"]}
        simulator.access_tokens = {token: Grant(**grant) for token, grant in data["access_tokens"].items()}
        simulator.refresh_tokens = {token: Grant(**grant) for token, grant in data["refresh_tokens"].items()}
        simulator.current_access = dict(data["current_access"])
        simulator.journal = [(str(a), str(b), str(c)) for a, b, c in data["journal"]]
        if data["signed_in_user"] in simulator.tables.get("sys_user", {}):
            simulator.signed_in_user = data["signed_in_user"]


class SimulatorFile:
    """Keeps one simulator's state in `path`: `load` once at start, then `save` after each change."""

    def __init__(self, simulator: ServiceNowSimulator, path: Path) -> None:
        self.simulator = simulator
        self.path = path
        self._lock = threading.Lock()  # one writer at a time, so an older snapshot never replaces a newer one

    def load(self) -> bool:
        """Restore the saved state; False when there is none yet (a fresh instance)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        restore(self.simulator, json.loads(text))
        return True

    def save(self) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_private_file(self.path, json.dumps(snapshot(self.simulator)))


def keep(simulator: ServiceNowSimulator, data_dir: Path, name: str = STATE_FILE) -> tuple[SimulatorFile, bool]:
    """Restore the simulator from `data_dir` (the file `name`: each simulated instance has its own) and save it
    there after every change; whether state was found."""
    kept = SimulatorFile(simulator, data_dir / name)
    found = kept.load()
    simulator.on_change = kept.save
    return kept, found
