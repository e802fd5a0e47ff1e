"""The Entra simulator's state in a file, so `make run` keeps each tenant's consent across restarts.

A tenant whose admin consented stays consented in real life; a simulator that forgot it on restart would refuse
the connector's next token for a tenant its store calls active. So `make run` keeps the tenants added on the
simulator's page, the service principals consent created (and what was withdrawn since) and the signed-in role in
`LOCAL_DATA_DIR/entra-simulator.json`, replaced atomically after each change. The app registrations are `make
run`'s own and are registered again at each start; the signing key is new each run (tokens live an hour).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dev.entra.apps import ServicePrincipal
from dev.entra.simulator import EntraSimulator
from dev.entra.tenants import BUILT_IN, PUBLIC_CLOUD, Tenant
from shared.secrets import replace_private_file

STATE_FILE = "entra-simulator.json"
VERSION = 1


def snapshot(simulator: EntraSimulator) -> dict[str, Any]:
    builtin = {t.id for t in BUILT_IN}
    with simulator.lock:
        return {
            "version": VERSION,
            "tenants": [asdict(t) for t in simulator.tenants.values() if t.id not in builtin],
            "principals": [
                {"tenant": tenant, "client_id": client, **asdict(principal)}
                for (tenant, client), principal in simulator.principals.items()
            ],
            "signed_in_role": simulator.signed_in_role,
        }


def restore(simulator: EntraSimulator, data: dict[str, Any]) -> None:
    if data.get("version") != VERSION:
        raise ValueError(f"the Entra simulator state has version {data.get('version')!r}, not {VERSION}")
    with simulator.lock:
        for tenant in data["tenants"]:
            restored = Tenant(tenant["id"], tenant["domain"], tenant["name"], tuple(tenant["other_domains"]),
                              str(tenant.get("cloud") or PUBLIC_CLOUD))  # fmt: skip
            simulator.tenants[restored.id] = restored
        for entry in data["principals"]:
            tenant, client = entry.pop("tenant"), entry.pop("client_id")
            entry["roles"] = tuple(entry["roles"])
            simulator.principals[(tenant, client)] = ServicePrincipal(**entry)
        simulator.signed_in_role = str(data["signed_in_role"])


def keep(simulator: EntraSimulator, data_dir: Path) -> bool:
    """Restore the simulator from `data_dir` and save it there after every change; whether state was found."""
    path = data_dir / STATE_FILE
    lock = threading.Lock()  # one writer at a time, so an older snapshot never replaces a newer one

    def save() -> None:
        with lock:
            replace_private_file(path, json.dumps(snapshot(simulator)))

    try:
        found = True
        restore(simulator, json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        found = False
    simulator.on_change = save
    return found
