"""TableTicketStore: Azure Table Storage (azure-data-tables). ETags for every conditional write;
filters are always parameterized. Tickets, claims and keys here; OAuth states, run states and the Secure Score
snapshot in `tables_documents.py`. An outage of the service is `store_unavailable` (`outage.py`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from typing import Any

from shared.store._models import IdempotencyRecord, StoreConflict, Unstamped
from shared.store.outage import client_options, outages_unavailable
from shared.store.tables_documents import TableDocuments
from shared.tickets import Ticket

TICKETS = "tickets"
LEGACY_CLAIMS = "claims"  # claims' own table in stores from before begin_creation
LEGACY_BY_SYS_ID = "ticketsbysysid"  # sys_id hints' own table, likewise: hints, so dropped, not moved
IDEMPOTENCY = "idempotencykeys"
_TICKET_PARTITION = "ticket"
_CLAIM_PARTITION = "claim"
_KEY_PARTITION = "key"
_JSON_FIELDS = ("recommendation", "extra", "error", "secure_score", "route")


_CLAIM_TRIES = 10  # the claim released between a refused begin and its read, this many times in a row
# How Table Storage refuses the claim's operation: it exists (create), or changed or went (conditional update).
# https://learn.microsoft.com/rest/api/storageservices/table-service-error-codes
_CLAIM_TAKEN = {"EntityAlreadyExists", "UpdateConditionNotSatisfied", "ResourceNotFound"}


def _ticket_entity(ticket: Ticket) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": _TICKET_PARTITION, "RowKey": ticket.id}
    for name, value in ticket.to_record().items():
        if value is None:
            continue
        entity[name] = json.dumps(value) if name in _JSON_FIELDS else value
    return entity


def _ticket_from(entity: Any) -> Ticket:
    record = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}
    for name in _JSON_FIELDS:
        if name in record:
            record[name] = json.loads(record[name])
    return Ticket.from_record(record)


def _claim_key(recommendation_id: str) -> str:
    """An alert's `alert/{id}` (shared/tickets.py) holds a '/', which RowKey forbids; '!' is in no recommendation id."""
    return f"~claim|{recommendation_id.replace('/', '!')}"


def _sys_id_key(sys_id: str) -> str:
    return f"~sysid|{sys_id}"


def _row_key(text: str) -> str:
    """Caller-chosen strings may hold characters RowKey forbids ('/', '#', '?'): key them by hash."""
    return hashlib.sha256(text.encode()).hexdigest()


def _key_entity(key: str, record: IdempotencyRecord) -> dict[str, Any]:
    return {"PartitionKey": _KEY_PARTITION, "RowKey": _row_key(key), "ticket_id": record.ticket_id,
            "fingerprint": record.fingerprint, "created_at": record.created_at}  # fmt: skip


