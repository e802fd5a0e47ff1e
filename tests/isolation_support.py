"""Helpers for the isolation tests (issue 25): a second simulated ServiceNow instance, records made in an instance by
an ordinary user through the Table API (as anyone with `create` on the table can), and a connector holding tokens
for both instances without the OAuth journey (for tests that build many worlds)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from dev.servicenow import ServiceNowSimulator, SimulatorTransport
from dev.servicenow.state import ADMIN_SYS_ID, Grant
from shared.config import load_settings
from shared.connections import DOCUMENT as CONNECTIONS
from shared.secrets import FileSecretStore
from shared.services import Services
from shared.store import SqliteTicketStore
from shared.tokens import TokenBundle
from tests.conftest import CLIENT_ID, CLIENT_SECRET, INSTANCE, Clock, settings_env

SECOND_ID = "second"
SECOND_URL = "https://second.service-now.com"
SECOND_CLIENT = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"
SECOND_SECRET = "second-client-secret-0f1e2d3c"
MALLORY = "5a4b3c2d1e0f5a4b3c2d1e0f5a4b3c2d"  # an ordinary user of an instance: may create incidents, nothing more


class Instances(httpx.BaseTransport):
    """Each request to the simulator of its host, as DNS and the network would send it."""

    def __init__(self, *simulators: ServiceNowSimulator) -> None:
        self.by_host = {urlsplit(s.instance_url).netloc: SimulatorTransport(s) for s in simulators}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.by_host[request.url.netloc.decode()].handle_request(request)


def plant(simulator: ServiceNowSimulator, correlation: str, **fields: str) -> dict[str, Any]:
    """An incident an ordinary user creates in `simulator` through the Table API, with any correlation id."""
    if MALLORY not in simulator.tables["sys_user"]:
        simulator.add_user(MALLORY, "mallory", "Mallory Ordinary", "mallory@example.com")
    token = uuid.uuid4().hex
    simulator.access_tokens[token] = Grant(MALLORY, "ui", simulator.clock() + 3600)
    body = {"short_description": "Looks like the connector's", "correlation_id": correlation, **fields}
    with httpx.Client(transport=SimulatorTransport(simulator)) as client:
        response = client.post(f"{simulator.instance_url}/api/now/table/incident", json=body,
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 201, response.text
    return dict(response.json()["result"])


def second_simulator(clock: Clock) -> ServiceNowSimulator:
    simulator = ServiceNowSimulator(SECOND_URL, clock=clock.epoch)
    simulator.register_client(SECOND_CLIENT, SECOND_SECRET, ["https://connector.example.net/api/oauth/callback"])
    simulator.auto_approve = True
    return simulator


@dataclass
class World:
    """A connector on two instances (`default` and `second`), each already holding a token its instance takes."""

    services: Services
    default: ServiceNowSimulator
    second: ServiceNowSimulator


def _token(simulator: ServiceNowSimulator, client: str, clock: Clock) -> TokenBundle:
    access = uuid.uuid4().hex
    simulator.access_tokens[access] = Grant(ADMIN_SYS_ID, client, clock.epoch() + 30 * 86400)
    now = clock()
    return TokenBundle(access, "refresh", now + timedelta(days=30), now + timedelta(days=90), simulator.instance_url,
                       now, "m365.integration")  # fmt: skip


def two_instance_world(tmp: Path, clock: Clock, **env: str) -> World:
    default = ServiceNowSimulator(INSTANCE, clock=clock.epoch)
    default.register_client(CLIENT_ID, CLIENT_SECRET, [])
    second = second_simulator(clock)
    services = Services(load_settings(settings_env(**env)), transport=Instances(default, second),
                        store=SqliteTicketStore(tmp / "store.db"), secrets=FileSecretStore(tmp / "secrets.json"),
                        clock=clock)  # fmt: skip
    record = {"id": SECOND_ID, "instance": SECOND_URL, "clientId": SECOND_CLIENT, "table": "incident",
              "addedAt": clock().isoformat(), "addedBy": "test"}  # fmt: skip
    services.store.put_document(CONNECTIONS, {"connections": {SECOND_ID: record}}, None)
    services.secrets.set(f"servicenow-client-secret-{SECOND_ID}", SECOND_SECRET)
    services.tokens.save(_token(default, CLIENT_ID, clock))
    scoped = services.for_connection(services.connection_named(SECOND_ID))
    scoped.tokens.save(_token(second, SECOND_CLIENT, clock))
    return World(services, default, second)
