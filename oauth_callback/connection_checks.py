"""Provisioning's check per added ServiceNow connection, on the default connection's page
(docs/design.md#connections-and-routes): each one's state and last sync, with where to look for the rest (`GET
/api/provisioning?connection={id}`)."""

from __future__ import annotations

from oauth_callback.checks import Check
from oauth_callback.connections import connection_state, scoped_sync
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


def connection_checks(services: Services) -> list[Check]:
    checks = []
    for connection in services.connections():
        if connection.is_default:
            continue
        state = connection_state(services, connection)
        connect = connect_path(services.for_connection(connection))
        name = f"{connection.id} ({connection.instance_url})"
        if state["state"] != "connected":
            detail = f"Connection {name}: {state['state'].replace('_', ' ')}."
            checks.append(Check("servicenow_connection", False, detail, _FIXES[state["state"]].format(connect=connect)))
            continue
        last = scoped_sync(services, connection) or {}
        if last.get("status") == "failed":
            errors = "; ".join(str(e) for e in (last.get("errors") or [])[:3])
            checks.append(Check("servicenow_connection", False, f"Connection {name}: its last sync ({last.get('at')})"
                                f" failed: {errors}", f"GET /api/provisioning?connection={connection.id} says "
                                "what to fix."))  # fmt: skip
            continue
        detail = f"Connection {name}: connected as {state.get('connectedAs') or 'an unidentified user'}"
        checks.append(Check("servicenow_connection", True, detail + (f", last sync {last['at']}." if last else ".")))
    return checks
