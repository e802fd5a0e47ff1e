"""The Microsoft tenants the connector reads, as stored (docs/design.md#several-microsoft-tenants): one store document,
`DOCUMENT`, holds the home tenant's record and every added tenant's by id: what an admin changes (registration,
consent, pause, names). Each tenant's run state (`RUN_MEMBERS`: its last refresh, its error, the fan-out's lease)
is a small document of its own, `run_document(tenant)`, listed together by `RUN_PREFIX`: a refresh writes only its
own tenant's, so refreshes of two tenants never write the same entity. Secure Score writes both (secure_score/
tenants.py, secure_score/tenant_runs.py, under their ETags); every feature reads them here, merged, so their names
and shapes are said once. Also the order in which every feature lists a tenant's stored controls.

Stored before run documents, a record kept its run state in the tenants document: it is read from there until the
tenant's run document exists (its first write starts from it), and is ignored after.

A record keeps its members as they were stored, in their order, and members this version does not know: a record
written back is the record read, with only what changed changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.tickets import HOME, tenant_filter

if TYPE_CHECKING:
    from shared.services import Services
    from shared.store import TicketStore

DOCUMENT = "tenants"  # the store document
REMOVED = "removed"  # a tenant no longer read; its record stays, for its tickets
FANOUT_MEMBER = "fanout"  # the document's member that says when a refresh was last queued, and for how many tenants
RUN_PREFIX = "tenant-run:"  # each tenant's run document: this, then its id (`home` for the home tenant)
RUN_MEMBERS = ("lastRefresh", "lastError", "refreshingUntil", "refreshingBy")


def run_document(tenant_id: str) -> str:
    """The name of the tenant's run document (HOME: the home tenant's)."""
    return RUN_PREFIX + (tenant_id or "home")


@dataclass(frozen=True)
class Tenant:
    """One tenant's record: the home tenant's (no id; no state means active) or an added one's."""

    id: str | None = None
    name: str | None = None
    domain: str | None = None  # the domain it was added by, if any
    state: str | None = None  # pending | confirming | active | paused | removed
    added_at: str | None = None
    added_by: str | None = None
    consent: dict[str, Any] | None = None  # the current consent link's {hash, expiresAt}
    consent_state: str | None = None  # that link's single-use state
    consent_reported_at: str | None = None  # when Microsoft reported the admin's consent
    confirm: dict[str, Any] | None = None  # the consent's confirmation so far: {attempts, nextAt}
    consented_at: str | None = None
    last_refresh: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None  # {code, detail, remediation, at, poisoned?}
    refreshing_until: str | None = None  # the fan-out's lease: a queued refresh of it runs until then
    refreshing_by: str | None = None  # the queue message whose refresh holds that lease
    members: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the stored members, in their order
    unknown: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # members of a newer version

    @classmethod
    def from_json(cls, data: Any) -> Tenant:
        stored = data if isinstance(data, dict) else {}
        known = {_FIELD[m]: v for m, v in stored.items() if m in _FIELD}
        return cls(**known, members=tuple(stored), unknown={m: v for m, v in stored.items() if m not in _FIELD})

    def to_json(self) -> dict[str, Any]:
        return {m: getattr(self, _FIELD[m]) if m in _FIELD else self.unknown[m] for m in self.members}

    def updated(self, **changes: Any) -> Tenant:
        """The record with `changes` (by field name), as a dict's update: a member it did not have yet is added
        after the others, in the order given."""
        added = tuple(m for m in map(_MEMBER.__getitem__, changes) if m not in self.members)
        return replace(self, **changes, members=self.members + added)

    @property
    def removed(self) -> bool:
        return self.state == REMOVED

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def confirming(self) -> bool:
        """`confirming`; or `pending` with a consent Microsoft reported (how a tenant waited before that state)."""
        return self.state == "confirming" or (self.state == "pending" and bool(self.consent_reported_at))

    @property
    def consent_expires_at(self) -> Any:
        return (self.consent or {}).get("expiresAt")

    def consent_expired(self, now: datetime) -> bool:
        """No consent link, or one past its expiry."""
        return not self.consent or datetime.fromisoformat(str(self.consent_expires_at)) <= now

    @property
    def confirm_attempts(self) -> int:
        return int((self.confirm or {}).get("attempts") or 0)

    def run_state(self) -> dict[str, Any]:
        """The record's run state, as its run document holds it."""
        return {m: getattr(self, _FIELD[m]) for m in RUN_MEMBERS}

    def with_run(self, run: dict[str, Any]) -> Tenant:
        """The record with the run state of its run document (a member it lacks: none)."""
        return self.updated(**{_FIELD[m]: run.get(m) for m in RUN_MEMBERS})

    @property
    def last_refresh_at(self) -> str:
        """When it was last refreshed ('' never)."""
        return str(self.last_refresh.get("at") or "") if isinstance(self.last_refresh, dict) else ""


