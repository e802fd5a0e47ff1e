"""`/api/connections`: the ServiceNow instances the connector works with (docs/admin-guide.md section 11).

The `default` connection is the settings' one and cannot be added or removed here. Another is added with its
instance, OAuth client and (optionally) table and field map; its client secret goes to the secret store at once and
is never returned, and it gets a push-notice key of its own. Removing one revokes its tokens, erases its secrets
(deleted, then purged where the vault allows) and its sync state, but never while a route sends tickets to it or an
open ticket lives on it: those would be lost track of. An id added again after a removal is a new connection: its
secrets and sync state have new names, and the tickets of the earlier one stay with the instance they live on.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets as random_bytes
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from create_ticket.api import fence, unfence
from oauth_callback.authorization import disconnect
from oauth_callback.forgetting import erase_secrets
from shared.config import InvalidSetting, parse_instance
from shared.connections import CONNECTION_ID, DEFAULT, DOCUMENT, Connection, connection_state, from_record, stored
from shared.egress import refusal
from shared.fieldmap import parse_field_map
from shared.problems import Conflict, FieldError, ValidationFailed
from shared.runs import last_sync
from shared.services import Services
from shared.store import update_document
from shared.text import clean_line, one_line_ok, printable
from shared.tickets import Ticket

log = logging.getLogger(__name__)

MEMBERS = ("id", "instance", "clientId", "clientSecret", "table", "fieldMap")
MAX_CONNECTIONS = 50
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,79}$")
REMOVED = "removed"  # the connections document's member: ids removed before (id -> when), so an id added again is new
EVENTS = "/api/servicenow/events"


def shown(services: Services, connection: Connection, record: dict[str, Any] | None = None) -> dict[str, Any]:
    scoped = services.for_connection(connection)
    found = last_sync(scoped.store)
    return {
        "id": connection.id,
        "default": connection.is_default,
        "instance": connection.instance_url,
        "clientId": connection.client_id,
        "table": connection.table,
        "addedAt": (record or {}).get("addedAt"),
        "addedBy": (record or {}).get("addedBy"),
        **connection_state(lambda: scoped.tokens.load(), connection.instance_url, services.clock()),
        "lastSync": found,
        "connectUrl": f"/api/connect?connection={connection.id}",
        "push": {
            "url": EVENTS if connection.is_default else f"{EVENTS}?connection={connection.id}",
            "secretName": connection.push_secret_name,
        },  # a name, never a value (docs/status-sync.md)
    }


def list_connections(services: Services) -> dict[str, Any]:
    records = stored(services.store)
    return {"connections": [shown(services, c, records.get(c.id)) for c in services.connections()],
            "redirectUri": services.settings.redirect_uri}  # fmt: skip


def add_connection(services: Services, body: Any, added_by: str) -> dict[str, Any]:
    """Validate everything, store the secret, then the connection (a lost race on the id is `validation_failed`)."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    errors = [FieldError(printable(k, 64), f"is not a member; known: {', '.join(MEMBERS)}") for k in body
              if k not in MEMBERS]  # fmt: skip
    wanted = body.get("id")
    if not (isinstance(wanted, str) and CONNECTION_ID.fullmatch(wanted)) or wanted == DEFAULT:
        errors.append(FieldError("id", "must be 1-32 of a-z, 0-9 and '-' (not starting or ending with '-'), not "
                                       "'default'"))  # fmt: skip
    instance = None
    try:
        raw = body.get("instance")
        if not isinstance(raw, str):
            raise InvalidSetting("it must be an instance name or URL")
        instance = parse_instance(raw)
        if services.settings.in_azure and not instance.startswith("https://"):  # loopback http is for local runs
            raise InvalidSetting("it must be an https:// URL")
        if services.settings.in_azure:  # checked again on each new connection to it (shared/egress.py)
            _public(services, instance)
    except InvalidSetting as exc:
        errors.append(FieldError("instance", f"is not valid: {exc}"))
    client_id, secret = body.get("clientId"), body.get("clientSecret")
    if not (isinstance(client_id, str) and 0 < len(client_id) <= 100 and client_id.isascii() and
            clean_line(client_id, 100) == client_id):  # fmt: skip
        errors.append(FieldError("clientId", "must be the OAuth client's Client ID (System OAuth > Application "
                                             "Registry), one line of at most 100 characters"))  # fmt: skip
    if not (isinstance(secret, str) and 0 < len(secret) <= 500 and one_line_ok(secret)):
        errors.append(FieldError("clientSecret", "must be the OAuth client's Client Secret, one line"))
    table = body.get("table", "incident")
    if not (isinstance(table, str) and _TABLE.fullmatch(table)):
        errors.append(FieldError("table", "must be a ServiceNow table name such as 'incident'"))
        table = "incident"
    field_map = body.get("fieldMap", {})
    try:
        parse_field_map(field_map, str(table))
    except ValueError as exc:
        errors.append(FieldError("fieldMap", str(exc)))
    if errors:
        raise ValidationFailed(errors[:10])
    record = {"id": wanted, "instance": instance, "clientId": client_id, "table": table, "fieldMap": field_map,
              "addedAt": services.clock().isoformat(), "addedBy": added_by}  # fmt: skip
    # The id is taken first, under the document's ETag; only then are the secrets written, so a refused add (an id
    # taken, by a typo or a concurrent admin) never replaces the secret of the connection that holds it.
    _change(services, lambda document: _register(document, record))
    connection = from_record(record)
    try:
        services.secrets.set(connection.client_secret_name, str(secret))
        # Each connection's own push-notice key: a notice signed with another connection's key is refused.
        services.secrets.set(connection.push_secret_name, base64.b64encode(random_bytes.token_bytes(32)).decode())
    except Exception:
        _change(services, lambda document: document["connections"].pop(connection.id, None))
        raise
    log.info("Connection %s added for %s by %s", wanted, instance, added_by)
    return shown(services, connection, record)


