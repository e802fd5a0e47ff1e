"""`GET /api/routes` and `PUT /api/routes`: the whole list at once, under a version
(docs/design.md#connections-and-routes).

The version is derived from the store's ETag of the routes document (a hash, so it says nothing about the store),
and a PUT must name the version it changes in `If-Match`, as GET gave it (`ETag`). Without `If-Match`, or with
`If-Match: *`, a PUT is `428 precondition_required`: a blind overwrite is exactly what the guard is there to stop.
A stale version is `412 precondition_failed` with the current version and routes, so the admin can redo the change
on top of them. The write itself is conditional on the store's ETag, so of two admins saving at once one wins and
the other gets the 412, even between instances.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

from create_ticket.routing.document import DOCUMENT, RoutesDocument, Saved, change, load
from create_ticket.routing.names import resolve
from create_ticket.routing.validation import MAX_ERRORS, parse_routes
from shared import deadlines
from shared.connections import stored
from shared.problems import DeadlineExceeded, FieldError, PreconditionFailed, PreconditionRequired, ValidationFailed
from shared.services import Services
from shared.store import StoreConflict

MAX_DOCUMENT = 400_000  # characters of JSON: the routes document stays well inside a Table entity's 1 MiB


def version_of(etag: str | None) -> str:
    return hashlib.sha256(f"{DOCUMENT}\n{etag or ''}".encode()).hexdigest()[:20]


def shown(saved: Saved) -> dict[str, Any]:
    """GET's answer (and PUT's): the version, and each rule as saved, references as {sysId, name}."""
    return {"version": version_of(saved.etag), "routes": saved.routes, "savedAt": saved.document.saved_at,
            "savedBy": saved.document.saved_by}  # fmt: skip


def with_notes(answer: dict[str, Any], notes: list[FieldError]) -> dict[str, Any]:
    """An answer with `notes` (field, message): what the connector decided for the caller, e.g. a group's name that
    matched only when case is ignored. Present only when there is something to say."""
    return {**answer, "notes": [n.to_json() for n in notes]} if notes else answer


def etag_header(saved: Saved) -> dict[str, str]:
    return {"ETag": f'"{version_of(saved.etag)}"'}


def _named(if_match: str, version: str) -> bool:
    """Whether `If-Match` names this version: a list of entity tags, compared strongly (RFC 9110 13.1.1), so a
    weak tag never matches. A bare version (as the body's `version`) is taken too."""
    tags = [tag.strip() for tag in if_match.split(",")]
    return any(tag in (f'"{version}"', version) for tag in tags)


@contextlib.contextmanager
def within_deadline(services: Services, what: str) -> Iterator[None]:
    """Work a person can make large stops at ROUTES_DEADLINE: a clear problem, nothing saved."""
    try:
        with deadlines.run_deadline(services.routes_deadline):
            yield
    except deadlines.RunOutOfTime:
        raise DeadlineExceeded(
            f"{what} took longer than {services.routes_deadline:g} s (ROUTES_DEADLINE) and was stopped; nothing was "
            "saved.",
            remediation="Make the list smaller: fewer rules, fewer tenants or control patterns per rule, or one "
            "pattern that covers several (docs/routes.md: Patterns). Then send it again.",
        ) from None


def removing(services: Services, document: RoutesDocument) -> dict[str, str]:
    """The connections a removal has fenced off (`fence`) that still exist as the removal saw them: no rule may
    name them. A marker whose connection is gone, or was added again since, no longer counts."""
    if not document.removing:
        return {}
    records = stored(services.store)
    return {c: at for c, at in document.removing.items() if (records.get(c) or {}).get("addedAt") == at}


def fence(services: Services, connection_id: str, added_at: str) -> list[str]:
    """Before a connection is removed: the rules that name it (then nothing is written), or none, and the removal is
    written into the routes document under its ETag. A concurrent `PUT /api/routes` then conflicts with it, whichever
    writes last (docs/routes.md: Versions): a save that checked its rules before the fence is refused as stale (412),
    one that checks after it sees the connection as removed, and a save that lands first is seen by this read."""
    named: list[str] = []

    def mark(document: RoutesDocument) -> bool:
        named[:] = document.rules_naming(connection_id)
        if named:
            return False
        document.removing = {**removing(services, document), connection_id: added_at}
        return True

    change(services.store, mark)
    return named


def unfence(services: Services, connection_id: str) -> None:
    """A removal that stopped before the end: its connection may be routed to again (a routes document that keeps
    changing meanwhile keeps the marker: it counts only while the connection is as the removal saw it)."""

    def unmark(document: RoutesDocument) -> bool:
        if document.removing is None or connection_id not in document.removing:
            return False
        document.removing = {c: at for c, at in document.removing.items() if c != connection_id}
        return True

    with contextlib.suppress(StoreConflict):
        change(services.store, unmark)


def validated(
    services: Services, body: Any, saved: Saved, notes: list[FieldError] | None = None
) -> list[dict[str, Any]]:
    """The proposed rules as they would be saved: their shape, and every group and company found in ServiceNow
    (`notes`: what the answer says about names found only when case is ignored), all problems named at once
    (docs/routes.md#validation: one round, not the names only after everything else is right). PUT and preview both
    take them from here, so a preview is of exactly what a save would keep."""
    parsed = parse_routes(services, body, {str(r.get("id")) for r in saved.routes},
                          set(removing(services, saved.document)))  # fmt: skip
    errors = parsed.errors + resolve(services, parsed.wanted, notes)
    errors.sort(key=lambda e: _position(e.field))
    if errors:
        raise ValidationFailed(errors[:MAX_ERRORS])
    size = len(json.dumps(parsed.routes))
    if size > MAX_DOCUMENT:
        raise ValidationFailed([FieldError("routes", f"take {size} characters of JSON; at most {MAX_DOCUMENT} "
                                           "are kept (fewer tenants, fields or patterns per rule)")])  # fmt: skip
    return parsed.routes


def _position(where: str) -> int:
    """Problems in the order of the list, rule by rule (`routes[3]...`), the body's own first; within a rule, as
    found (a sort that keeps order)."""
    index = where.removeprefix("routes[").partition("]")[0]
    return int(index) if where.startswith("routes[") and index.isdigit() else -1


def _stale(services: Services) -> PreconditionFailed:
    current = load(services.store)
    return PreconditionFailed(
        "The routes changed since you read them (If-Match names an older version); nothing was saved.",
        remediation="Apply your change to the current routes (in this answer, or GET /api/routes) and PUT them with "
        "the current version in If-Match.",
        extra=shown(current),
    )


def save(
    services: Services, body: Any, if_match: str | None, saved_by: str | None, notes: list[FieldError] | None = None
) -> Saved:
    """Replace the whole list, if `if_match` names the current version; every rule valid, or nothing saved."""
    if if_match is None or if_match.strip() == "*":
        raise PreconditionRequired(
            "A PUT of the routes must name the version it replaces: send If-Match with the ETag GET /api/routes "
            "gave (also for the first save).",
            remediation="GET /api/routes, change the list, and PUT it with 'If-Match: <its ETag>'.",
        )
    saved = load(services.store)
    if not _named(if_match, version_of(saved.etag)):
        raise _stale(services)
    with within_deadline(services, "Checking the routes"):
        routes = validated(services, body, saved, notes)
    now = services.clock().isoformat()
    revision = uuid.uuid4().hex  # what the compiled rules are kept by (routing/rules.py `compiled`)
    document = RoutesDocument(routes, now, saved_by, revision, removing(services, saved.document) or None)
    try:  # on the ETag the caller's version named: a save in between makes this one stale, never overwritten
        etag = services.store.put_document(DOCUMENT, document.to_json(), saved.etag)
    except StoreConflict:
        raise _stale(services) from None
    return Saved(document, etag)