_MEMBER = {"id": "id", "name": "name", "domain": "domain", "state": "state", "added_at": "addedAt",
           "added_by": "addedBy", "consent": "consent", "consent_state": "consentState",
           "consent_reported_at": "consentReportedAt", "confirm": "confirm", "consented_at": "consentedAt",
           "last_refresh": "lastRefresh", "last_error": "lastError",
           "refreshing_until": "refreshingUntil", "refreshing_by": "refreshingBy"}  # fmt: skip
_FIELD = {member: name for name, member in _MEMBER.items()}
assert set(_MEMBER) == {f.name for f in fields(Tenant)} - {"members", "unknown"}


@dataclass(frozen=True)
class Tenants:
    """The document: the home tenant's record and the added tenants' by id."""

    home: Tenant
    added: dict[str, Tenant]
    fanout: dict[str, Any] | None = None  # the last refresh queued per tenant: {"at", "queued"} (FANOUT_MEMBER)

    @classmethod
    def from_json(cls, data: Any) -> Tenants:
        stored = data if isinstance(data, dict) else {}
        added = stored.get("tenants")
        records = added.items() if isinstance(added, dict) else ()
        fanout = stored.get(FANOUT_MEMBER)
        return cls(Tenant.from_json(stored.get("home")), {t: Tenant.from_json(r) for t, r in records},
                   fanout if isinstance(fanout, dict) else None)  # fmt: skip

    @property
    def home_state(self) -> str:
        return self.home.state or "active"

    def readable(self) -> list[str]:
        """HOME and every added tenant not removed (what `tenant=all` lists)."""
        return [HOME, *sorted(t for t, r in self.added.items() if not r.removed)]


def registrations(store: TicketStore) -> Tenants:
    """The tenants document as stored now (empty before the first tenant is added), without the run documents: what
    an admin changed, and run state only as an earlier version stored it there."""
    found = store.get_document(DOCUMENT)
    return Tenants.from_json(found[0] if found else {})


def load(store: TicketStore) -> Tenants:
    """Every tenant's record as stored now, each with its run state: its run document's, where it has one (two
    reads: the tenants document and one listing of the run documents)."""
    document = registrations(store)
    runs = {name: data for name, (data, _) in store.list_documents(RUN_PREFIX).items()}

    def merged(tenant_id: str, record: Tenant) -> Tenant:
        run = runs.get(run_document(tenant_id))
        return record if run is None else record.with_run(run)

    added = {t: merged(t, r) for t, r in document.added.items()}
    return replace(document, home=merged(HOME, document.home), added=added)


def with_run(store: TicketStore, tenant_id: str, record: Tenant) -> Tenant:
    """One tenant's record (as the tenants document holds it) with its run state (one point read)."""
    found = store.get_document(run_document(tenant_id))
    return record if found is None else record.with_run(found[0])


def registered(store: TicketStore) -> dict[str, Tenant]:
    """Every tenant an admin added (any state), by id; run state only as an earlier version stored it."""
    return registrations(store).added


def readable(store: TicketStore) -> list[str]:
    """HOME and every added tenant not removed (what `tenant=all` lists)."""
    return registrations(store).readable()


def resolve(services: Services, value: str | None) -> str | None:
    """A `tenant=` value against the tenants the connector knows (removed ones too: their tickets stay): HOME, None
    for `all`, or a tenant's id; `validation_failed` otherwise. The home tenant's own id is looked up only when
    the value may be it."""
    home_id = services.home_tenant_id() if value not in (None, "home", "all") else None
    return tenant_filter(value, home_id, registered(services.store))


def reads(store: TicketStore, tenant: str) -> bool:
    """Whether `tenant` (an added tenant's id) is one the connector reads: `active`."""
    found = registered(store).get(tenant)
    return found is not None and found.active


def by_rank(control: dict[str, Any]) -> tuple[bool, int, str]:
    """The order a tenant's stored Secure Score controls are listed in, by every feature: Graph's rank first
    (unranked last), then the id."""
    rank = control.get("rank")
    return rank is None, rank or 0, str(control["id"])