@outages_unavailable
class TableTicketStore(TableDocuments):
    def __init__(self, service: Any) -> None:
        """`service` is an `azure.data.tables.TableServiceClient`; see `from_settings`."""
        self._service = service
        self._tables: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._legacy_migrated = False

    @classmethod
    def from_connection_string(cls, connection_string: str, connections: int = 10) -> TableTicketStore:
        """`connections`: how many the process may use at once (outage.connections_for)."""
        from azure.data.tables import TableServiceClient  # lazy: cold start

        return cls(TableServiceClient.from_connection_string(connection_string, **client_options(connections)))

    @classmethod
    def from_endpoint(cls, endpoint: str, client_id: str | None, connections: int = 10) -> TableTicketStore:
        from azure.data.tables import TableServiceClient
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return cls(TableServiceClient(endpoint=endpoint, credential=credential, **client_options(connections)))

    def _write_if_unchanged(self, table: Any, entity: dict[str, Any], etag: str, *, merge: bool = False) -> str | None:
        """Write `entity` only if its row still carries `etag`: the new ETag, or None when the row changed or
        vanished. Every conditional write of this store goes through here."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        try:
            metadata = table.update_entity(
                entity,
                mode=UpdateMode.MERGE if merge else UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(metadata["etag"])

    def _table(self, name: str) -> Any:
        table = self._tables.get(name)
        if table is None:
            with self._lock:
                table = self._tables.get(name)
                if table is None:
                    table = self._service.create_table_if_not_exists(name)
                    self._tables[name] = table
        return table

    # -- tickets ------------------------------------------------------------------------------------

    def add_ticket(self, ticket: Ticket) -> str:
        from azure.data.tables import TableTransactionError

        operations: list[Any] = [("create", _ticket_entity(ticket)), *self._sys_id_hint(ticket)]
        try:
            results = self._table(TICKETS).submit_transaction(operations)
        except TableTransactionError as exc:
            if exc.status_code != 409:
                raise
            raise StoreConflict(f"ticket {ticket.id} exists") from exc
        return str(results[0]["etag"])

    def get_ticket(self, ticket_id: str) -> tuple[Ticket, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table(TICKETS).get_entity(_TICKET_PARTITION, ticket_id)
        except ResourceNotFoundError:
            return None
        return _ticket_from(entity), str(entity.metadata["etag"])

    def update_ticket(self, ticket: Ticket, etag: str) -> str:
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        condition = {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
        operations: list[Any] = [("update", _ticket_entity(ticket), condition), *self._sys_id_hint(ticket)]
        try:
            results = self._table(TICKETS).submit_transaction(operations)
        except TableTransactionError as exc:
            if exc.status_code not in (404, 412):
                raise
            raise StoreConflict(f"ticket {ticket.id} changed") from exc
        return str(results[0]["etag"])

    @staticmethod
    def _sys_id_hint(ticket: Ticket) -> list[Any]:
        """sys_id -> ticket id, so lookups by sys_id are point reads, not partition scans; written in the same
        transaction as the ticket (same partition). The entry is a hint: `find_ticket_by_sys_id` checks the
        ticket it points to, and falls back to a scan without one."""
        if not ticket.sys_id:
            return []
        from azure.data.tables import UpdateMode

        hint = {"PartitionKey": _TICKET_PARTITION, "RowKey": _sys_id_key(ticket.sys_id), "ticket_id": ticket.id,
                "status": ticket.status, "connection": ticket.connection}  # fmt: skip
        return [("upsert", hint, {"mode": UpdateMode.REPLACE})]

    def delete_ticket(self, ticket_id: str) -> None:
        self._table(TICKETS).delete_entity(_TICKET_PARTITION, ticket_id)

    # -- claims -------------------------------------------------------------------------------------
    # A claim lives in the tickets table, in the tickets' partition, so a new ticket and its claim are written in
    # one entity-group transaction (`begin_creation`), as a ticket and its sys_id hint are (`update_ticket`).
    # Their row keys ('~claim|', '~sysid|') sort after every ticket id (32 hex digits).
    # Stores from before kept claims and hints in their own tables: claims move here once per process, on first
    # use; the old hints table is dropped (hints are rebuilt on the next lookup by sys_id).

    def _migrate_legacy(self) -> None:
        if self._legacy_migrated:
            return
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        with self._lock:
            if self._legacy_migrated:
                return
            legacy = self._service.get_table_client(LEGACY_CLAIMS)
            tickets = self._table(TICKETS)
            try:
                for entity in legacy.query_entities("PartitionKey eq @pk", parameters={"pk": _CLAIM_PARTITION}):
                    moved = {"PartitionKey": _TICKET_PARTITION, "RowKey": _claim_key(entity["RowKey"]),
                             "ticket_id": entity["ticket_id"]}  # fmt: skip
                    with contextlib.suppress(ResourceExistsError):
                        tickets.create_entity(moved)
                legacy.delete_table()
            except ResourceNotFoundError:
                pass  # no legacy table: nothing to move
            self._service.delete_table(LEGACY_BY_SYS_ID)  # no error when it is absent
            self._legacy_migrated = True

    def begin_creation(self, ticket: Ticket, replacing: str | None = None) -> tuple[str | None, str]:
        for _ in range(_CLAIM_TRIES):
            outcome = self._begin_once(ticket, replacing)
            if outcome is not None:
                return outcome
        raise StoreConflict(f"the claim of {ticket.claim_key} kept changing while ticket {ticket.id} began")

    def _begin_once(self, ticket: Ticket, replacing: str | None) -> tuple[str | None, str] | None:
        """One try: (None, etag) begun, (holder, "") someone holds the claim, None the claim went in between."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import TableTransactionError, UpdateMode

        self._migrate_legacy()
        table = self._table(TICKETS)
        key = _claim_key(ticket.claim_key)
        claim = {"PartitionKey": _TICKET_PARTITION, "RowKey": key, "ticket_id": ticket.id}
        operations: list[Any] = [("create", _ticket_entity(ticket)), *self._sys_id_hint(ticket)]  # adoption's sys_id
        if replacing is None:
            operations.append(("create", claim))
        else:
            try:
                current = table.get_entity(_TICKET_PARTITION, key)
            except ResourceNotFoundError:
                current = None
            if current is not None and current["ticket_id"] != replacing:
                return str(current["ticket_id"]), ""
            if current is None:
                operations.append(("create", claim))
            else:
                condition = {"mode": UpdateMode.REPLACE, "etag": current.metadata["etag"],
                             "match_condition": MatchConditions.IfNotModified}  # fmt: skip
                operations.append(("update", claim, condition))
        try:
            results = table.submit_transaction(operations)
        except TableTransactionError as refused:  # nothing was written
            if getattr(refused, "error_code", None) not in _CLAIM_TAKEN or refused.index != len(operations) - 1:
                raise  # refused for another reason than the claim: said as it is, never read as a holder
            try:
                return str(table.get_entity(_TICKET_PARTITION, key)["ticket_id"]), ""
            except ResourceNotFoundError:
                return None  # released in between
        return None, str(results[0]["etag"])

    def claim_recommendation(self, recommendation_id: str, ticket_id: str) -> str | None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        self._migrate_legacy()
        table = self._table(TICKETS)
        key = _claim_key(recommendation_id)
        while True:
            try:
                table.create_entity({"PartitionKey": _TICKET_PARTITION, "RowKey": key, "ticket_id": ticket_id})
                return None
            except ResourceExistsError:
                pass
            try:
                holder = str(table.get_entity(_TICKET_PARTITION, key)["ticket_id"])
            except ResourceNotFoundError:
                continue  # released between our insert and read: try again
            return None if holder == ticket_id else holder

    def replace_claim(self, recommendation_id: str, holder: str, ticket_id: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        self._migrate_legacy()
        table = self._table(TICKETS)
        key = _claim_key(recommendation_id)
        try:
            entity = table.get_entity(_TICKET_PARTITION, key)
        except ResourceNotFoundError:
            return False
        claim = {"PartitionKey": _TICKET_PARTITION, "RowKey": key, "ticket_id": ticket_id}
        return (
            entity["ticket_id"] == holder
            and self._write_if_unchanged(table, claim, entity.metadata["etag"]) is not None
        )

    def release_claim(self, recommendation_id: str, holder: str) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        self._migrate_legacy()
        table = self._table(TICKETS)
        key = _claim_key(recommendation_id)
        try:
            entity = table.get_entity(_TICKET_PARTITION, key)
            if entity["ticket_id"] == holder:
                table.delete_entity(
                    _TICKET_PARTITION, key, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
                )
        except (ResourceModifiedError, ResourceNotFoundError):
            return

    def claim_holder(self, recommendation_id: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        self._migrate_legacy()
        try:
            return str(self._table(TICKETS).get_entity(_TICKET_PARTITION, _claim_key(recommendation_id))["ticket_id"])
        except ResourceNotFoundError:
            return None

    # -- idempotency keys ---------------------------------------------------------------------------

    def remember_idempotency_key(self, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        from azure.core.exceptions import ResourceExistsError

        table = self._table(IDEMPOTENCY)
        try:
            table.create_entity(_key_entity(key, record))
            return None
        except ResourceExistsError:
            entity = table.get_entity(_KEY_PARTITION, _row_key(key))
            return IdempotencyRecord(
                str(entity["ticket_id"]), str(entity["fingerprint"]), str(entity.get("created_at") or "")
            )

    def repoint_idempotency_key(self, key: str, record: IdempotencyRecord) -> None:
        from azure.data.tables import UpdateMode

        self._table(IDEMPOTENCY).upsert_entity(_key_entity(key, record), mode=UpdateMode.REPLACE)

    # -- status sync --------------------------------------------------------------------------------

    def list_tickets(self, tenant: str | None = None) -> list[tuple[Ticket, str]]:
        query, parameters = "PartitionKey eq @pk and RowKey lt @claims", {"pk": _TICKET_PARTITION, "claims": "~"}
        if tenant:  # another tenant's tickets all carry its id (the home tenant's from before tenants carry none)
            query, parameters = f"{query} and tenant eq @tenant", {**parameters, "tenant": tenant}
        found = [(_ticket_from(e), str(e.metadata["etag"])) for e in self._table(TICKETS).query_entities(
            query, parameters=parameters)]  # fmt: skip
        return found if tenant is None else [(t, etag) for t, etag in found if t.tenant == tenant]

    def list_pending_tickets(self) -> list[tuple[Ticket, str]]:
        entities = self._table(TICKETS).query_entities(
            "PartitionKey eq @pk and status eq @status", parameters={"pk": _TICKET_PARTITION, "status": "pending"}
        )
        return [(_ticket_from(e), str(e.metadata["etag"])) for e in entities]

    def find_ticket_by_sys_id(self, sys_id: str) -> tuple[Ticket, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        if not re.fullmatch(r"[0-9a-f]{32}", sys_id):
            return None
        try:
            hint = self._table(TICKETS).get_entity(_TICKET_PARTITION, _sys_id_key(sys_id))
        except ResourceNotFoundError:
            hint = None
        if hint is not None:
            found = self.get_ticket(str(hint["ticket_id"]))
            if found is not None and found[0].sys_id == sys_id:
                return found
        entities = self._table(TICKETS).query_entities(
            "PartitionKey eq @pk and sys_id eq @sys_id", parameters={"pk": _TICKET_PARTITION, "sys_id": sys_id}
        )
        for entity in entities:
            ticket = _ticket_from(entity)
            self._table(TICKETS).submit_transaction(self._sys_id_hint(ticket))
            return ticket, str(entity.metadata["etag"])
        return None

    def list_tracked_by_sys_id(self, after: str, upto: str, limit: int, connection: str = "") -> list[tuple[str, str]]:
        """From the sys_id hints, which sort by sys_id and carry the ticket's status and connection: one range
        query. A hint written before hints carried a status counts as tracked (verifying it once more is harmless);
        one from before connections is the default connection's."""
        entities = self._table(TICKETS).query_entities(
            "PartitionKey eq @pk and RowKey gt @after and RowKey le @upto",
            parameters={"pk": _TICKET_PARTITION, "after": _sys_id_key(after), "upto": _sys_id_key(upto)},
            select=["RowKey", "ticket_id", "status", "connection"],
            results_per_page=min(max(limit, 1), 1000),
        )
        found: list[tuple[str, str]] = []
        for entity in entities:
            if entity.get("status") in ("closed", "canceled") or str(entity.get("connection") or "") != connection:
                continue
            found.append((str(entity["RowKey"]).removeprefix(_sys_id_key("")), str(entity["ticket_id"])))
            if len(found) >= limit:
                break
        return found

    def list_unstamped_done(self, after: str, limit: int, connection: str = "", scan: int = 5000) -> Unstamped:
        """No null property is kept: the done ones are read with 4 small properties to check them; a match whole."""
        # spaces inside the parentheses: the SDK finds each @parameter as a word between spaces
        query = "PartitionKey eq @pk and RowKey gt @after and RowKey lt @claims and ( status eq @r or status eq @c )"
        parameters = {"pk": _TICKET_PARTITION, "after": after, "claims": "~", "r": "resolved", "c": "closed"}
        found: list[tuple[Ticket, str]] = []
        select = ["RowKey", "sys_id", "resolved_at", "connection"]
        entities = self._table(TICKETS).query_entities(query, parameters=parameters, select=select)
        for looked, e in enumerate(entities, 1):
            if e.get("sys_id") and e.get("resolved_at") is None and str(e.get("connection") or "") == connection:
                ticket = self.get_ticket(str(e["RowKey"]))
                if ticket and ticket[0].resolved_at is None and ticket[0].status in ("resolved", "closed"):
                    found.append(ticket)
            if len(found) >= limit or looked >= scan:
                return found, str(e["RowKey"])
        return found, None
