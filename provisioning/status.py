"""`GET /api/provisioning`: is everything healthy, and if not, exactly what to fix.

The checks are the original connector's troubleshooting guide turned into code: settings, the client
secret, the connection, the refresh token's remaining life, and (live) reachability, IP filtering,
the token, and read and write access to the ticket table.
"""

from __future__ import annotations

import logging
from typing import Any

from provisioning.alert_checks import alert_checks
from provisioning.checks import Check
from provisioning.connection_checks import connect_path, connection_checks
from provisioning.template_checks import poison_checks
from provisioning.tenant_checks import home_poisoned, tenant_checks
from shared.graph import ControlRefused
from shared.problems import ConnectorError, NotConnected, ReauthorizationRequired
from shared.runs import RefreshState, refresh_state, sync_state
from shared.services import Services
from shared.tokens import RECONNECT_REMEDIATION, RECONNECT_WARNING, TokenBundle

log = logging.getLogger(__name__)

CORRELATION_PREFIX = "m365sec:"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def provisioning_status(services: Services, *, live: bool) -> dict[str, Any]:
    """The default connection's health with the app-wide checks (Secure Score, tenants, the other connections);
    for another connection (`services.for_connection`), that connection's own."""
    settings = services.settings
    checks: list[Check] = []
    body: dict[str, Any] = {
        "state": "not_configured",
        "connection": services.connection.id,
        "instance": settings.instance_url,
        "connectedAt": None,
        "connectedAs": None,
        "accessTokenExpiresAt": None,
        "refreshTokenExpiresAt": None,
        "lastSync": None,
        "checks": checks,
    }
    sync, failures = _sync_state(services)
    body["lastSync"] = sync
    if settings.issues:
        checks.append(
            Check(
                "settings",
                False,
                "; ".join(f"{i.setting} {i.message}" for i in settings.issues),
                "Fix the app settings named here (docs/settings.md), then restart the app.",
            )
        )
        return _finish(body)
    checks.append(Check("settings", True, f"Instance {settings.instance_url}, table '{settings.table}'."))

    try:
        services.tokens.client_secret()
        checks.append(Check("client_secret", True, "The OAuth client secret is available."))
        bundle = services.tokens.load()
    except ConnectorError as exc:
        checks.append(Check("client_secret", False, exc.detail, exc.remediation))
        return _finish(body)
    except Exception as exc:  # the secret store itself failed (Key Vault RBAC, network)
        log.warning("Key Vault (or the local store) could not be read (%s)", type(exc).__name__)
        checks.append(
            Check(
                "secret_store",
                False,
                f"The secret store could not be read ({type(exc).__name__}).",
                "Give the app's managed identity the 'Key Vault Secrets Officer' role on the vault named by "
                "KEY_VAULT_URL, and check that the vault allows the app's network.",
            )
        )
        return _finish(body)

    if bundle is None:
        body["state"] = "not_connected"
        checks.append(
            Check(
                "connection",
                False,
                "The connector has not been authorized in ServiceNow yet.",
                f"Open {connect_path(services)} and sign in to ServiceNow as the integration user, then press Allow.",
            )
        )
        return _finish(body)

    body.update(
        connectedAt=_iso(bundle.connected_at),
        connectedAs=bundle.connected_as,
        accessTokenExpiresAt=_iso(bundle.expires_at),
        refreshTokenExpiresAt=_iso(bundle.refresh_expires_at),
    )
    now = services.clock()
    if bundle.instance != settings.instance_url or bundle.needs_reauthorization(now):
        body["state"] = "reauthorization_required"
        reason = (
            f"The tokens were issued by {bundle.instance}, not {settings.instance_url}."
            if bundle.instance != settings.instance_url
            else "ServiceNow rejected the refresh token, or it has expired."
        )
        checks.append(Check("connection", False, reason, RECONNECT_REMEDIATION))
        return _finish(body)
    checks.append(Check("connection", True, f"Connected as {bundle.connected_as or 'an unidentified user'}."))
    checks.append(_refresh_lifetime(bundle, now))
    checks.append(_sync_check(sync))
    notes: dict[str, Any] = {}
    if services.connection.is_default:  # what the whole app does, on the default connection's page
        checks.append(_secure_score_check(services, live=live))
        checks.extend(tenant_checks(services, live=live))
        checks.extend(poison_checks(services))
        checks.extend(alert_checks(services))
        checks.extend(connection_checks(services))
        scored = _secure_score_state(services).failures or {}
        notes = {k: v for k, v in scored.items() if isinstance(v, dict) and v.get("kind") == "control"}
        failures = {**failures, **{k: v for k, v in scored.items() if k not in notes}}
    checks.append(_failed_items(failures))
    checks.extend(_note_checks(notes) if services.connection.is_default else [])
    if live:
        checks.extend(_live_checks(services))
        if any(c.name == "token_valid" and not c.ok and c.remediation == RECONNECT_REMEDIATION for c in checks):
            body["state"] = "reauthorization_required"
            return _finish(body)
    # The connection's state is ServiceNow's alone: a tenant's checks say how that tenant is
    # (docs/design.md#where-the-admin-reads-what).
    body["state"] = "connected" if all(c.ok for c in checks if c.group == "servicenow") else "degraded"
    return _finish(body)


