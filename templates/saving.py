"""The templates document: every template in one store document (`templates`), so that the rule "a (tenant, control)
belongs to at most one template" is checked and kept in one conditional write: two admins saving overlapping
templates at once cannot both win, as the routes document works (create_ticket/routing/saving.py;
docs/templates.md#one-control-one-template).

Each template has its own version (from its `revision`, new on every save): `PUT` and `DELETE` name it in
`If-Match` (428 without one or with `*`, 412 with an older one, as PUT /api/routes), and a change to one template
never makes another's version stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC
from typing import Any

from shared import tenant_records
from shared.problems import Conflict, FieldError, NotFound, PreconditionFailed, PreconditionRequired, ValidationFailed
from shared.services import Services
from shared.store import MAX_DOCUMENT_CHARS, StoreConflict, TicketStore, update_document
from shared.tickets import HOME
from templates.model import HOME_ID, TEMPLATE_ID, Template, parse

DOCUMENT = "templates"
RECORDS_PREFIX = "template-apply:"  # then `{template id}:{tenant}`: what each apply wrote (templates/records.py)
MAX_DOCUMENT = MAX_DOCUMENT_CHARS - 1000  # characters of JSON: what one Table entity holds, less the document's own


def load_all(store: TicketStore) -> dict[str, Template]:
    found = store.get_document(DOCUMENT)
    stored = (found[0] if found else {}).get("templates")
    return (
        {t: Template.from_json(d) for t, d in stored.items() if isinstance(d, dict)} if isinstance(stored, dict) else {}
    )


def version_of(template: Template) -> str:
    return hashlib.sha256(f"template\n{template.id}\n{template.revision}".encode()).hexdigest()[:20]


def etag_header(template: Template) -> dict[str, str]:
    return {"ETag": f'"{version_of(template)}"'}


def find(store: TicketStore, template_id: str) -> Template:
    template = load_all(store).get(template_id) if TEMPLATE_ID.fullmatch(template_id) else None
    if template is None:
        raise NotFound(f"There is no template '{template_id[:40]}'.", remediation="GET /api/templates lists them.")
    return template


def known_tenants(store: TicketStore) -> set[str]:
    """What a template may name: `home` and every added tenant not removed (pending and paused ones too: an apply
    skips them and says so)."""
    return {HOME_ID, *(t for t in tenant_records.readable(store) if t != HOME)}


def require_if_match(if_match: str | None, what: str) -> str:
    """`If-Match` is there and names a version: checked before anything else, the body included (RFC 9110, section
    13.2.1), as PUT /api/routes does."""
    if if_match is None or if_match.strip() == "*":
        raise PreconditionRequired(
            f"A {what} of a template must name the version it changes: send If-Match with the ETag GET "
            "/api/templates/{id} gave.",
            remediation="GET /api/templates/{id}, then send it again with 'If-Match: <its ETag>'.",
        )
    return if_match


def check_if_match(if_match: str | None, template: Template, what: str) -> None:
    """`If-Match` names the template's current version, else 412 with the current template (an apply sends the
    version it previewed: docs/templates.md#the-api)."""
    if_match = require_if_match(if_match, what)
    what_done = "written" if what == "apply" else "saved"
    version = version_of(template)
    if not any(tag.strip() in (f'"{version}"', version) for tag in if_match.split(",")):
        raise PreconditionFailed(
            f"The template changed since you read it (If-Match names an older version); nothing was {what_done}.",
            remediation="Apply your change to the current template (in this answer) and send it with its version.",
            extra={"template": template.to_json() | {"version": version}},
        )


def _no_overlap(template: Template, others: dict[str, Template]) -> None:
    for other in others.values():
        if other.id == template.id:
            continue
        shared_controls = template.overlaps(other)
        if shared_controls:
            where = "every tenant" if None in (template.tenants, other.tenants) else "the same tenants"
            raise ValidationFailed([FieldError("controls", f"{', '.join(shared_controls[:5])} already belong to the "
                                               f"template '{other.name}' ({other.id}) in {where}; a control in a "
                                               "tenant belongs to one template at most")])  # fmt: skip


def _update(services: Services, edit: Callable[[dict[str, Any]], None]) -> None:
    try:
        update_document(services.store, DOCUMENT, edit)
    except StoreConflict:
        raise Conflict("The templates kept changing while this change was being saved; nothing was saved.",
                       remediation="Send it again.") from None  # fmt: skip


