"""The Microsoft tenants the connector reads (docs/design.md#several-microsoft-tenants): the home tenant, always there
unless paused, and the tenants an admin added, each `pending` until its own admin consents, `confirming` while the
connector waits for that consent to reach a token (confirmation.py), then `active`.

All of them live in one store document under its ETag, so two admins adding at once never lose one another's
tenant, and a consent `state` is taken once: the write that clears it is conditional on the version it read.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from secure_score.discovery import discover, same_cloud
from shared.auth import new_state
from shared.problems import FieldError, NotConfigured, NotFound, SecureScoreUnavailable, ValidationFailed
from shared.runs import TENANTS
from shared.services import Services
from shared.store import update_document
from shared.text import clean_line, printable
from shared.tickets import HOME, TENANT_ID, tenant_filter

DOCUMENT = TENANTS
CONSENT_LIFETIME = timedelta(days=14)
CONFIRMATION_WINDOW = timedelta(hours=24)  # how long a reported consent is tried (confirmation.py)
CONSENT_PATH = "/api/tenants/consent"
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
STATES = ("pending", "confirming", "active", "paused", "removed")


@dataclass(frozen=True)
class Added:
    tenant: dict[str, Any]
    consent_url: str | None  # None: the home tenant, resumed


def _load(services: Services) -> tuple[dict[str, Any], str | None]:
    found = services.store.get_document(DOCUMENT)
    return (dict(found[0]), found[1]) if found else ({"tenants": {}}, None)


_CHANGING = threading.Lock()  # this instance's writers queue up; the ETag settles races with other instances


def change(services: Services, edit: Any) -> Any:
    """Apply `edit(document) -> answer` under the document's ETag, re-reading on a lost race."""
    with _CHANGING:
        return _change(services, edit)


def _change(services: Services, edit: Any) -> Any:
    def edited(document: dict[str, Any]) -> Any:
        document.setdefault("tenants", {})
        return edit(document)

    return update_document(services.store, DOCUMENT, edited)


def registered(services: Services) -> dict[str, dict[str, Any]]:
    """Every tenant an admin added (any state), by id."""
    return dict(_load(services)[0].get("tenants") or {})


def home_state(services: Services) -> str:
    return str(_load(services)[0].get("home", {}).get("state") or "active")


def to_read(services: Services) -> list[str]:
    """The tenants a refresh reads: the home tenant unless paused, and the active ones; the one read longest ago
    first, so a run cut short by its deadline never leaves the same tenants unread twice in a row. A `confirming`
    tenant is not among them: only its confirmation reads it (confirmation.py), and makes it active."""
    document = _load(services)[0]
    home = document.get("home") or {}
    chosen = [(_last_at(home), HOME)] if home.get("state") != "paused" else []
    for tenant_id, record in sorted((document.get("tenants") or {}).items()):
        if record.get("state") == "active":
            chosen.append((_last_at(record), tenant_id))
    return [tenant for _, tenant in sorted(chosen)]


def _last_at(record: dict[str, Any]) -> str:
    last = record.get("lastRefresh")
    return str(last.get("at") or "") if isinstance(last, dict) else ""


def is_confirming(record: dict[str, Any]) -> bool:
    """`confirming`; or `pending` with a consent Microsoft reported (how a tenant waited before that state)."""
    state = record.get("state")
    return state == "confirming" or (state == "pending" and bool(record.get("consentReportedAt")))


def confirmation_until(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record.get("consentReportedAt"))) + CONFIRMATION_WINDOW


def confirmation_schedule(record: dict[str, Any]) -> dict[str, Any]:
    """Where a confirming tenant's confirmation stands, as its row shows it: since, tries, the next scheduled try
    (None: at the next refresh), until."""
    confirm = record.get("confirm") or {}
    return {"since": record.get("consentReportedAt"), "attempts": int(confirm.get("attempts") or 0),
            "nextAttemptAt": confirm.get("nextAt"), "until": confirmation_until(record).isoformat()}  # fmt: skip


def consent_url(services: Services, tenant_id: str, state: str) -> str:
    settings = services.settings
    query = urlencode({"client_id": settings.reader_app_client_id or "", "scope": f"{settings.graph_url}/.default",
                       "redirect_uri": f"{settings.app_url}{CONSENT_PATH}", "state": state})  # fmt: skip
    return f"{settings.entra_authority}/{tenant_id}/v2.0/adminconsent?{query}"


def _fresh_consent(services: Services) -> dict[str, str]:
    now = services.clock()
    state = new_state()
    return {"state": state, "hash": _hash(state), "expiresAt": (now + CONSENT_LIFETIME).isoformat()}


def renew_link(services: Services, record: dict[str, Any]) -> None:
    """A new consent link on `record` (a single-use state, 14 days); the old one stops working."""
    consent = _fresh_consent(services)
    record.update(consent={k: consent[k] for k in ("hash", "expiresAt")}, consentState=consent["state"])


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode("ascii", "replace")).hexdigest()


def home_id(services: Services) -> str | None:
    """The deployment's own tenant id (Services.home_tenant_id)."""
    return services.home_tenant_id()