_SYNC_FIX = "Fix what the error names; the next run resumes from where the last one stopped."
# What to do about the failure that stopped a status sync run, by its problem code (docs/api.md: Problems).
_SYNC_FIXES = {
    "servicenow_unavailable": (
        "Nothing to change in the connector if it passes: ServiceNow did not answer or was busy, and the next run "
        "(STATUS_SYNC_SCHEDULE, every 5 minutes by default) resumes where this one stopped. If it keeps failing, "
        "check that the instance is up and awake (developer instances hibernate) and reachable from the app."
    ),
    "servicenow_rejected": (
        "ServiceNow refused the sync's request: check that the integration user may read and update the ticket "
        "table (SERVICENOW_TABLE) and that the field map names existing fields; the next run resumes."
    ),
    "reauthorization_required": RECONNECT_REMEDIATION,
    "not_connected": RECONNECT_REMEDIATION,
    "internal_error": (
        "The connector failed on its own side: its log names the error. The next run tries again; if it keeps "
        "failing, report the log line."
    ),
}


def _sync_check(last: dict[str, Any] | None) -> Check:
    if last is None:
        return Check("status_sync", True, "The status sync has not run yet.")
    if last.get("status") == "failed":
        errors = [str(e) for e in last.get("errors") or []]
        stopped = errors[-1] if errors else "no error was recorded"  # the run's own failure comes last
        before = f" Before it stopped: {'; '.join(errors[:-1])}." if len(errors) > 1 else ""
        return Check(
            "status_sync",
            False,
            f"The last status sync ({last.get('at')}) stopped before it finished, at: {stopped}.{before}",
            _SYNC_FIXES.get(stopped.split(":", 1)[0], _SYNC_FIX),
        )
    if last.get("status") == "partial":
        return Check(
            "status_sync",
            False,
            f"The last status sync ({last.get('at')}) stopped early: {'; '.join(last.get('errors') or [])}",
            "Nothing to fix if it happens once (ServiceNow was slow): the next run goes on from where it stopped. "
            "If every run stops, check the instance's response times (System Diagnostics > Stats).",
        )
    return Check(
        "status_sync",
        True,
        f"Last run {last.get('at')}: {last.get('changed', 0)} changed, {last.get('adopted', 0)} adopted, "
        f"{last.get('missing', 0)} missing, {last.get('durationMs', 0)} ms.",
    )