def save(services: Services, body: Any, saved_by: str | None, template_id: str | None = None,
         if_match: str | None = None) -> Template:  # fmt: skip
    """Create (`template_id` None) or replace a template, checked whole against every other in the same write. A
    replacement's preconditions come first (428, 404, 412), then the body; the version is checked again in the
    write."""
    kept: dict[str, str] = {}
    if template_id is not None:
        require_if_match(if_match, "PUT")
        stored = find(services.store, template_id)
        check_if_match(if_match, stored, "PUT")
        kept = stored.until
    clock = services.clock()
    fields = parse(body, known_tenants(services.store), clock.astimezone(UTC).date(), kept)
    now = clock.isoformat()
    new_id = template_id or uuid.uuid4().hex[:12]
    saved: list[Template] = []

    def edit(document: dict[str, Any]) -> None:
        templates = dict(document.get("templates") or {})
        current = {t: Template.from_json(d) for t, d in templates.items()}
        old = current.get(new_id)
        if template_id is not None:
            if old is None:
                raise NotFound(f"There is no template '{template_id}'.", remediation="GET /api/templates lists them.")
            check_if_match(if_match, old, "PUT")
        template = Template(new_id, revision=uuid.uuid4().hex, saved_at=now, saved_by=saved_by,
                            applied_at=old.applied_at if old else None, applied_by=old.applied_by if old else None,
                            **fields)  # fmt: skip
        _no_overlap(template, current)
        templates[new_id] = template.to_json()
        size = len(json.dumps(templates))
        if size > MAX_DOCUMENT:
            raise ValidationFailed([FieldError("controls", f"the templates would take {size} characters; at most "
                                               f"{MAX_DOCUMENT} are kept (fewer controls or tenants)")])  # fmt: skip
        document["templates"] = templates
        saved[:] = [template, *([old] if old else [])]

    _update(services, edit)
    if len(saved) > 1:
        _drop_records(services.store, saved[1], saved[0])
    return saved[0]


def _drop_records(store: TicketStore, old: Template, new: Template) -> None:
    """A PUT's records of the controls and tenants it took out go: they are no longer the template's (another
    template may set that control now), so neither its drift nor its endings (docs/templates.md#records-exactly-once).
    A tenant taken out loses its document; that ends the lease of an apply writing it, as a removal does."""
    gone = set(old.controls) - set(new.controls)
    narrowed = new.tenants is not None and (old.tenants is None or bool(set(old.tenants) - set(new.tenants)))
    if not (gone or narrowed):
        return
    prefix = f"{RECORDS_PREFIX}{new.id}:"

    def edit(document: dict[str, Any]) -> None:
        if not document:  # removed meanwhile: not written again
            raise KeyError
        for part in ("controls", "drift"):
            kept = document.get(part)
            if isinstance(kept, dict):
                document[part] = {c: r for c, r in kept.items() if c not in gone}

    for name in store.list_documents(prefix):
        if not new.covers(name[len(prefix) :]):
            store.delete_document(name)
        elif gone:
            with contextlib.suppress(StoreConflict, KeyError):
                update_document(store, name, edit)


def delete(services: Services, template_id: str, if_match: str | None) -> None:
    """Remove a template, then its records. The template goes first: an apply that takes a tenant's lease after it
    reads the templates again and stops (templates/applying.py); deleting a tenant's record document ends the lease of
    an apply that took it before (its later writes find no lease of its own and write nothing)."""
    require_if_match(if_match, "DELETE")
    check_if_match(if_match, find(services.store, template_id), "DELETE")

    def edit(document: dict[str, Any]) -> None:
        templates = dict(document.get("templates") or {})
        if template_id not in templates:
            raise NotFound(f"There is no template '{template_id}'.", remediation="GET /api/templates lists them.")
        check_if_match(if_match, Template.from_json(templates[template_id]), "DELETE")
        del templates[template_id]
        document["templates"] = templates

    _update(services, edit)
    for name in services.store.list_documents(f"{RECORDS_PREFIX}{template_id}:"):  # its records go with it
        services.store.delete_document(name)


def note_applied(services: Services, template: Template, version: str, at: str, by: str | None,
                 counts: dict[str, int]) -> None:  # fmt: skip
    """The template's last apply, kept under the same document's ETag (its version does not change): `lastApply`
    (when, who, the version, how many applied, unchanged, failed, drifted: what the list shows), and `appliedAt` /
    `appliedBy` only when it wrote, confirmed or queued something. Nothing when the template is another version now:
    that version was never applied. A document that kept changing keeps the older note: the records are what count."""

    def edit(document: dict[str, Any]) -> None:
        templates = dict(document.get("templates") or {})
        entry = templates.get(template.id)
        if not isinstance(entry, dict) or version_of(Template.from_json(entry)) != version:
            return
        entry = {**entry, "lastApply": {"at": at, "by": by, "version": version, **counts}}
        if counts.get("applied", 0) + counts.get("unchanged", 0) + counts.get("queued", 0) > 0:
            entry.update(appliedAt=at, appliedBy=by)
        templates[template.id] = entry
        document["templates"] = templates

    with contextlib.suppress(StoreConflict):
        update_document(services.store, DOCUMENT, edit)
