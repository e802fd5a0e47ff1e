"""Provisioning's check per added ServiceNow connection, on the default connection's page
(docs/design.md#connections-and-routes): each one's state and last sync, with where to look for the rest (`GET
/api/provisioning?connection={id}`)."""

from __future__ import annotations

from typing import Any

from provisioning.checks import Check
from shared.connections import connection_state
from shared.runs import last_sync
from shared.services import Services

_FIXES = {
    "not_connected": "Open {connect} and sign in to that instance as its integration user, then press Allow.",
    "reauthorization_required": "Open {connect} again and press Allow (its refresh token was rejected or expired).",
    "not_configured": "Add the connection again with its clientSecret (DELETE, then POST /api/connections).",
    "degraded": "Give the app's managed identity the 'Key Vault Secrets Officer' role on the vault.",
}


def connect_path(services: Services) -> str:
    connection = services.connection
    return "/api/connect" if connection.is_default else f"/api/connect?connection={connection.id}"


def _state(services: Services, scoped: Services) -> dict[str, Any]:
    return connection_state(lambda: scoped.tokens.load(), scoped.connection.instance_url, services.clock())


def connection_checks(services: Services) -> list[Check]:
    checks = []
    for connection in services.connections():
        if connection.is_default:
            continue
        scoped = services.for_connection(connection)
        state = _state(services, scoped)
        connect = connect_path(scoped)
        name = f"{connection.id} ({connection.instance_url})"
        if state["state"] != "connected":
            detail = f"Connection {name}: {state['state'].replace('_', ' ')}."
            checks.append(Check("servicenow_connection", False, detail, _FIXES[state["state"]].format(connect=connect)))
            continue
        last = last_sync(scoped.store) or {}
        if last.get("status") == "failed":
            errors = "; ".join(str(e) for e in (last.get("errors") or [])[:3])
            checks.append(Check("servicenow_connection", False, f"Connection {name}: its last sync ({last.get('at')})"
                                f" failed: {errors}", f"GET /api/provisioning?connection={connection.id} says "
                                "what to fix."))  # fmt: skip
            continue
        detail = f"Connection {name}: connected as {state.get('connectedAs') or 'an unidentified user'}"
        checks.append(Check("servicenow_connection", True, detail + (f", last sync {last['at']}." if last else ".")))
    return checks