def _sync_state(services: Services) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The last sync run and the items that failed (kept in the sync state, so this is one read)."""
    try:
        state = sync_state(services.store)
    except Exception:  # the store itself is unreachable: provisioning still answers
        log.warning("The ticket store could not be read for the last sync")
        return None, {}
    return state.last, state.failures or {}


_ITEM_KINDS = {
    "ticket": "ticket",
    "record": "ServiceNow record",
    "conflict": "ticket",
    "control": "Secure Score control",
}


def _secure_score_state(services: Services) -> RefreshState:
    try:
        return refresh_state(services.store)
    except Exception:
        log.warning("The ticket store could not be read for the Secure Score state")
        return RefreshState()


def _secure_score_check(services: Services, *, live: bool) -> Check:
    """The home tenant's: permission, reachability and the last refresh, with the exact grant when missing."""
    check = _home_secure_score(services, live=live)
    check.group = "tenant"  # this organization's (a check of the tenant group without `tenant` is the home tenant's)
    return check


def _home_secure_score(services: Services, *, live: bool) -> Check:
    if live:
        try:
            services.graph.secure_scores(1)
        except ConnectorError as exc:
            return Check("secure_score", False, exc.detail, exc.remediation)
    poisoned = home_poisoned(services)
    if poisoned is not None:
        return poisoned
    last = _secure_score_state(services).last
    if last is None:
        detail = "Secure Score has not been read yet: it is read on SECURE_SCORE_SCHEDULE (every 4 hours by default)"
        return Check("secure_score", True, detail + " and on POST /api/recommendations/refresh.")
    if last.get("status") == "failed":
        error = last.get("error") or {}
        return Check(
            "secure_score",
            False,
            f"The last Secure Score refresh ({last.get('at')}) failed: {error.get('code')}: {error.get('detail')}",
            error.get("remediation") or "Fix what the error names; the next refresh tries again.",
        )
    warnings = [w for w in last.get("warnings") or [] if isinstance(w, dict)]
    if last.get("status") == "partial" or warnings:
        forbidden = next((w for w in warnings if w.get("code") == "secure_score_forbidden"), None)
        said = "; ".join(f"{w.get('code')}: {w.get('detail')}" for w in warnings[:5]) or "it stopped early"
        return Check(
            "secure_score",
            False,
            f"The last Secure Score refresh ({last.get('at')}) kept what Graph sent, with warnings: {said}",
            str((forbidden or (warnings[0] if warnings else {})).get("remediation") or "")
            or "Nothing to fix in the connector: the next refresh reads Graph again.",
        )
    return Check(
        "secure_score",
        True,
        f"Last refresh {last.get('at')}: {last.get('controls', 0)} controls ({last.get('scored', 0)} scored for "
        f"this tenant), {last.get('resolved', 0)} resolved, "
        f"{last.get('reopened', 0)} reopened, {last.get('written', 0)} notes written"
        + (" (Microsoft Graph answers now)." if live else "."),
    )


def _listed(entries: list[dict[str, Any]]) -> str:
    entries.sort(key=lambda e: str(e.get("at")), reverse=True)
    shown = [
        f"{_ITEM_KINDS.get(str(e.get('kind')), 'item')} {_item_name(e)}: {e.get('code')}: "
        f"{e.get('detail')} (attempts: {e.get('attempts')})"
        + (f" To fix: {e['remediation']}" if e.get("remediation") else "")
        for e in entries[:10]
    ]
    more = f"; and {len(entries) - 10} more" if len(entries) > 10 else ""
    return "; ".join(shown) + more


def _failed_items(failures: dict[str, Any]) -> Check:
    entries = [e for e in failures.values() if isinstance(e, dict)]
    if not entries:
        return Check("failed_items", True, "No ticket or ServiceNow record is failing.")
    return Check(
        "failed_items",
        False,
        f"{len(entries)} item(s) failed and were skipped; everything else goes on: {_listed(entries)}",
        "Fix what each names (a ticket's `error` says the same); each is retried by the next status syncs, up to "
        "5 times. A pending ticket that stopped retrying resumes when its recommendation is requested again.",
    )


_NOTES_FIX = ("Fix what each names (the ticket's `secureScore` says the same); each is written again by the next "
              "refreshes and status syncs, up to 5 times.")  # fmt: skip


