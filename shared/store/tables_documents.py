"""The Azure Table Storage store's small state: OAuth states, run states (the sync's, the named documents) and
the Secure Score snapshot. A mixin of `TableTicketStore` (shared/store/tables.py), which gives it its tables."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.store._models import DIGEST, OAuthState, StoreConflict, check_size, prefix_end

OAUTH_STATES = "oauthstates"
SYNC = "syncstate"
SECURE_SCORE = "securescore"
DOCUMENTS = "documents"
_STATE_PARTITION = "state"


# A string property holds at most 32K UTF-16 characters; `json.dumps` writes ASCII, so a document is cut into
# properties of this many characters (`data`, `data1`, ...), up to the entity's 1 MiB.
_CHUNK = 30_000


def _json_properties(value: Any, name: str = "data", row: str = "") -> dict[str, str]:
    text = json.dumps(value)  # ensure_ascii: one UTF-16 unit per character
    check_size(row, text)
    chunks = [text[start : start + _CHUNK] for start in range(0, len(text), _CHUNK)] or [""]
    return {(name if i == 0 else f"{name}{i}"): chunk for i, chunk in enumerate(chunks)}


def _json_of(entity: Any, name: str = "data") -> Any:
    parts = [str(entity[name])]
    while f"{name}{len(parts)}" in entity:
        parts.append(str(entity[f"{name}{len(parts)}"]))
    return json.loads("".join(parts))


def _pointer_key(tenant: str) -> str:
    """The snapshot pointer's row: `current` for the home tenant, as before tenants; `t-{tenant id}` for others."""
    return f"t-{tenant}" if tenant else "current"


