"""An alert's ticket exactly once (docs/alerts.md#exactly-once): a refresh repeated, refreshes at once, a crash between
ServiceNow's commit and the store's write; and one tenant's alert never reaches another tenant's ticket
(docs/design.md#isolation-between-customers)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from alerts.api import after_refresh
from dev.entra.tenants import FABRIKAM
from dev.servicenow import SimulatorTransport
from shared import services as services_module
from shared.tickets import HOME, claim_key, tenant_tag
from tests.alerts.alerts_support import INCIDENTS, alert_records, episode, posts, refresh, saved
from tests.conftest import Harness, build_services, concurrently
from tests.secure_score.test_tenants import added, entra, msp  # noqa: F401  (fixtures)


def summary(harness: Harness, tenant: str = HOME) -> dict[str, Any]:
    found = harness.services.store.get_secure_score_summary(tenant)
    assert found is not None
    return found


@pytest.fixture
def crossed(connected: Harness) -> Harness:
    """Connected, read once, with an alert the home tenant is below now."""
    refresh(connected)
    saved(connected, [{"id": "low", "tenants": "all", "below": summary(connected)["secureScore"]["percent"] + 1}])
    connected.simulator.requests.clear()
    return connected


class Crash(BaseException):
    """The process dies: nothing in the connector catches this."""


class CrashAfterCommit(SimulatorTransport):
    """ServiceNow commits the record, then the connector's process dies before it reads the answer."""

    armed = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.armed and request.method == "POST" and request.url.path == INCIDENTS:
            self.armed = False
            raise Crash()
        return response


def test_a_crash_between_servicenow_s_commit_and_the_store_s_write_leaves_one_ticket(crossed):
    crashing = build_services(crossed.tmp, CrashAfterCommit(crossed.simulator), crossed.clock, crossed.sleeps,
                              crossed.graph)  # fmt: skip
    services_module.install(crashing)
    with pytest.raises(Crash):
        refresh(crossed)
    assert len(alert_records(crossed)) == 1 and episode(crossed, "low")["state"] == "opening"
    services_module.install(crossed.services)  # "the next process"
    crossed.clock.advance(minutes=10)  # the dead refresh's leases lapse, and the unanswered POST's in-doubt window
    refresh(crossed)
    (record,) = alert_records(crossed)
    assert posts(crossed) == 1
    state = episode(crossed, "low")
    ticket = crossed.services.store.get_ticket(state["ticket"])
    assert state["state"] == "open" and ticket is not None and ticket[0].sys_id == record["sys_id"]


class CrashAfterPatch(SimulatorTransport):
    """ServiceNow commits a PATCH, then the connector's process dies before it reads the answer."""

    armed = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.armed and request.method == "PATCH" and request.url.path.startswith(INCIDENTS):
            self.armed = False
            raise Crash()
        return response


def test_a_crash_after_the_resolve_is_finished_by_the_next_refresh(crossed):
    refresh(crossed)
    (record,) = alert_records(crossed)
    maximum = summary(crossed)["secureScore"]["max"]
    crossed.graph.home.set_score(maximum)
    crashing = build_services(crossed.tmp, CrashAfterPatch(crossed.simulator), crossed.clock, crossed.sleeps,
                              crossed.graph)  # fmt: skip
    services_module.install(crashing)
    with pytest.raises(Crash):
        refresh(crossed)
    assert episode(crossed, "low")["state"] == "resolving" and alert_records(crossed)[0]["state"] == "6"
    services_module.install(crossed.services)
    crossed.clock.advance(minutes=10)
    refresh(crossed)
    assert episode(crossed, "low")["state"] == "over" and [r["sys_id"] for r in alert_records(crossed)] == [
        record["sys_id"]
    ]
    ticket = crossed.services.store.get_ticket(episode(crossed, "low")["ticket"])
    assert ticket is not None and ticket[0].status == "resolved"


def test_refreshes_at_once_make_one_ticket(crossed):
    snapshot = summary(crossed)
    outcomes = concurrently(8, lambda _: after_refresh(crossed.services, HOME, snapshot))
    assert len(alert_records(crossed)) == 1 and posts(crossed) == 1
    assert sum(1 for o in outcomes if o.done.get("low") == "opened") >= 1
    assert episode(crossed, "low")["state"] == "open" and "lease" not in episode(crossed, "low")


def test_refreshes_at_once_write_one_note_and_one_resolve(crossed):
    refresh(crossed)
    (record,) = alert_records(crossed)
    snapshot = summary(crossed)
    score = snapshot["secureScore"]
    lower = {**snapshot, "secureScore": {**score, "current": score["current"] - 3, "percent": score["percent"] - 1}}
    crossed.simulator.requests.clear()
    concurrently(8, lambda _: after_refresh(crossed.services, HOME, lower))
    patches = [r for r in crossed.simulator.requests if r.method == "PATCH"]
    assert len(patches) == 1 and b"work_notes" in patches[0].body
    recovered = {**snapshot, "secureScore": {**score, "current": score["max"], "percent": 100.0}}
    crossed.simulator.requests.clear()
    concurrently(8, lambda _: after_refresh(crossed.services, HOME, recovered))
    patches = [r for r in crossed.simulator.requests if r.method == "PATCH"]
    assert len(patches) == 1 and record["sys_id"] in patches[0].path
    assert alert_records(crossed)[0]["state"] == "6" and episode(crossed, "low")["state"] == "over"


