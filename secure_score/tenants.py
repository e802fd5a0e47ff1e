"""The Microsoft tenants the connector reads (docs/design.md#several-microsoft-tenants): the home tenant, always there
unless paused, and the tenants an admin added, each `pending` until its own admin consents, `confirming` while the
connector waits for that consent to reach a token (confirmation.py), then `active`.

All of them live in one store document under its ETag, so two admins adding at once never lose one another's
tenant, and a consent `state` is taken once: the write that clears it is conditional on the version it read. This
module writes it; every feature reads it through shared/tenant_records.py. What a refresh writes on every run (its
outcome, the fan-out's lease) is each tenant's own run document instead (tenant_runs.py).
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
from shared import tenant_records
from shared.auth import new_state
from shared.problems import FieldError, NotConfigured, NotFound, SecureScoreUnavailable, ValidationFailed
from shared.services import Services
from shared.store import update_document
from shared.tenant_records import DOCUMENT, FANOUT_MEMBER, REMOVED, Tenant, Tenants
from shared.text import clean_line, printable
from shared.tickets import HOME, TENANT_ID

CONSENT_LIFETIME = timedelta(days=14)
CONFIRMATION_WINDOW = timedelta(hours=24)  # how long a reported consent is tried (confirmation.py)
CONSENT_PATH = "/api/tenants/consent"
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
STATES = ("pending", "confirming", "active", "paused", "removed")


@dataclass(frozen=True)
class Added:
    tenant: Tenant
    consent_url: str | None  # None: the home tenant, resumed

    def shown(self) -> dict[str, Any]:
        if self.consent_url is None:
            return {"id": self.tenant.id, "home": True, "state": self.tenant.state}
        return {**shown(self.tenant), "consentUrl": self.consent_url}


_CHANGING = threading.Lock()  # this instance's writers queue up; the ETag settles races with other instances


def change(services: Services, edit: Any) -> Any:
    """Apply `edit(document) -> answer` to the stored document (as JSON) under its ETag, re-reading on a lost race."""
    with _CHANGING:
        return _change(services, edit)


def _change(services: Services, edit: Any) -> Any:
    def edited(document: dict[str, Any]) -> Any:
        document.setdefault("tenants", {})
        return edit(document)

    return update_document(services.store, DOCUMENT, edited)


def added_in(document: dict[str, Any], tenant_id: str) -> Tenant | None:
    """An added tenant's record in the document being changed (None: no such tenant)."""
    found = document["tenants"].get(tenant_id)
    return None if found is None else Tenant.from_json(found)


def home_in(document: dict[str, Any]) -> Tenant:
    """The home tenant's record in the document being changed (empty until something is noted on it)."""
    return Tenant.from_json(document.get("home"))


def put_in(document: dict[str, Any], tenant_id: str, record: Tenant) -> None:
    """`record` as `tenant_id`'s (HOME: the home tenant's) in the document being changed."""
    if tenant_id == HOME:
        document["home"] = record.to_json()
    else:
        document["tenants"][tenant_id] = record.to_json()


def to_read(services: Services) -> list[str]:
    """The tenants a refresh reads: the home tenant unless paused, and the active ones; the one read longest ago
    first, so a run cut short by its deadline never leaves the same tenants unread twice in a row. A `confirming`
    tenant is not among them: only its confirmation reads it (confirmation.py), and makes it active."""
    document = tenant_records.load(services.store)
    chosen = [(document.home.last_refresh_at, HOME)] if document.home.state != "paused" else []
    for tenant_id, record in sorted(document.added.items()):
        if record.active:
            chosen.append((record.last_refresh_at, tenant_id))
    return [tenant for _, tenant in sorted(chosen)]


def being_read(services: Services) -> set[str]:
    """The tenants a refresh reads (`to_read`), in no order: the tenants document alone, no run documents."""
    document = tenant_records.registrations(services.store)
    home = {HOME} if document.home.state != "paused" else set()
    return home | {tenant_id for tenant_id, record in document.added.items() if record.active}


