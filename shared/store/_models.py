from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.problems import DocumentTooLarge
from shared.tickets import Ticket

DIGEST = "controlsDigest"  # the summary's digest of the snapshot's controls (controls_digest)


def controls_digest(controls: list[dict[str, Any]]) -> str:
    """A digest of a snapshot's controls, in any order: a refresh that reads the same controls again writes the
    summary alone, without reading the stored controls back (put_secure_score_summary)."""
    ordered = sorted(controls, key=lambda control: str(control.get("id")))
    text = json.dumps(ordered, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def prefix_end(prefix: str) -> str:
    """The first name past every name that starts with `prefix` (a document listing's range end)."""
    if not prefix:
        raise ValueError("a document prefix must not be empty")
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# The most characters of JSON one store document may take. Table Storage holds at most 1 MiB per entity and counts a
# String property as 4 + 2 bytes per character, each property also 8 + 2 bytes per character of its name, and the
# keys 2 bytes per character (https://learn.microsoft.com/azure/storage/tables/scalability-targets; the entity size
# formula: https://learn.microsoft.com/en-us/archive/blogs/avkashchauhan/how-the-size-of-an-entity-is-caclulated-in-
# windows-azure-table-storage). 500,000 characters are 1,000,000 bytes in 17 chunks of 30,000 (about 400 bytes of
# property overhead), which leaves more than 47,000 bytes for the keys (at most 2 KiB each) and the Timestamp.
# Azurite does not enforce the limit, so both stores check it themselves.
MAX_DOCUMENT_CHARS = 500_000


def check_size(name: str, text: str) -> None:
    """Refuse a document larger than MAX_DOCUMENT_CHARS before it is written (413 `document_too_large`)."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentTooLarge(
            f"The change would make the stored document '{name[:60]}' {len(text)} characters long; one document "
            f"holds at most {MAX_DOCUMENT_CHARS}. Nothing was saved.",
            remediation="Make it smaller (fewer entries, shorter texts), then send it again.",
        )


# Done tickets without a resolution time, and the id a walk goes on after (None: none left); `list_unstamped_done`
Unstamped = tuple[list[tuple[Ticket, str]], str | None]


class StoreConflict(Exception):
    """A conditional write lost: the row changed (ETag) or already exists."""


@dataclass(frozen=True)
class OAuthState:
    """One pending authorization: the `state` sent to ServiceNow, with what finishing it needs."""

    state: str
    code_verifier: str
    instance_url: str
    redirect_uri: str
    started_by: str
    created_at: datetime
    expires_at: datetime
    browser_hash: str = ""  # SHA-256 of the nonce in the browser's cookie: the flow is bound to that browser
    connection: str = ""  # the ServiceNow connection it authorizes ("": the default connection)


@dataclass(frozen=True)
class IdempotencyRecord:
    ticket_id: str
    fingerprint: str
    created_at: str = ""  # ISO time the key was first used; keys are honoured for KEY_LIFETIME


class TicketStore(Protocol):
    # -- OAuth states --
    def add_oauth_state(self, state: OAuthState) -> None:
        """Record a new state; the state value is unique: raises StoreConflict if it exists."""

    def take_oauth_state(self, state: str) -> OAuthState | None:
        """Remove and return the state; of any number of concurrent takers exactly one gets it."""

    def purge_oauth_states(self, before: datetime) -> int:
        """Delete states that expired before `before`; returns how many."""

    # -- tickets (every write after the first is conditional on the ETag read) --
    def add_ticket(self, ticket: Ticket) -> str:
        """Insert; returns the ETag. Raises StoreConflict if the id exists."""

    def get_ticket(self, ticket_id: str) -> tuple[Ticket, str] | None:
        """The ticket and its ETag."""

    def update_ticket(self, ticket: Ticket, etag: str) -> str:
        """Replace if the ETag still matches; returns the new ETag, else raises StoreConflict."""

    def delete_ticket(self, ticket_id: str) -> None: ...

    # -- creation: one round trip for the intent --
    def begin_creation(self, ticket: Ticket, replacing: str | None = None) -> tuple[str | None, str]:
        """Insert the (pending, leased) ticket and claim its recommendation for it, in one transaction. If another
        ticket holds the claim (other than `replacing`, a closed holder the caller may take it from), nothing is
        written and that holder's id is returned; else (None, the new row's ETag)."""

    # -- one open ticket per recommendation (per tenant): claims are keyed by `Ticket.claim_key` --
    def claim_recommendation(self, recommendation_id: str, ticket_id: str) -> str | None:
        """Claim for `ticket_id`; returns None when claimed, else the ticket id holding the claim."""

    def replace_claim(self, recommendation_id: str, holder: str, ticket_id: str) -> bool:
        """Move the claim from `holder` to `ticket_id`; False if `holder` no longer holds it."""

    def release_claim(self, recommendation_id: str, holder: str) -> None:
        """Drop the claim if `holder` still holds it."""

    def claim_holder(self, recommendation_id: str) -> str | None:
        """The id of the ticket holding the claim (open or not: the caller looks), or None; writes nothing."""

    # -- Idempotency-Key --
    def remember_idempotency_key(self, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Record the key; returns None when new, else the record already there."""

    def repoint_idempotency_key(self, key: str, record: IdempotencyRecord) -> None: ...

    # -- status sync --
    def list_tickets(self, tenant: str | None = None) -> list[tuple[Ticket, str]]:
        """Every ticket with its ETag; with `tenant`, that tenant's alone (HOME: the home tenant's), so one tenant's
        refresh does not read every other tenant's tickets."""

    def list_pending_tickets(self) -> list[tuple[Ticket, str]]:
        """Tickets whose ServiceNow record is not linked yet."""

    def find_ticket_by_sys_id(self, sys_id: str) -> tuple[Ticket, str] | None: ...

    def list_tracked_by_sys_id(self, after: str, upto: str, limit: int, connection: str = "") -> list[tuple[str, str]]:
        """(sys_id, ticket id) of linked tickets not closed or canceled, with `after` < sys_id <= `upto`, in
        sys_id order, at most `limit` of them, on `connection` ("": the default; the rolling sweep's slice)."""

    def list_unstamped_done(self, after: str, limit: int, connection: str = "", scan: int = 5000) -> Unstamped:
        """Resolved or closed tickets with a sys_id and no `resolved_at` (stored before it existed), with their
        ETags, ticket id > `after`, in id order, at most `limit`, on `connection` (status_sync/backfill.py); and the
        id the next call goes on after, None at the end. A call looks at `scan` done tickets at most (Table Storage
        filters no missing property), so it may find fewer than `limit`, even none, while more follow."""

    def get_sync_state(self) -> tuple[dict[str, Any], str] | None:
        """The sync watermark and the last run's result, with its ETag."""

    def put_sync_state(self, state: dict[str, Any], etag: str | None) -> str:
        """Insert (etag None) or replace if the ETag matches; raises StoreConflict otherwise."""

    # -- Secure Score snapshots, one per tenant (replaced whole: readers see the old one or the new one, never a
    # mix). `tenant` is HOME ("") for the deployment's own, whose snapshot is stored where it was before tenants.
    def put_secure_score(self, summary: dict[str, Any], controls: list[dict[str, Any]], tenant: str = "") -> None:
        """Replace the tenant's snapshot; each control is a dict with an `id` (the control id)."""

    def put_secure_score_summary(self, summary: dict[str, Any], tenant: str = "") -> bool:
        """Replace only the summary of the tenant's snapshot, its controls unchanged (a refresh that found every
        control as it was: one write instead of one per control). False, writing nothing, when there is no snapshot
        to update or the stored summary's `controlsDigest` is not the new one's (its controls changed meanwhile)."""

    def get_secure_score_summary(self, tenant: str = "") -> dict[str, Any] | None:
        """The tenant's summary alone (one point read), or None before its first refresh: a refresh that finds
        every control as its digest says need not read them."""

    def get_secure_score(self, tenant: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The tenant's summary and every control, or None before its first refresh."""

    def get_secure_score_control(self, control_id: str, tenant: str = "") -> dict[str, Any] | None:
        """One control of the tenant's current snapshot (a point read)."""

    # -- small named documents (run states), replaced whole under an ETag --
    def get_document(self, name: str) -> tuple[dict[str, Any], str] | None: ...

    def put_document(self, name: str, data: dict[str, Any], etag: str | None) -> str:
        """Insert (etag None) or replace if the ETag matches; raises StoreConflict otherwise."""
        ...

    def delete_document(self, name: str) -> None:
        """Delete the document if there is one (a removed connection's sync state goes with it)."""

    def list_documents(self, prefix: str) -> dict[str, tuple[dict[str, Any], str]]:
        """Every document whose name starts with `prefix` (not empty), by name, with its ETag: one query, so many
        small documents (one per tenant) are read together and written apart."""
        ...