def test_whole_refreshes_at_once_make_one_ticket(crossed):
    answers = concurrently(4, lambda _: crossed.call("refresh_recommendations", "POST", "/recommendations/refresh"))
    assert [a.status_code for a in answers] == [200] * 4
    assert len(alert_records(crossed)) == 1 and posts(crossed) == 1
    assert episode(crossed, "low").get("error") is None


def test_a_repeated_refresh_makes_nothing_more(crossed):
    for _ in range(3):
        refresh(crossed)
    assert len(alert_records(crossed)) == 1 and posts(crossed) == 1


def test_one_tenant_s_alert_never_touches_another_tenant_s_ticket(msp, entra):  # noqa: F811
    added(msp, entra, FABRIKAM)
    refresh(msp)
    home_percent = summary(msp)["secureScore"]["percent"]
    fabrikam_percent = summary(msp, FABRIKAM.id)["secureScore"]["percent"]
    saved(msp, [{"id": "home-low", "tenants": ["home"], "below": home_percent + 1},
                {"id": "fab-low", "tenants": [FABRIKAM.id], "below": fabrikam_percent + 1}])  # fmt: skip
    refresh(msp)
    by_correlation = {r["correlation_id"]: r for r in alert_records(msp)}
    assert set(by_correlation) == {"m365sec:alert/home-low", f"m365sec:{tenant_tag(FABRIKAM.id)}/alert/fab-low"}
    home_ticket = msp.services.store.get_ticket(episode(msp, "home-low")["ticket"])
    fab_ticket = msp.services.store.get_ticket(episode(msp, "fab-low", FABRIKAM.id)["ticket"])
    assert home_ticket is not None and fab_ticket is not None
    assert (home_ticket[0].tenant, fab_ticket[0].tenant) == (HOME, FABRIKAM.id)
    assert episode(msp, "home-low", FABRIKAM.id) == {} and episode(msp, "fab-low") == {}
    # Fabrikam recovers: only its own ticket is resolved; the home tenant's stays open, unnoted
    maximum = summary(msp, FABRIKAM.id)["secureScore"]["max"]
    msp.graph.tenant(FABRIKAM.id).set_score(maximum)
    msp.simulator.requests.clear()
    refresh(msp)
    states = {r["correlation_id"]: r["state"] for r in alert_records(msp)}
    assert states == {"m365sec:alert/home-low": "1", f"m365sec:{tenant_tag(FABRIKAM.id)}/alert/fab-low": "6"}
    patched = [r.path.rsplit("/", 1)[-1] for r in msp.simulator.requests if r.method == "PATCH"]
    assert home_ticket[0].sys_id not in patched


def test_on_table_storage_an_alert_s_claim_keeps_one_open_ticket_per_episode(connected, azurite):
    """`alert/{id}` holds a '/', which a Table Storage RowKey may not: its claim is kept under another key
    (https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model)."""
    from azure.data.tables import TableServiceClient

    from shared.services import Services
    from shared.store.tables import TableTicketStore

    service = TableServiceClient.from_connection_string(azurite)
    for table in service.list_tables():
        service.delete_table(table.name)
    current = connected.services
    moved = Services(current.settings, transport=connected.transport,
                     graph_transport=SimulatorTransport(connected.graph), store=TableTicketStore(service),
                     secrets=current.secrets, clock=connected.clock, retry=current.servicenow.retry,
                     sleep=connected.sleeps)  # fmt: skip
    services_module.install(moved)
    connected.services = moved
    refresh(connected)
    percent = summary(connected)["secureScore"]["percent"]
    saved(connected, [{"id": "low", "tenants": "all", "below": percent + 1}])
    refresh(connected)
    refresh(connected)
    (first,) = alert_records(connected)
    assert moved.store.claim_holder(claim_key(HOME, "alert/low")) == episode(connected, "low")["ticket"]
    maximum = summary(connected)["secureScore"]["max"]
    connected.graph.home.set_score(maximum)
    refresh(connected)
    connected.graph.home.set_score(round(maximum * (percent - 1) / 100, 2))
    refresh(connected)
    assert len(alert_records(connected)) == 2 and posts(connected) == 2
    assert moved.store.claim_holder(claim_key(HOME, "alert/low")) == episode(connected, "low")["ticket"]
    assert next(r for r in alert_records(connected) if r["sys_id"] == first["sys_id"])["state"] == "6"