def confirmation_until(record: Tenant) -> datetime:
    return datetime.fromisoformat(str(record.consent_reported_at)) + CONFIRMATION_WINDOW


def confirmation_schedule(record: Tenant) -> dict[str, Any]:
    """Where a confirming tenant's confirmation stands, as its row shows it: since, tries, the next scheduled try
    (None: at the next refresh), until."""
    return {"since": record.consent_reported_at, "attempts": record.confirm_attempts,
            "nextAttemptAt": (record.confirm or {}).get("nextAt"),
            "until": confirmation_until(record).isoformat()}  # fmt: skip


def consent_url(services: Services, tenant_id: str, state: str) -> str:
    settings = services.settings
    query = urlencode({"client_id": settings.reader_app_client_id or "", "scope": f"{settings.graph_url}/.default",
                       "redirect_uri": f"{settings.app_url}{CONSENT_PATH}", "state": state})  # fmt: skip
    return f"{settings.entra_authority}/{tenant_id}/v2.0/adminconsent?{query}"


def _fresh_consent(services: Services) -> dict[str, str]:
    now = services.clock()
    state = new_state()
    return {"state": state, "hash": _hash(state), "expiresAt": (now + CONSENT_LIFETIME).isoformat()}


def renew_link(services: Services, record: Tenant) -> Tenant:
    """`record` with a new consent link (a single-use state, 14 days); the old one stops working."""
    consent = _fresh_consent(services)
    return record.updated(consent={k: consent[k] for k in ("hash", "expiresAt")}, consent_state=consent["state"])


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
        if tenant_records.load(services.store).home_state != "paused":
            raise ValidationFailed([FieldError("tenant", "is this deployment's own tenant, which is read already")])
        resume_home(services)
        return Added(Tenant(id=tenant_id, state="active"), None)
    consent = _fresh_consent(services)
    now = services.clock().isoformat()

    link = {k: consent[k] for k in ("hash", "expiresAt")}

    def register(document: dict[str, Any]) -> Tenant:
        held = added_in(document, tenant_id)
        renewing = held is not None and held.state == "pending" and held.consent_expired(services.clock())
        if held is not None and not held.removed and not renewing:
            raise ValidationFailed([FieldError("tenant", f"is registered already ({held.state})")])
        if held is not None and renewing:  # its link expired unused: the same pending tenant, a new link
            record = held.updated(consent=link, consent_state=consent["state"])
        else:
            record = Tenant().updated(
                id=tenant_id, name=(name or "").strip() or (wanted if wanted != tenant_id else tenant_id),
                domain=wanted if wanted != tenant_id else None, state="pending", added_at=now, added_by=added_by,
                consent=link, consent_state=consent["state"])  # fmt: skip
        put_in(document, tenant_id, record)
        return record

    record = change(services, register)
    if record.consent_state == consent["state"] and record.added_at == now:  # a new registration: no run state yet
        services.store.delete_document(tenant_records.run_document(tenant_id))  # (a removed one's, before)
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

    def edit(document: dict[str, Any]) -> dict[str, Any] | Tenant:
        if wanted == (home or "-"):
            record = home_in(document).updated(name=name)
            put_in(document, HOME, record)
            return {"id": home, "home": True, "name": name, "state": record.state or "active"}
        found = added_in(document, wanted)
        if found is None or found.removed:
            raise NotFound(f"The connector reads no tenant '{printable(tenant_id, 64)}'.")
        put_in(document, wanted, found.updated(name=name))
        return found.updated(name=name)

    answer = change(services, edit)
    if isinstance(answer, Tenant):
        return shown(tenant_records.with_run(services.store, wanted, answer))
    return answer  # type: ignore[no-any-return]


