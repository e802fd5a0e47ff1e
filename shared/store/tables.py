"""TableTicketStore: Azure Table Storage (azure-data-tables). ETags for every conditional write;
filters are always parameterized."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from shared.store._models import OAuthState

OAUTH_STATES = "oauthstates"
_STATE_PARTITION = "state"


class TableTicketStore:
    def __init__(self, service: Any) -> None:
        """`service` is an `azure.data.tables.TableServiceClient`; see `from_settings`."""
        self._service = service
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str) -> TableTicketStore:
        from azure.data.tables import TableServiceClient  # lazy: cold start

        return cls(TableServiceClient.from_connection_string(connection_string))

    @classmethod
    def from_endpoint(cls, endpoint: str, client_id: str | None) -> TableTicketStore:
        from azure.data.tables import TableServiceClient
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return cls(TableServiceClient(endpoint=endpoint, credential=credential))

    def _table(self, name: str) -> Any:
        table = self._tables.get(name)
        if table is None:
            with self._lock:
                table = self._tables.get(name)
                if table is None:
                    table = self._service.create_table_if_not_exists(name)
                    self._tables[name] = table
        return table

    def add_oauth_state(self, state: OAuthState) -> None:
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
            }
        )

    def take_oauth_state(self, state: str) -> OAuthState | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = self._table(OAUTH_STATES)
        try:
            entity = table.get_entity(_STATE_PARTITION, state)
            if entity.get("consumed"):
                return None
            # The conditional update is the single-use guarantee: only one taker's ETag still matches.
            # (delete_entity cannot be the guard: the SDK swallows the 404 a lost race returns.)
            table.update_entity(
                {"PartitionKey": _STATE_PARTITION, "RowKey": state, "consumed": True},
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceNotFoundError, ResourceModifiedError):
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