def add(services: Services, body: Any, added_by: str) -> Added:
    """Register a tenant by id or domain as `pending`, with its consent link (a single-use state, 14 days).
    The home tenant again is refused, unless it is paused: then it is read again (no consent needed)."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    errors = [FieldError(printable(k, 64), "is not a member; known: tenant, name") for k in body if k not in
              ("tenant", "name")]  # fmt: skip
    raw, name = body.get("tenant"), body.get("name")
    wanted = raw.strip().lower() if isinstance(raw, str) else ""
    if not (TENANT_ID.fullmatch(wanted) or _DOMAIN.fullmatch(wanted)):
        errors.append(FieldError("tenant", "must be a tenant id (a GUID) or a domain such as contoso.onmicrosoft.com"))
    if "name" in body and not _good_name(name):
        errors.append(FieldError("name", NAME_RULE))
    if errors:
        raise ValidationFailed(errors)
    home = home_id(services)
    if home is None:  # never register what may be the home tenant itself: it would be read twice
        raise SecureScoreUnavailable(
            "The connector cannot tell its own Microsoft tenant yet, so it cannot tell whether this one is another.",
            retry_after=300,
            remediation="Set ENTRA_TENANT_ID (the Bicep does), or wait until Secure Score is read once "
            "(POST /api/recommendations/refresh).",
        )
    if not services.settings.reader_app_client_id and wanted != home:
        raise NotConfigured(
            "Adding a tenant needs the connector's multi-tenant reader app, and READER_APP_CLIENT_ID is not set.",
            remediation="Deploy with the Bicep (it creates the reader app and sets READER_APP_CLIENT_ID), or set it "
            "to your own multi-tenant app's client id (admin guide: Add a tenant).",
        )
    found = discover(services, wanted)  # an id too: one Entra ID knows, before a link is made for it
    tenant_id = found.id
    if tenant_id != home:
        same_cloud(services, found, home)
    if tenant_id == home:
        if home_state(services) != "paused":
            raise ValidationFailed([FieldError("tenant", "is this deployment's own tenant, which is read already")])
        resume_home(services)
        return Added({"id": tenant_id, "home": True, "state": "active"}, None)
    consent = _fresh_consent(services)
    now = services.clock().isoformat()

    def register(document: dict[str, Any]) -> dict[str, Any]:
        held = document["tenants"].get(tenant_id)
        renewing = held is not None and held.get("state") == "pending" and expired(held, services.clock())
        if held is not None and held.get("state") != "removed" and not renewing:
            raise ValidationFailed([FieldError("tenant", f"is registered already ({held.get('state')})")])
        if renewing:  # its link expired unused: the same pending tenant, a new link
            held.update(consent={k: consent[k] for k in ("hash", "expiresAt")}, consentState=consent["state"])
            return dict(held)
        record = {"id": tenant_id, "name": (name or "").strip() or (wanted if wanted != tenant_id else tenant_id),
                  "domain": wanted if wanted != tenant_id else None, "state": "pending", "addedAt": now,
                  "addedBy": added_by, "consent": {k: consent[k] for k in ("hash", "expiresAt")},
                  "consentState": consent["state"]}  # fmt: skip
        document["tenants"][tenant_id] = record
        return record

    record = change(services, register)
    return Added(record, consent_url(services, tenant_id, consent["state"]))


NAME_RULE = "must be one line of 1-100 characters"


def _good_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name.strip()) and clean_line(name, 100) == name.strip()


def rename(services: Services, tenant_id: str, body: Any) -> dict[str, Any]:
    """PATCH `{"name"}`: a tenant's name as the page and the API show it (one added by domain is named by its domain
    until then); the home tenant's too. Nothing else changes."""
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", 'must be a JSON object: {"name": "..."}')])
    errors = [FieldError(printable(k, 64), "is not a member; known: name") for k in body if k != "name"]
    if not _good_name(body.get("name")):
        errors.append(FieldError("name", NAME_RULE))
    if errors:
        raise ValidationFailed(errors)
    name, wanted, home = str(body["name"]).strip(), tenant_id.lower(), home_id(services)

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        if wanted == (home or "-"):
            record = document.setdefault("home", {})
            record["name"] = name
            return {"id": home, "home": True, "name": name, "state": record.get("state") or "active"}
        record = document["tenants"].get(wanted)
        if record is None or record.get("state") == "removed":
            raise NotFound(f"The connector reads no tenant '{printable(tenant_id, 64)}'.")
        record["name"] = name
        return shown(record)

    return change(services, edit)  # type: ignore[no-any-return]