def removal(services: Services, tenant_id: str) -> dict[str, Any]:
    """DELETE: the home tenant is paused; another stops being read (its tickets stay, marked as its). The answer
    says what changed, and what only the tenant's own admin can do."""
    wanted = tenant_id.lower()
    home = home_id(services)
    if wanted == (home or "-"):
        change(services, lambda document: put_in(document, HOME, home_in(document).updated(state="paused")))
        return {"id": home, "home": True, "state": "paused", "detail": "The connector no longer reads this "
                "organization's own Secure Score; its tickets stay. POST /api/tenants with this tenant's id reads it "
                "again."}  # fmt: skip

    def remove(document: dict[str, Any]) -> Tenant:
        record = added_in(document, wanted)
        if record is None or record.removed:
            raise NotFound(f"The connector reads no tenant '{printable(tenant_id, 64)}'.")
        record = record.updated(state=REMOVED, consent=None, consent_state=None, consent_reported_at=None,
                                confirm=None)  # fmt: skip
        put_in(document, wanted, record)
        return record

    return {
        **shown(tenant_records.with_run(services.store, wanted, change(services, remove))),
        "detail": "The connector no longer reads this tenant; its tickets stay in ServiceNow and in the connector, "
        "marked as the tenant's.",
        "removeApp": "The connector cannot remove its reader app from a tenant it no longer reads. That tenant's "
        "Global Administrator removes it in the Microsoft Entra admin center: Enterprise applications > "
        f"(filter: Application ID {services.settings.reader_app_client_id or 'the reader app'}) > Properties > "
        "Delete. Until then the app keeps its consent but the connector never uses it.",
    }


def shown(record: Tenant) -> dict[str, Any]:
    """A tenant record as the API shows it: never its consent state (the link is given to admins only)."""
    return {"id": record.id, "name": record.name, "domain": record.domain, "state": record.state,
            "addedAt": record.added_at, "addedBy": record.added_by, "consentedAt": record.consented_at,
            "lastRefresh": record.last_refresh, "lastError": record.last_error,
            "consentExpiresAt": record.consent_expires_at}  # fmt: skip


def resume_home(services: Services) -> None:
    change(services, lambda document: put_in(document, HOME, home_in(document).updated(state="active")))


def note_queued(services: Services, at: str, queued: int) -> None:
    """A refresh was queued at `at` for `queued` tenants: the page counts them done as their outcomes land
    (overview.py). The same write drops the run state an earlier version kept on each record whose run document
    exists now (tenant_runs.py): it is no longer read, and only made the document larger."""
    runs = set(services.store.list_documents(tenant_records.RUN_PREFIX))

    def note(document: dict[str, Any]) -> None:
        document[FANOUT_MEMBER] = {"at": at, "queued": queued}
        records = [(HOME, document.get("home")), *document["tenants"].items()]
        for tenant_id, record in records:
            if isinstance(record, dict) and tenant_records.run_document(tenant_id) in runs:
                for member in tenant_records.RUN_MEMBERS:
                    record.pop(member, None)

    change(services, note)


def _holding(document: Tenants, state: str, now: datetime) -> str | None:
    """The tenant whose current, unexpired link carries `state`."""
    digest = _hash(state)
    for tenant_id, record in document.added.items():
        if (record.consent or {}).get("hash") == digest and not record.consent_expired(now) and not record.removed:
            return tenant_id
    return None


def find_consent(services: Services, state: str) -> Tenant | None:
    """The tenant whose current link carries `state` (nothing is used up), or None."""
    document = tenant_records.load(services.store)
    found = _holding(document, state, services.clock())
    return None if found is None else document.added[found]


def take_consent(services: Services, state: str, *, reported_at: str) -> Tenant | None:
    """Use the state up (once, whoever races: the write is conditional on the version read): Microsoft reported the
    consent, so the tenant is `confirming` from now on; None when the state was used or expired meanwhile. The
    answer is the record as it was found."""
    now = services.clock()

    def take(document: dict[str, Any]) -> Tenant | None:
        parsed = Tenants.from_json(document)
        found = _holding(parsed, state, now)
        if found is None:
            return None
        record = parsed.added[found]
        put_in(document, found, record.updated(state="confirming", consent=None, consent_state=None,
                                               consent_reported_at=reported_at, confirm=None))  # fmt: skip
        return record

    return change(services, take)  # type: ignore[no-any-return]
