"""Records of the connector's own that the store does not track yet, settled before adoption (docs/status-sync.md,
records the store does not know):

- A record of a recommendation whose ticket is pending is that create's own: committed while its answer was not
  in yet (a slow answer, a crash inside the lease, more pending tickets than one run resumes). It is linked to the
  pending ticket, never adopted beside it, so one record has one ticket. A correlation id proves nothing about who
  made a record, so the create's own reference (its ticket id in the description) is checked first, in one request.
- Two open records of the connector's own for one recommendation (both made by the integration user, both with its
  correlation id): the older is kept and linked, the newer is cancelled with a work note naming the kept one. A
  record a person made is never cancelled: adoption decides about it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from shared.records import apply_record, record_fields
from shared.servicenow import table_result
from shared.services import Services
from shared.store import change_ticket
from shared.text import printable
from shared.tickets import OPEN_STATUSES, SYS_ID, RecordRefused, Ticket, claim_key, correlation_id, parse_correlation

log = logging.getLogger(__name__)


def settle_own_record(services: Services, row: dict[str, Any]) -> str | None:
    """The ticket that tracks `row` now (a pending create's, or a cancelled copy's), or None: adoption decides."""
    field_map = services.settings.field_map
    minted = parse_correlation(str(row.get(field_map.target("correlation_id")) or ""))
    sys_id = str(row.get("sys_id") or "")
    if minted is None or not SYS_ID.fullmatch(sys_id):
        return None
    tenant, control = minted
    holder_id = services.store.claim_holder(claim_key(tenant, control))
    found = services.store.get_ticket(holder_id) if holder_id else None
    if found is None or not services.connection.serves(found[0]):
        # no ticket for it yet, or one on another instance (a clone shares correlation ids;
        # docs/design.md#isolation-between-customers)
        return None
    holder = found[0]
    if holder.status == "pending":
        return link_to_pending(services, holder, row)
    open_row = field_map.status_of(str(row.get(field_map.target("state")) or "")) in OPEN_STATUSES
    if holder.is_open and holder.sys_id and holder.sys_id != sys_id and open_row:
        return keep_the_older(services, holder, row)
    return None


def link_to_pending(services: Services, pending: Ticket, row: dict[str, Any]) -> str | None:
    """Link the pending create's own record to it. If the create is still waiting for its answer, its own link
    then finds the row linked (its write loses on the ETag) and answers with it."""
    field_map = services.settings.field_map
    sys_id = str(row["sys_id"])
    rows, _ = services.servicenow.table_list(services.tokens, pending.table, {
        "sysparm_query": f"sys_id={sys_id}^{field_map.target('description')}LIKE{pending.id}",
        "sysparm_fields": record_fields(services), "sysparm_limit": "1", "sysparm_exclude_reference_link": "true",
    })  # fmt: skip
    if not rows:
        number = printable(str(row.get("number") or ""), 40) or sys_id
        raise RecordRefused(
            f"{number} carries the correlation id of recommendation {pending.recommendation_id}, whose ticket is "
            f"being created (pending, {pending.id}), but not that create's reference, so it was neither linked nor "
            "adopted; the next runs look at it again.",
            remediation="If a person opened it by hand, close it or clear its correlation_id in ServiceNow.",
        )
    now = services.clock().isoformat()

    def link(ticket: Ticket) -> Ticket | None:
        if ticket.sys_id:  # the create's answer came first
            return None
        return replace(ticket.with_link(rows[0], field_map, now), error=None, extra={})

    linked = change_ticket(services.store, pending.id, link)
    if linked is None:
        return None
    if linked.sys_id != sys_id:  # the create linked another record of its own: two records, one recommendation
        return keep_the_older(services, linked, row)
    log.info("Linked %s to ticket %s, whose create was still waiting for it", linked.number, linked.id)
    return linked.id


def keep_the_older(services: Services, holder: Ticket, row: dict[str, Any]) -> str | None:
    """Of the holder's record and `row`, when both are open and the connector's own: cancel the newer, naming the
    older. Returns the cancelled copy's new ticket when `row` was the newer; None when the holder's record was (its
    ticket is cancelled with it and gives up the claim, and adoption takes `row`) or when either is not the
    connector's own."""
    bundle = services.tokens.load()
    author = (bundle.connected_as if bundle else None) or ""
    field_map = services.settings.field_map
    state, correlation = field_map.target("state"), field_map.target("correlation_id")
    sys_id = str(row["sys_id"])
    rows, _ = services.servicenow.table_list(services.tokens, holder.table, {
        "sysparm_query": f"sys_idIN{holder.sys_id},{sys_id}", "sysparm_limit": "2",
        "sysparm_fields": f"sys_id,number,sys_created_by,sys_created_on,{state},{correlation}",
    })  # fmt: skip
    both = {str(r.get("sys_id")): r for r in rows}
    minted = correlation_id(holder.recommendation_id, holder.tenant)
    canceled = field_map.state_for("canceled")
    if not author or canceled is None or set(both) != {holder.sys_id, sys_id} or not all(
        str(r.get("sys_created_by") or "").lower() == author.lower() and r.get(correlation) == minted
        and field_map.status_of(str(r.get(state) or "")) in OPEN_STATUSES for r in both.values()
    ):  # fmt: skip
        return None
    order = sorted(both.values(), key=lambda r: (str(r.get("sys_created_on")), str(r.get("number")), r["sys_id"]))
    older, newer = order
    note = (
        f"Cancelled by the Microsoft 365 security connector: it made two records for recommendation "
        f"{holder.recommendation_id}, and {printable(str(older.get('number') or ''), 40)} is the one kept."
    )
    body = {state: canceled, **({field_map.target("work_notes"): note} if field_map.target("work_notes") else {})}
    response = services.servicenow.table_request(
        services.tokens, "PATCH", holder.table, sys_id=str(newer["sys_id"]),
        params={"sysparm_fields": record_fields(services), "sysparm_exclude_reference_link": "true"}, json_body=body,
    )  # fmt: skip
    cancelled = table_result(response)
    log.warning("Cancelled %s, a second record of the connector's own for %s; %s is kept", newer.get("number"),
                holder.recommendation_id, older.get("number"))  # fmt: skip
    if newer["sys_id"] != sys_id:
        apply_record(services, holder.id, cancelled)
        return None
    now = services.clock().isoformat()
    copy = replace(holder, id=uuid.uuid4().hex, fingerprint="", created_at=now, extra={"adopted": True}, error=None,
                   secure_score=None, duplicate_of=holder.id, post_attempts=0, lease_until=None)  # fmt: skip
    copy = copy.with_link(cancelled, field_map, now)
    services.store.add_ticket(copy)
    return copy.id