def _note_checks(notes: dict[str, Any]) -> list[Check]:
    """`secure_score_notes`, per tenant: the notes a write-back could not write to Secure Score (a tenant's, never
    the ServiceNow connection's). A documented refusal is no failure, not even one an earlier version recorded."""
    by_tenant: dict[str, list[dict[str, Any]]] = {"": []}  # "": the home tenant, whose check names no tenant
    for key, entry in notes.items():
        if entry.get("code") != ControlRefused.code:
            by_tenant.setdefault(key.removeprefix("control:").rpartition("|")[0], []).append(entry)
    checks = []
    for tenant, entries in sorted(by_tenant.items()):
        if not entries:
            detail = "Every ticket's note is in Secure Score, or waits for its next write."
            checks.append(Check("secure_score_notes", True, detail, group="tenant"))
            continue
        detail = f"{len(entries)} note(s) could not be written to Secure Score; everything else goes on: "
        checks.append(Check("secure_score_notes", False, detail + _listed(entries), _NOTES_FIX, tenant or None,
                            group="tenant"))  # fmt: skip
    return checks


def _item_name(entry: dict[str, Any]) -> str:
    """A control by its id and the ticket whose note failed; anything else by its number, else its id."""
    if entry.get("kind") == "control":
        return f"{entry.get('id')}" + (f" (ticket {entry['number']})" if entry.get("number") else "")
    return str(entry.get("number") or entry.get("id"))


def _finish(body: dict[str, Any]) -> dict[str, Any]:
    body["checks"] = [c.to_json() for c in body["checks"]]
    return body


def _refresh_lifetime(bundle: TokenBundle, now: Any) -> Check:
    left = bundle.refresh_expires_at - now
    if left <= RECONNECT_WARNING:
        return Check(
            "refresh_token_lifetime",
            False,
            f"The refresh token expires in {max(left.days, 0)} day(s), at {bundle.refresh_expires_at.isoformat()}; "
            "after that, ticket creation and sync stop.",
            "Open /api/connect before then and authorize again as the integration user.",
        )
    return Check(
        "refresh_token_lifetime", True, f"The refresh token is valid until {bundle.refresh_expires_at.isoformat()}."
    )


def _failed(name: str, exc: ConnectorError) -> Check:
    return Check(name, False, exc.detail, exc.remediation)


def _live_checks(services: Services) -> list[Check]:
    table = services.settings.table
    tokens = services.tokens
    servicenow = services.servicenow
    try:
        tokens.access_token()
    except (ReauthorizationRequired, NotConnected) as exc:
        return [Check("token_valid", False, exc.detail, RECONNECT_REMEDIATION)]
    except ConnectorError as exc:
        return [_failed("servicenow_reachable", exc)]
    checks = [Check("token_valid", True, "ServiceNow accepts the connector's access token.")]
    try:
        rows, _ = servicenow.table_list(
            tokens,
            table,
            {
                "sysparm_query": f"correlation_idSTARTSWITH{CORRELATION_PREFIX}^ORDERBYDESCsys_updated_on",
                "sysparm_fields": "sys_id",
                "sysparm_limit": "1",
            },
        )
    except ReauthorizationRequired as exc:
        return [Check("token_valid", False, exc.detail, RECONNECT_REMEDIATION)]
    except ConnectorError as exc:
        name = "servicenow_reachable" if exc.code == "servicenow_unavailable" else "table_readable"
        if exc.extra.get("serviceNow", {}).get("status") == 403 and not exc.extra["serviceNow"].get("message"):
            name = "ip_access"
        return [*checks, _failed(name, exc)]
    checks.append(Check("servicenow_reachable", True, f"{services.settings.instance_url} answers."))
    checks.append(Check("table_readable", True, f"The integration user can read '{table}'."))
    if not rows:
        checks.append(
            Check(
                "table_writable",
                True,
                f"Not verified yet: the connector has created no record in '{table}'; the first ticket will tell.",
            )
        )
        return checks
    try:
        # An empty PATCH changes nothing but passes through the table's write ACLs.
        servicenow.table_request(tokens, "PATCH", table, sys_id=str(rows[0]["sys_id"]), json_body={})
    except ConnectorError as exc:
        checks.append(_failed("table_writable", exc))
    else:
        checks.append(Check("table_writable", True, f"The integration user can update records in '{table}'."))
    return checks
