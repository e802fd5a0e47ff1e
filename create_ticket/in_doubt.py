"""Whether a create's record may exist: the lookup before any new POST, and the window after a POST that got no
answer, during which the connector looks but never posts again.

ServiceNow runs an inbound REST Table API transaction on its own node until it finishes or its quota rule cancels
it (60 s by default, "REST Table API request timeout":
https://www.servicenow.com/docs/r/yokohama/platform-administration/platform-performance/c_DefaultQuotaRules.html);
the client hanging up does not stop it (https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB3047080,
"HTTP 499 - Client Closed the Connection"). So a record may appear well after the connector's 30 s deadline, and a
lookup that finds nothing in between proves nothing. The row keeps `posted_at`, when the POST whose answer nobody
has seen began (written with the count before each POST, cleared once an answer is seen); until
`SERVICENOW_IN_DOUBT_SECONDS` have passed since then, the connector looks the record up but never posts again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.problems import Conflict, ServiceNowUnavailable
from shared.retries import TransientFailure
from shared.services import Services
from shared.tickets import Ticket, correlation_id

# A gateway's time-out says the instance did not answer in time, not that it did nothing (RFC 9110 section 15.6.5).
_NO_ANSWER_STATUSES = frozenset({504})


class InDoubt(Exception):
    """No record found yet, and a POST without an answer may still commit: wait `seconds` before posting again."""

    def __init__(self, seconds: int, since: datetime) -> None:
        super().__init__(f"in doubt for {seconds} s more")
        self.seconds = seconds
        self.since = since


def lookup(services: Services, ticket: Ticket, fields: str) -> dict[str, Any] | None:
    """The record an earlier attempt may have committed: the connector's correlation id and its reference (the
    ticket id in the description). Only connector-minted values in the query."""
    field_map = services.settings.field_map
    query = (
        f"{field_map.target('correlation_id')}={correlation_id(ticket.recommendation_id, ticket.tenant)}"
        f"^{field_map.target('description')}LIKE{ticket.id}"
    )
    rows, _ = services.servicenow.table_list(
        services.tokens,
        ticket.table,
        {"sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": "1"},
        retry=False,
    )
    return rows[0] if rows else None


def unanswered(failure: TransientFailure) -> bool:
    """The POST got no answer from the instance (a time-out, a cut connection, a gateway's time-out)."""
    return failure.response is None or failure.response.status_code in _NO_ANSWER_STATUSES


def posted_since(ticket: Ticket) -> datetime | None:
    """When the row's unanswered POST began, or None (none, or a row from before `posted_at` existed)."""
    if not ticket.posted_at:
        return None
    try:
        return datetime.fromisoformat(ticket.posted_at)
    except ValueError:
        return None


def check(since: datetime | None, now: datetime, window: int) -> None:
    """Raise `InDoubt` while a POST that began at `since` may still commit."""
    if since is None:
        return
    left = since + timedelta(seconds=window) - now
    if left > timedelta(0):
        raise InDoubt(max(1, int(left.total_seconds() + 0.999)), since)


def problem(doubt: InDoubt, ticket_id: str, *, own: bool) -> Conflict | ServiceNowUnavailable:
    """What the caller hears: the request whose own POST went unanswered gets `servicenow_unavailable`; a repeat
    meanwhile gets `409 conflict`. Both carry the wait in `Retry-After` and the ticket's id."""
    extra = {"ticketId": ticket_id}
    if own:
        return ServiceNowUnavailable(
            "ServiceNow did not answer the create in time, and the record is not there yet; ServiceNow may still "
            f"be creating it, so the connector will not post it again for {doubt.seconds} s.",
            retry_after=doubt.seconds,
            extra=extra,
        )
    return Conflict(
        "ServiceNow has not answered an earlier create of this ticket, and the record is not there yet; it may "
        f"still appear, so the connector looks it up but does not post it again for {doubt.seconds} s.",
        remediation="Retry after the Retry-After delay; the same ticket is returned.",
        retry_after=doubt.seconds,
        extra=extra,
    )
