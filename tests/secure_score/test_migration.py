"""A store written before tenants (tests/fixtures/before-tenants, by the code at commit eefe723) keeps working with
today's code, in SQLite and in Table Storage (Azurite): its tickets are the home tenant's, its claims still hold (no
duplicate), its snapshot is served, its connection still refreshes, and the runs go on as before."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dev.entra import HOME
from dev.graph import GraphSimulator
from dev.servicenow import ServiceNowSimulator, SimulatorTransport
from dev.servicenow.state import INTEGRATION_USER_SYS_ID, Grant
from shared import services as services_module
from shared.config import load_settings
from shared.retries import RetryPolicy
from shared.secrets import FileSecretStore
from shared.services import Services
from shared.store import SqliteTicketStore, TicketStore
from status_sync.every import sync_every_connection
from tests.conftest import CLIENT_ID, CLIENT_SECRET, INSTANCE, REDIRECT_URI, ROOT, Clock, Harness, Sleeps, settings_env

BEFORE = ROOT / "tests" / "fixtures" / "before-tenants"
CONTROL = "AdminMFAV2"  # ticketed before tenants


def instance(state: str, clock: Clock) -> ServiceNowSimulator:
    """The simulated instance as it was: its records and the tokens it issued to the connector."""
    data = json.loads((BEFORE / state).read_text())
    simulator = ServiceNowSimulator(INSTANCE, clock=clock.epoch)
    simulator.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    for record in data["records"]:
        simulator.tables["incident"][record["sys_id"]] = dict(record)
    simulator._number = 10000 + len(data["records"])
    later = time.time() + 90 * 86400
    for token in data["refresh_tokens"]:
        simulator.refresh_tokens[token] = Grant(INTEGRATION_USER_SYS_ID, CLIENT_ID, later)
    return simulator


def table_store(connection: str) -> TicketStore:
    """Azurite holding every entity the old code wrote, as it wrote them."""
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    service = TableServiceClient.from_connection_string(connection)
    for table in service.list_tables():
        service.delete_table(table.name)
    for name, entities in json.loads((BEFORE / "tables.json").read_text()).items():
        client = service.create_table_if_not_exists(name)
        for entity in entities:
            client.create_entity(entity)
    return TableTicketStore(service)


@pytest.fixture(params=["sqlite", "tables"])
def before(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, identity: Any,
           indexed_functions: dict[str, Any]) -> Iterator[Harness]:  # fmt: skip
    """Today's app opened on yesterday's stores."""
    if request.param == "sqlite":
        shutil.copy(BEFORE / "connector.db", tmp_path / "store.db")
        shutil.copy(BEFORE / "secrets.json", tmp_path / "secrets.json")
        store: TicketStore = SqliteTicketStore(tmp_path / "store.db")
        simulator = instance("servicenow.json", clock)
    else:
        shutil.copy(BEFORE / "secrets-tables.json", tmp_path / "secrets.json")
        store = table_store(request.getfixturevalue("azurite"))
        simulator = instance("servicenow-tables.json", clock)
    (tmp_path / "secrets.json").chmod(0o600)
    graph = GraphSimulator(identity, clock=clock.epoch)
    transport = SimulatorTransport(simulator)
    sleeps = Sleeps()
    services = Services(load_settings(settings_env()), transport=transport, graph_transport=SimulatorTransport(graph),
                        store=store, secrets=FileSecretStore(tmp_path / "secrets.json"), clock=clock,
                        retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_total=60.0), sleep=sleeps)  # fmt: skip
    services_module.install(services)
    yield Harness(services, simulator, transport, graph, clock, sleeps, indexed_functions, tmp_path)
    services_module.install(None)
    services.close()


def body(response: Any) -> Any:
    return json.loads(response.get_body())


def test_the_old_tickets_are_the_home_tenants(before):
    card = body(before.call("list_tickets", path="/tickets", params={"status": "all"}))
    assert len(card["tickets"]) == 4 and {t["tenant"] for t in card["tickets"]} == {None}
    home = body(before.call("list_tickets", path="/tickets", params={"status": "all", "tenant": "home"}))
    assert card["tickets"] == home["tickets"]
    assert {r["correlation_id"] for r in before.simulator.records()} >= {f"m365sec:{CONTROL}"}


def test_the_old_snapshot_is_served_and_the_overview_is_one_tenant(before):
    listed = body(before.call("recommendations", path="/recommendations", params={"status": "all"}))
    assert len(listed["recommendations"]) == 20 and listed["secureScore"]["current"] is not None
    ticketed = {r["id"]: r["ticket"] for r in listed["recommendations"]}
    assert ticketed[CONTROL] is not None and ticketed[CONTROL]["number"] == "INC0010001"
    rows = body(before.call("list_tenants", path="/tenants"))["tenants"]
    assert len(rows) == 1 and rows[0]["home"] and rows[0]["state"] == "active" and rows[0]["openTickets"] >= 1


def test_an_old_claim_still_holds_no_duplicate_ticket(before):
    records = len(before.simulator.records())
    again = before.call(
        "create_ticket", "POST", "/tickets", body=json.dumps({"recommendation": {"id": CONTROL}}).encode()
    )
    assert again.status_code == 200, again.get_body()
    assert body(again)["number"] == "INC0010001"
    assert len(before.simulator.records()) == records


def test_the_old_connection_refreshes_and_the_runs_go_on(before):
    before.clock.advance(hours=2)  # the stored access token has expired: the stored refresh token renews it
    sync = before.call("provisioning", path="/provisioning", params={"live": "true"})
    assert body(sync)["state"] == "connected", body(sync)
    refreshed = before.call("refresh_recommendations", "POST", "/recommendations/refresh")
    assert refreshed.status_code == 200 and body(refreshed)["status"] == "ok", body(refreshed)
    assert "tenants" not in body(refreshed)  # one tenant: the result is as before
    before.graph.complete(CONTROL)
    assert body(before.call("refresh_recommendations", "POST", "/recommendations/refresh"))["resolved"] == 1
    record = next(r for r in before.simulator.records() if r["correlation_id"] == f"m365sec:{CONTROL}")
    assert record["state"] == "6"
    notes = before.graph.tenant(HOME.id).state_of(CONTROL)
    assert "INC0010001" in str(notes.get("comment"))


def test_the_old_connection_is_the_default_connection_with_no_step(before):
    listed = body(before.call("list_connections", path="/connections"))["connections"]
    assert [(c["id"], c["state"], c["connectedAs"]) for c in listed] == [("default", "connected", "m365.integration")]
    card = body(before.call("list_tickets", path="/tickets", params={"status": "all"}))
    assert {t["connection"] for t in card["tickets"]} == {"default"}
    assert all(t["url"] is None or t["url"].startswith("https://contoso.service-now.com/") for t in card["tickets"])
    status = body(before.call("provisioning", path="/provisioning"))
    assert status["connection"] == "default" and status["instance"] == "https://contoso.service-now.com"
    assert not [c for c in status["checks"] if c["name"] == "servicenow_connection"]


def test_an_old_done_ticket_gets_servicenows_resolution_time_from_the_sync(before):
    """A ticket closed under the old code has no `resolvedAt` (docs/status-sync.md#older-resolution-times): the
    status sync asks ServiceNow once and a review can count it; in Table Storage too, on entities as written then."""
    store = before.services.store
    ticket, etag = next((t, e) for t, e in store.list_tickets() if t.recommendation_id == CONTROL)
    record = before.simulator.tables["incident"][str(ticket.sys_id)]
    record.update(state="7", closed_at="2026-11-27 09:00:00")  # closed then, as the old sync stored it
    store.update_ticket(replace(ticket, status="closed", servicenow_state="7"), etag)
    before.clock.advance(hours=2)
    assert sync_every_connection(before.services)[0].backfilled == 1
    shown = body(before.call("get_ticket", path=f"/tickets/{ticket.id}", route_params={"id": ticket.id}))
    assert (shown["status"], shown["resolvedAt"]) == ("closed", "2026-11-27T09:00:00+00:00")
