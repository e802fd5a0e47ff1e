"""ServiceNow connections (docs/design.md#connections-and-routes): one instance with its OAuth client and tokens each.

The `default` connection is the one the settings describe (`SERVICENOW_INSTANCE`, ...), as before connections:
its client secret and tokens keep their secret names and its tickets carry no connection. The others are added by
an admin and kept in the store's `connections` document; their client secret is the secret
`servicenow-client-secret-{id}` and their tokens `servicenow-token-{id}`. Code that talks to ServiceNow works on
`Services.for_connection(c)`: the same services with that connection's instance, client, table and field map, and
a sync state of its own, so the status sync, provisioning and the OAuth flow run unchanged per connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.fieldmap import FieldMap, parse_field_map
from shared.problems import ConnectorError
from shared.secrets import CLIENT_SECRET, TOKEN_BUNDLE, WEBHOOK_SECRET

if TYPE_CHECKING:
    from datetime import datetime

    from shared.config import Settings
    from shared.store import TicketStore
    from shared.tickets import Ticket
    from shared.tokens import TokenBundle

DEFAULT = "default"
DOCUMENT = "connections"
CONNECTION_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")  # part of Key Vault secret names: [0-9a-z-]


@dataclass(frozen=True)
class Connection:
    id: str
    instance_url: str | None
    client_id: str | None
    table: str
    field_map: FieldMap
    # An id added again after it was removed gets a tag of its own: its secrets and sync state are new ones, never
    # the earlier connection's (Key Vault keeps a deleted name reserved for its retention: docs/admin-guide.md 13).
    tag: str = ""

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT

    @property
    def key(self) -> str:
        """What a ticket records: "" for the default connection (every ticket from before connections)."""
        return "" if self.is_default else self.id

    def _named(self, base: str) -> str:
        """A secret of this connection: `{base}-{id}`, and `-{tag}` after it for an id used again. A tag makes the
        name longer than any id's, so it never meets another connection's names (Key Vault: 1-127 of 0-9a-zA-Z-)."""
        return base if self.is_default else f"{base}-{self.id}" + (f"-{self.tag}" if self.tag else "")

    @property
    def client_secret_name(self) -> str:
        return self._named(CLIENT_SECRET)

    @property
    def token_name(self) -> str:
        return self._named(TOKEN_BUNDLE)

    @property
    def push_secret_name(self) -> str:
        """The key push notices from this connection's instance are signed with (status_sync/events.py)."""
        return self._named(WEBHOOK_SECRET)

    @property
    def secret_names(self) -> tuple[str, ...]:
        return (self.client_secret_name, self.token_name, self.push_secret_name)

    @property
    def sync_state_name(self) -> str:
        return f"sync-state:{self.id}" + (f":{self.tag}" if self.tag else "")

    def serves(self, ticket: Ticket) -> bool:
        """A connection is its instance: a ticket made on an earlier connection of the same id, for another
        instance, is not this one's (its connection is gone), and nothing is sent anywhere on its behalf."""
        if ticket.connection != self.key:
            return False
        return self.is_default or ticket.instance == self.instance_url


def connection_id(key: str) -> str:
    """A ticket's connection key as a connection id."""
    return key or DEFAULT


def default_connection(settings: Settings) -> Connection:
    return Connection(DEFAULT, settings.instance_url, settings.client_id, settings.table, settings.field_map)


def stored(store: TicketStore) -> dict[str, dict[str, Any]]:
    """The added connections' records, by id."""
    found = store.get_document(DOCUMENT)
    return dict((found[0] if found else {}).get("connections") or {})


def from_record(record: dict[str, Any]) -> Connection:
    table = str(record["table"])
    return Connection(str(record["id"]), str(record["instance"]), str(record["clientId"]), table,
                      parse_field_map(record.get("fieldMap") or {}, table), str(record.get("tag") or ""))  # fmt: skip


class ConnectionStore:
    """The store as one added connection sees it: its own sync state (a document of its own), all else shared."""

    def __init__(self, store: TicketStore, connection: Connection) -> None:
        self._store = store
        self._name = connection.sync_state_name

    def get_sync_state(self) -> tuple[dict[str, Any], str] | None:
        return self._store.get_document(self._name)

    def put_sync_state(self, state: dict[str, Any], etag: str | None) -> str:
        return self._store.put_document(self._name, state, etag)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._store, name)  # type: ignore[no-any-return]


def connection_state(load: Callable[[], TokenBundle | None], instance_url: str | None, now: datetime) -> dict[str, Any]:
    """Whether a connection is connected, from its stored tokens (`load` reads them; no call to ServiceNow): what
    `GET /api/connections` shows and provisioning checks."""
    try:
        bundle = load()
    except ConnectorError as exc:
        return {"state": "not_configured", "detail": exc.detail}
    except Exception as exc:  # the secret store itself failed
        return {"state": "degraded", "detail": f"The secret store could not be read ({type(exc).__name__})."}
    if bundle is None:
        return {"state": "not_connected", "connectedAs": None}
    if bundle.instance != instance_url or bundle.needs_reauthorization(now):
        return {"state": "reauthorization_required", "connectedAs": bundle.connected_as}
    return {"state": "connected", "connectedAs": bundle.connected_as}