class TableDocuments:
    """OAuth states, run states and the Secure Score snapshot, on the tables `TableTicketStore` opens."""

    def _table(self, name: str) -> Any:
        raise NotImplementedError

    def _write_if_unchanged(self, table: Any, entity: dict[str, Any], etag: str, *, merge: bool = False) -> str | None:
        raise NotImplementedError

    def add_oauth_state(self, state: OAuthState) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self._table(OAUTH_STATES).create_entity(
                {
                    "PartitionKey": _STATE_PARTITION,
                    "RowKey": state.state,
                    "code_verifier": state.code_verifier,
                    "instance_url": state.instance_url,
                    "redirect_uri": state.redirect_uri,
                    "started_by": state.started_by,
                    "created_at": state.created_at.isoformat(),
                    "expires_at": state.expires_at.isoformat(),
                    "browser_hash": state.browser_hash,
                    "connection": state.connection,
                }
            )
        except ResourceExistsError as exc:
            raise StoreConflict("the OAuth state exists") from exc

    def take_oauth_state(self, state: str) -> OAuthState | None:
        from azure.core.exceptions import ResourceNotFoundError

        table = self._table(OAUTH_STATES)
        try:
            entity = table.get_entity(_STATE_PARTITION, state)
        except ResourceNotFoundError:
            return None
        # The conditional update is the single-use guarantee: only one taker's ETag still matches.
        # (delete_entity cannot be the guard: the SDK swallows the 404 a lost race returns.)
        consumed = {"PartitionKey": _STATE_PARTITION, "RowKey": state, "consumed": True}
        if (
            entity.get("consumed")
            or self._write_if_unchanged(table, consumed, entity.metadata["etag"], merge=True) is None
        ):
            return None
        table.delete_entity(_STATE_PARTITION, state)
        return OAuthState(
            state=state,
            code_verifier=entity["code_verifier"],
            instance_url=entity["instance_url"],
            redirect_uri=entity["redirect_uri"],
            started_by=entity["started_by"],
            created_at=datetime.fromisoformat(entity["created_at"]),
            expires_at=datetime.fromisoformat(entity["expires_at"]),
            browser_hash=str(entity.get("browser_hash") or ""),
            connection=str(entity.get("connection") or ""),
        )

    def purge_oauth_states(self, before: datetime) -> int:
        table = self._table(OAUTH_STATES)
        expired = table.query_entities(
            "PartitionKey eq @pk and expires_at lt @before",
            parameters={"pk": _STATE_PARTITION, "before": before.isoformat()},
            select=["PartitionKey", "RowKey"],
        )
        count = 0
        for entity in expired:
            table.delete_entity(entity["PartitionKey"], entity["RowKey"])
            count += 1
        return count

    def get_sync_state(self) -> tuple[dict[str, Any], str] | None:
        return self._get_json(SYNC, "sync", "state")

    def put_sync_state(self, state: dict[str, Any], etag: str | None) -> str:
        return self._put_json(SYNC, "sync", "state", state, etag, "the sync state changed")

    def _get_json(self, table: str, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table(table).get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return _json_of(entity), str(entity.metadata["etag"])

    def _put_json(self, table_name: str, partition: str, row: str, data: dict[str, Any], etag: str | None,
                  conflict: str) -> str:  # fmt: skip
        """Insert (etag None) or replace under the ETag; the replace drops chunks a shorter document no longer
        needs."""
        from azure.core.exceptions import ResourceExistsError

        entity = {"PartitionKey": partition, "RowKey": row, **_json_properties(data, row=row)}
        table = self._table(table_name)
        if etag is not None:
            new_etag = self._write_if_unchanged(table, entity, etag)
            if new_etag is None:
                raise StoreConflict(conflict)
            return new_etag
        try:
            return str(table.create_entity(entity)["etag"])
        except ResourceExistsError as exc:
            raise StoreConflict(conflict) from exc

    # -- Secure Score ---------------------------------------------------------------------------------
    # Controls live in a partition per snapshot version; the pointer entity names the current version and
    # the previous one. A reader holding the old pointer still finds its rows: only the version before the
    # previous is deleted. So a reader sees one whole snapshot, never a mix, without a lock.

    def put_secure_score(self, summary: dict[str, Any], controls: list[dict[str, Any]], tenant: str = "") -> None:
        import uuid

        table = self._table(SECURE_SCORE)
        version = uuid.uuid4().hex
        operations = [
            ("upsert", {"PartitionKey": f"v{version}", "RowKey": c["id"], **_json_properties(c)}) for c in controls
        ]
        for start in range(0, len(operations), 100):  # an entity-group transaction holds 100 operations
            table.submit_transaction(operations[start : start + 100])
        old = self._secure_score_pointer(tenant)
        pointer = {
            "PartitionKey": "current",
            "RowKey": _pointer_key(tenant),
            "version": version,
            "previous": str(old["version"]) if old else "",
            **_json_properties(summary, "summary"),
        }
        from azure.core.exceptions import ResourceExistsError

        try:
            if old is None:
                table.create_entity(pointer)
                flipped = True
            else:
                flipped = self._write_if_unchanged(table, pointer, old.metadata["etag"]) is not None
        except ResourceExistsError:
            flipped = False
        if not flipped:  # a concurrent refresh flipped it first: its snapshot stands, ours is dropped
            self._delete_partition(table, f"v{version}")
            return
        if old is not None and old.get("previous"):
            self._delete_partition(table, f"v{old['previous']}")

    def _delete_partition(self, table: Any, partition: str) -> None:
        rows = [
            e["RowKey"]
            for e in table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": partition}, select=["PartitionKey", "RowKey"]
            )
        ]
        from azure.data.tables import TableTransactionError

        for start in range(0, len(rows), 100):
            chunk = rows[start : start + 100]
            try:
                table.submit_transaction([("delete", {"PartitionKey": partition, "RowKey": row}) for row in chunk])
            except TableTransactionError:  # a concurrent refresh deleted some of them: delete the rest one by one
                for row in chunk:
                    table.delete_entity(partition, row)  # a row already gone is not an error here

    def put_secure_score_summary(self, summary: dict[str, Any], tenant: str = "") -> bool:
        """The pointer row again with the new summary and the same version (replaced whole, so no chunk of a longer
        old summary is left behind), conditional on its ETag: a concurrent refresh's new snapshot stands."""
        table = self._table(SECURE_SCORE)
        old = self._secure_score_pointer(tenant)
        if old is None or _json_of(old, "summary").get(DIGEST) != summary.get(DIGEST):
            return False
        pointer = {"PartitionKey": "current", "RowKey": _pointer_key(tenant), "version": old["version"],
                   "previous": old.get("previous") or "", **_json_properties(summary, "summary")}  # fmt: skip
        self._write_if_unchanged(table, pointer, old.metadata["etag"])
        return True

    def _secure_score_pointer(self, tenant: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._table(SECURE_SCORE).get_entity("current", _pointer_key(tenant))
        except ResourceNotFoundError:
            return None

    def get_secure_score_summary(self, tenant: str = "") -> dict[str, Any] | None:
        pointer = self._secure_score_pointer(tenant)
        return None if pointer is None else _json_of(pointer, "summary")

    def get_secure_score(self, tenant: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        pointer = self._secure_score_pointer(tenant)
        if pointer is None:
            return None
        rows = self._table(SECURE_SCORE).query_entities(
            "PartitionKey eq @pk", parameters={"pk": f"v{pointer['version']}"}
        )
        return _json_of(pointer, "summary"), [_json_of(e) for e in rows]

    def get_secure_score_control(self, control_id: str, tenant: str = "") -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        pointer = self._secure_score_pointer(tenant)
        if pointer is None:
            return None
        try:
            entity = self._table(SECURE_SCORE).get_entity(f"v{pointer['version']}", control_id)
        except ResourceNotFoundError:
            return None
        return dict(_json_of(entity))

    # -- documents ------------------------------------------------------------------------------------

    def get_document(self, name: str) -> tuple[dict[str, Any], str] | None:
        return self._get_json(DOCUMENTS, "doc", name)

    def put_document(self, name: str, data: dict[str, Any], etag: str | None) -> str:
        return self._put_json(DOCUMENTS, "doc", name, data, etag, f"the document {name} changed")

    def delete_document(self, name: str) -> None:
        self._table(DOCUMENTS).delete_entity("doc", name)  # no error when it is absent (azure-data-tables 12.x)

    def list_documents(self, prefix: str) -> dict[str, tuple[dict[str, Any], str]]:
        # One partition, a RowKey range: keys compare as strings (https://learn.microsoft.com/rest/api/storageservices/
        # querying-tables-and-entities#supported-comparison-operators).
        rows = self._table(DOCUMENTS).query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": "doc", "low": prefix, "high": prefix_end(prefix)},
        )
        return {str(e["RowKey"]): (_json_of(e), str(e.metadata["etag"])) for e in rows}