def _public(services: Services, instance: str) -> None:
    """In Azure the instance's name must resolve, and only to public addresses."""
    parts = urlsplit(instance)
    host = parts.hostname or ""
    try:
        addresses = services.resolver(host, parts.port or 443)
    except OSError:
        addresses = []
    why = refusal(host, addresses, public_only=True)
    if why is not None:
        raise InvalidSetting(why)


def _register(document: dict[str, Any], record: dict[str, Any]) -> None:
    connections = document["connections"]
    held = connections.get(record["id"])
    if held is not None:
        raise ValidationFailed([FieldError("id", f"is taken by another connection ({held.get('instance')})")])
    if len(connections) >= MAX_CONNECTIONS:
        raise ValidationFailed([FieldError("id", f"the connector holds {MAX_CONNECTIONS} connections already")])
    if record["id"] in (document.get(REMOVED) or {}):  # used before: new names for its secrets and sync state
        record["tag"] = record.get("tag") or uuid.uuid4().hex
    connections[record["id"]] = record


def _change(services: Services, edit: Callable[[dict[str, Any]], object]) -> None:
    """`edit(document)` on the connections document (its `connections` a dict), under its ETag."""

    def edited(document: dict[str, Any]) -> None:
        document["connections"] = dict(document.get("connections") or {})
        edit(document)

    update_document(services.store, DOCUMENT, edited)


ROUTES_VIEW = "/api/portal#routes"  # where the rules are changed, on the page (docs/portal.md)
SHOWN_TICKETS = 20


def in_use(connection_id: str, rules: list[str], tickets: list[Ticket]) -> Conflict:
    """One refusal naming every reason a connection cannot go (docs/admin-guide.md section 11): the rules that send
    tickets to it, by name, and the open tickets that live on it, by number, with where each is changed."""
    reasons, steps = [], []
    if rules:
        named = ", ".join(f"'{printable(r, 100)}'" for r in rules[:10]) + (f" and {len(rules) - 10} more"
                                                                            if len(rules) > 10 else "")  # fmt: skip
        reasons.append(f"{len(rules)} rule(s) of the routes send tickets to it ({named})")
        steps.append(f"change or remove those rules on the Routes view ({ROUTES_VIEW}, or PUT /api/routes)")
    if tickets:
        numbers = [t.number or f"ticket {t.id} (being created)" for t in tickets]
        shown = ", ".join(numbers[:SHOWN_TICKETS]) + (f" and {len(numbers) - SHOWN_TICKETS} more"
                                                      if len(numbers) > SHOWN_TICKETS else "")  # fmt: skip
        reasons.append(f"{len(tickets)} open ticket(s) live on it ({shown}): removing it would stop tracking them")
        steps.append("resolve or close those tickets in ServiceNow and let the status sync bring that back")
    first = "; then ".join(steps)
    return Conflict(
        f"Connection {connection_id} is in use: {'; and '.join(reasons)}. Nothing was removed.",
        remediation=f"{first[:1].upper()}{first[1:]}; then remove the connection.",
        extra={
            "rules": list(rules),
            "openTickets": [t.number or t.id for t in tickets][:100],
            "routesUrl": ROUTES_VIEW,
        },
    )


def remove_connection(services: Services, connection_id: str, *, force: bool) -> dict[str, Any]:
    """Revoke its tokens (`force`: forget them even when ServiceNow cannot revoke them), erase its secrets and sync
    state, and forget it; the answer says what remains of it, where, and for how long."""
    if connection_id == DEFAULT:
        raise Conflict("The default connection is the app settings' (SERVICENOW_INSTANCE and the rest); it is "
                       "changed there, not removed here.", remediation="Change the app settings, or disconnect "
                       "it with POST /api/disconnect.")  # fmt: skip
    connection = services.connection_named(connection_id)
    added_at = str((stored(services.store).get(connection_id) or {}).get("addedAt") or "")
    # Written into the routes document under its ETag: a concurrent PUT /api/routes naming this connection and this
    # removal conflict, whichever writes last (create_ticket/routing/saving.py `fence`).
    routed = fence(services, connection_id, added_at)
    try:
        open_tickets = [t for t, _ in services.store.list_tickets() if connection.serves(t) and t.is_open]
        if routed or open_tickets:
            raise in_use(connection_id, routed, open_tickets)
        disconnect(services, force=force, connection=connection_id)
        erased = erase_secrets(services, connection)  # a vault that cannot be reached stops the removal: try again
    except Exception:
        if not routed:  # the fence was written: take it back
            unfence(services, connection_id)
        raise
    services.store.delete_document(connection.sync_state_name)  # its run state, watermark and sweep go with it

    def forget(document: dict[str, Any]) -> None:
        document["connections"].pop(connection_id, None)
        document[REMOVED] = {**(document.get(REMOVED) or {}), connection_id: services.clock().isoformat()}

    _change(services, forget)
    log.info("Connection %s (%s) removed", connection_id, connection.instance_url)
    return {"id": connection_id, "removed": True, **erased.answer(connection)}
