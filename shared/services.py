"""The one composition point: builds the services from settings, once per process, on first use.

Tests and the local host hand in a different transport, store, secret store or clock here; nothing
else in the app constructs clients.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import httpx

from shared.auth import Caller, EntraAuthenticator
from shared.config import Settings, load_settings
from shared.connections import (
    CONNECTION_ID,
    DEFAULT,
    Connection,
    ConnectionStore,
    connection_id,
    default_connection,
    from_record,
    stored,
)
from shared.deadlines import ROUTES_DEADLINE, RUN_DEADLINE
from shared.egress import CheckedTransport, Resolver, resolve
from shared.problems import ConnectorError, FieldError, NotConfigured, NotFound, ValidationFailed
from shared.retries import RetryPolicy
from shared.secrets import FileSecretStore, KeyVaultSecretStore, SecretStore
from shared.servicenow import ServiceNowClient
from shared.store import SqliteTicketStore, TicketStore
from shared.telemetry import configure_telemetry
from shared.text import printable
from shared.tickets import TENANT_ID
from shared.tokens import TokenManager

T = TypeVar("T")

if TYPE_CHECKING:
    from shared.graph import GraphClient
    from shared.queues import WorkQueues
    from shared.tickets import Ticket


def utcnow() -> datetime:
    return datetime.now(UTC)


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        store: TicketStore | None = None,
        secrets: SecretStore | None = None,
        clock: Callable[[], datetime] = utcnow,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        graph_transport: httpx.BaseTransport | None = None,
        entra_transport: httpx.BaseTransport | None = None,
        run_deadline: float = RUN_DEADLINE,
        creation_wait: float = 25.0,
        routes_deadline: float = ROUTES_DEADLINE,
        resolver: Resolver = resolve,
        queues: WorkQueues | None = None,
    ) -> None:
        self.settings = settings
        self.run_deadline = run_deadline  # seconds a status sync or a Secure Score refresh may take
        self.routes_deadline = routes_deadline  # seconds saving or previewing routes may take
        self.resolver = resolver  # names to addresses for ServiceNow connections (shared/egress.py); tests hand one in
        self.creation_wait = creation_wait  # seconds a create waits for a concurrent one making the same ticket
        self._graph_transport = graph_transport
        self._entra_transport = entra_transport
        self._entra_http: httpx.Client | None = None
        self._graph: GraphClient | None = None
        self.clock = clock
        self._transport = transport
        self._store = store
        self._queues = queues
        self._queues_opened = queues is not None
        self._secrets = secrets
        self._retry = retry
        self._sleep = sleep
        self._servicenow: ServiceNowClient | None = None
        self._tokens: TokenManager | None = None
        self._components: dict[str, object] = {}
        self._authenticator: EntraAuthenticator | None = None
        self._lock = threading.RLock()
        self.connection: Connection = default_connection(settings)  # the ServiceNow instance these services talk to
        self._parent: Services | None = None  # for another connection's services: the app's own
        self._scoped: dict[str, Services] = {}

    # -- connections (docs/design.md#connections-and-routes) -----------------------------------------------------------

    def connections(self) -> list[Connection]:
        """The default connection (when its settings are there) and every added one, by id."""
        added = [from_record(r) for _, r in sorted(stored(self.store).items())]
        default = self.connection if self._parent is None else self._parent.connection
        return ([default] if default.instance_url else []) + added

    def connection_named(self, connection_id: str) -> Connection:
        """A connection by id (`default`: the settings' one); an unknown id is `not_found`."""
        if connection_id == DEFAULT:
            return default_connection(self.settings if self._parent is None else self._parent.settings)
        if not CONNECTION_ID.fullmatch(connection_id):
            raise ValidationFailed([FieldError("connection", "must be a connection's id (GET /api/connections)")])
        record = stored(self.store).get(connection_id)
        if record is None:
            raise NotFound(f"The connector has no ServiceNow connection '{printable(connection_id, 40)}'.")
        return from_record(record)

    def for_connection(self, connection: Connection) -> Services:
        """These services as `connection` sees them: its instance, OAuth client, tokens, table, field map and sync
        state; the store, secrets, Graph and clock shared. Built once per connection (its token cache with it)."""
        root = self._parent or self
        if connection.is_default:
            return root
        with root._lock:
            held = root._scoped.get(connection.id)
            if held is None or held.connection != connection:
                settings = replace(
                    root.settings, instance_url=connection.instance_url, client_id=connection.client_id,
                    client_secret=None, table=connection.table, field_map=connection.field_map,
                    issues=tuple(i for i in root.settings.issues if not i.setting.startswith("SERVICENOW_")),
                )  # fmt: skip
                held = Services(
                    settings, transport=root._transport, store=cast(TicketStore, ConnectionStore(root.store,
                    connection)), secrets=root.secrets, clock=root.clock, retry=root._retry, sleep=root._sleep,
                    run_deadline=root.run_deadline, creation_wait=root.creation_wait,
                    routes_deadline=root.routes_deadline, resolver=root.resolver,
                )  # fmt: skip
                held.connection = connection
                held._parent = root
                root._scoped[connection.id] = held
            return held

    def home_tenant_id(self) -> str | None:
        """The deployment's own Microsoft tenant: the sign-in's (ENTRA_TENANT_ID), the one the home snapshot names,
        or the one the managed identity's Graph token names (`tid`); None when none can be had right now."""
        if self.settings.entra_tenant_id:
            return self.settings.entra_tenant_id.lower()
        found = self.store.get_secure_score("")
        named = (found[0] if found else {}).get("tenantId")
        if isinstance(named, str) and TENANT_ID.fullmatch(named.lower()):
            return named.lower()
        try:
            tid = (self.graph.token_claims() or {}).get("tid")
        except ConnectorError:
            return None
        return tid.lower() if isinstance(tid, str) and TENANT_ID.fullmatch(tid.lower()) else None

    def for_ticket(self, ticket: Ticket) -> Services:
        """The services of the connection a ticket lives on; `not_found` when that connection is gone: removed, or
        removed and added again for another instance (nothing is ever sent to the new instance on its behalf)."""
        connection = self.connection_named(connection_id(ticket.connection))
        if not connection.serves(ticket):
            raise NotFound(
                f"Ticket {ticket.number or ticket.id} lives on {ticket.instance}, and ServiceNow connection "
                f"'{connection.id}' now names another instance ({connection.instance_url}): its connection is gone, "
                "and nothing is sent to the new instance on its behalf."
            )
        return self.for_connection(connection)

    def require_configured(self) -> None:
        """Raise `not_configured` naming every setting to fix (ServiceNow is never called before this)."""
        if self.settings.issues or self.settings.instance_url is None or self.settings.client_id is None:
            listed = "; ".join(f"{i.setting} {i.message}" for i in self.settings.issues)
            raise NotConfigured(
                f"The connector's settings need attention: {listed}",
                remediation="Fix the app settings named here (docs/settings.md), then restart the app.",
            )

    @property
    def secrets(self) -> SecretStore:
        with self._lock:
            if self._secrets is None:
                if self.settings.key_vault_url:
                    self._secrets = KeyVaultSecretStore(self.settings.key_vault_url)
                else:
                    self._secrets = FileSecretStore(self.settings.local_data_dir / "secrets.json")
            return self._secrets

    @property
    def store(self) -> TicketStore:
        with self._lock:
            if self._store is None:
                self._store = _open_store(self.settings)
            return self._store

    @property
    def queues(self) -> WorkQueues | None:
        """The fan-out's storage queues (shared/queues.py); None when the app has no queue configured."""
        if self._parent is not None:
            return self._parent.queues
        with self._lock:
            if not self._queues_opened:
                from shared.queues import open_queues

                self._queues = open_queues()
                self._queues_opened = True
            return self._queues

    @property
    def servicenow(self) -> ServiceNowClient:
        with self._lock:
            if self._servicenow is None:
                self.require_configured()
                assert self.settings.instance_url is not None
                # Without a transport handed in (tests, the local host), each new connection goes to an address the
                # connector resolved and checked itself: a public one in Azure (shared/egress.py).
                transport = self._transport or CheckedTransport(public_only=self.settings.in_azure,
                                                                resolver=self.resolver)  # fmt: skip
                self._servicenow = ServiceNowClient(
                    self.settings.instance_url, transport=transport, retry=self._retry, sleep=self._sleep
                )
            return self._servicenow

    @property
    def tokens(self) -> TokenManager:
        with self._lock:
            if self._tokens is None:
                servicenow = self.servicenow
                assert self.settings.client_id is not None and self.settings.instance_url is not None
                self._tokens = TokenManager(
                    secrets=self.secrets,
                    servicenow=servicenow,
                    client_id=self.settings.client_id,
                    client_secret=self.settings.client_secret,
                    instance=self.settings.instance_url,
                    clock=self.clock,
                    secret_name=self.connection.client_secret_name,
                    token_name=self.connection.token_name,
                )
            return self._tokens

    def component(self, name: str, build: Callable[[Services], T]) -> T:
        """The one `name` a feature builds on these services (the ticket creator, say), built on first use. The
        feature hands in how to build it, so this composition point never imports a feature."""
        with self._lock:
            if name not in self._components:
                self._components[name] = build(self)
            return cast(T, self._components[name])

    @property
    def graph(self) -> GraphClient:
        """Microsoft Graph, with azure-identity's credential (imported on first use, never at cold start)."""
        if self._parent is not None:
            return self._parent.graph
        with self._lock:
            if self._graph is None:
                from shared.graph import GraphClient

                self._graph = GraphClient(
                    self.settings.graph_url,
                    client_id=self.settings.azure_client_id,
                    transport=self._graph_transport,
                    retry=self._retry,
                    sleep=self._sleep,
                    reader_app_id=self.settings.reader_app_client_id,
                    authority=self.settings.entra_authority,
                )
            return self._graph

    @property
    def entra_http(self) -> httpx.Client:
        """Plain HTTP to Microsoft Entra ID (OpenID discovery); tokens go through azure-identity instead."""
        with self._lock:
            if self._entra_http is None:
                self._entra_http = httpx.Client(
                    transport=self._entra_transport, follow_redirects=False,
                    headers={"Accept": "application/json", "User-Agent": "m365-servicenow-connector"},
                )  # fmt: skip
            return self._entra_http

    def _entra(self) -> EntraAuthenticator | None:
        settings = self.settings
        if not (settings.entra_tenant_id and settings.entra_audience):
            return None
        with self._lock:
            if self._authenticator is None:
                self._authenticator = EntraAuthenticator(
                    settings.entra_tenant_id, settings.entra_audience, settings.entra_authority
                )
        return self._authenticator

    def caller(self, headers: Mapping[str, str]) -> Caller:
        """Who is calling (docs/design.md#portal-and-sign-in; shared/signin.py says which principal headers count)."""
        from shared.signin import identify

        return identify(self.settings, self._entra(), headers)

    def close(self) -> None:
        for scoped in list(self._scoped.values()):
            scoped.close()
        for component in list(self._components.values()):  # a feature's threads (the routes read beside a claim)
            close = getattr(component, "close", None)
            if callable(close):
                close()
        if self._servicenow is not None:
            self._servicenow.close()
        if self._graph is not None:
            self._graph.close()
        if self._entra_http is not None:
            self._entra_http.close()
        if self._queues is not None and self._parent is None:
            self._queues.close()


def _open_store(settings: Settings) -> TicketStore:
    if settings.ticket_store == "tables":
        from shared.store.outage import connections_for
        from shared.store.tables import TableTicketStore

        connection = os.environ.get("AzureWebJobsStorage", "").strip()
        endpoint = os.environ.get("AzureWebJobsStorage__tableServiceUri", "").strip()
        pool = connections_for(settings.tenant_parallelism)
        if endpoint:
            client_id = os.environ.get("AzureWebJobsStorage__clientId") or None
            return TableTicketStore.from_endpoint(endpoint, client_id, pool)
        if connection:
            return TableTicketStore.from_connection_string(connection, pool)
        raise NotConfigured(
            "TICKET_STORE is 'tables' but no storage account is configured.",
            remediation="Set AzureWebJobsStorage__tableServiceUri (identity-based) or AzureWebJobsStorage.",
        )
    if settings.ticket_store.startswith("sqlite:///"):
        return SqliteTicketStore(Path(settings.ticket_store.removeprefix("sqlite:///")))
    return SqliteTicketStore(settings.local_data_dir / "connector.db")


_services: Services | None = None
_services_lock = threading.Lock()


def get_services() -> Services:
    global _services
    if _services is None:
        with _services_lock:
            if _services is None:
                configure_telemetry()
                _services = Services(load_settings())
    return _services


def install(services: Services | None) -> None:
    """Use these services from now on (tests, the local host); None rebuilds from settings on next use."""
    global _services
    with _services_lock:
        _services = services