def pause_or_remove(services: Services, tenant_id: str) -> dict[str, Any]:
    """DELETE: the home tenant is paused; another stops being read (its tickets stay, marked as its)."""
    wanted = tenant_id.lower()
    home = home_id(services)
    if wanted == (home or "-"):

        def pause(document: dict[str, Any]) -> dict[str, Any]:
            document.setdefault("home", {})["state"] = "paused"
            return {"id": home, "home": True, "state": "paused"}

        return change(services, pause)  # type: ignore[no-any-return]

    def remove(document: dict[str, Any]) -> dict[str, Any]:
        record = document["tenants"].get(wanted)
        if record is None or record.get("state") == "removed":
            raise NotFound(f"The connector reads no tenant '{printable(tenant_id, 64)}'.")
        record.update(state="removed", consent=None, consentState=None, consentReportedAt=None, confirm=None)
        return dict(record)

    return change(services, remove)  # type: ignore[no-any-return]


_SHOWN = ("id", "name", "domain", "state", "addedAt", "addedBy", "consentedAt", "lastRefresh", "lastError")


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """A tenant record as the API shows it: never its consent state (the link is given to admins only)."""
    answer = {k: record.get(k) for k in _SHOWN}
    answer["consentExpiresAt"] = (record.get("consent") or {}).get("expiresAt")
    return answer


def removal(services: Services, tenant_id: str) -> dict[str, Any]:
    """DELETE's answer: what changed, and what only the tenant's own admin can do."""
    done = pause_or_remove(services, tenant_id)
    if done.get("home"):
        return {**done, "detail": "The connector no longer reads this organization's own Secure Score; its tickets "
                "stay. POST /api/tenants with this tenant's id reads it again."}  # fmt: skip
    return {
        **shown(done),
        "detail": "The connector no longer reads this tenant; its tickets stay in ServiceNow and in the connector, "
        "marked as the tenant's.",
        "removeApp": "The connector cannot remove its reader app from a tenant it no longer reads. That tenant's "
        "Global Administrator removes it in the Microsoft Entra admin center: Enterprise applications > "
        f"(filter: Application ID {services.settings.reader_app_client_id or 'the reader app'}) > Properties > "
        "Delete. Until then the app keeps its consent but the connector never uses it.",
    }


def resume_home(services: Services) -> None:
    change(services, lambda d: d.setdefault("home", {}).update(state="active"))


def record_run(services: Services, tenant_id: str, last: dict[str, Any], error: dict[str, Any] | None) -> None:
    """A refresh's outcome on its tenant's record: the last run, and the error that stopped it (or none)."""

    def note(document: dict[str, Any]) -> None:
        record = document.setdefault("home", {}) if tenant_id == HOME else document["tenants"].get(tenant_id)
        if record is None:
            return
        record["lastRefresh"] = last
        _set_error(services, tenant_id, record, error)

    change(services, note)


def note_error(services: Services, tenant_id: str, error: dict[str, Any]) -> None:
    """An error met outside a refresh (the consent's proof read) on the tenant's row."""

    def note(document: dict[str, Any]) -> None:
        record = document["tenants"].get(tenant_id)
        if record is not None:
            _set_error(services, tenant_id, record, error)

    change(services, note)


def _set_error(services: Services, tenant_id: str, record: dict[str, Any], error: dict[str, Any] | None) -> None:
    record["lastError"] = error
    waiting = record.get("state") == "confirming"  # consent was received: no new link while it is confirmed
    if tenant_id != HOME and error and error.get("code") == "tenant_not_consented" and not record.get("consent") \
            and not waiting:  # fmt: skip
        renew_link(services, record)  # never consented after all, or withdrawn: its row shows a new link


def expired(record: dict[str, Any], now: datetime) -> bool:
    consent = record.get("consent") or {}
    return not consent or datetime.fromisoformat(str(consent.get("expiresAt"))) <= now


def _holding(document: dict[str, Any], state: str, now: datetime) -> dict[str, Any] | None:
    digest = _hash(state)
    for record in (document.get("tenants") or {}).values():
        consent = record.get("consent") or {}
        if consent.get("hash") == digest and not expired(record, now) and record.get("state") != "removed":
            return dict(record)
    return None


def find_consent(services: Services, state: str) -> dict[str, Any] | None:
    """The tenant whose current link carries `state` (nothing is used up), or None."""
    return _holding(_load(services)[0], state, services.clock())


def take_consent(services: Services, state: str, *, reported_at: str) -> dict[str, Any] | None:
    """Use the state up (once, whoever races: the write is conditional on the version read): Microsoft reported the
    consent, so the tenant is `confirming` from now on; None when the state was used or expired meanwhile."""
    now = services.clock()

    def take(document: dict[str, Any]) -> dict[str, Any] | None:
        found = _holding(document, state, now)
        if found is None:
            return None
        document["tenants"][found["id"]].update(state="confirming", consent=None, consentState=None,
                                                consentReportedAt=reported_at, confirm=None)  # fmt: skip
        return found

    return change(services, take)  # type: ignore[no-any-return]


def resolve(services: Services, value: str | None) -> str | None:
    """A `tenant=` filter against the tenants the connector knows (removed ones too: their tickets stay)."""
    return tenant_filter(value, home_id(services), registered(services))


def readable(services: Services) -> list[str]:
    """HOME and every registered tenant not removed (what `tenant=all` lists)."""
    return [HOME, *sorted(t for t, r in registered(services).items() if r.get("state") != "removed")]
