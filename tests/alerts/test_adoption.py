"""The status sync and alert records (docs/alerts.md#tickets): a record naming another tenant's alert is refused as
any record naming a tenant the connector does not read; the connector's own alert record, found after a lost store
on the instance a category route sends alerts to, is adopted there."""

from __future__ import annotations

from typing import Any

from dev.entra.tenants import NORTHWIND
from shared.tickets import correlation_id, parse_correlation, tenant_tag
from status_sync.every import sync_every_connection
from tests.isolation_support import SECOND_ID, plant
from tests.routes_support import saved
from tests.secure_score.test_tenants import added, entra, msp, use  # noqa: F401  (fixtures)
from tests.status_sync.test_isolation_adoption import _failed, msp_two, second  # noqa: F401  (fixtures)


def test_an_alert_s_correlation_id_names_its_tenant_and_only_the_minted_tag_counts():
    assert parse_correlation("m365sec:alert/low") == ("", "alert/low")
    assert parse_correlation(f"m365sec:{tenant_tag(NORTHWIND.id)}/alert/low") == (NORTHWIND.id, "alert/low")
    assert parse_correlation("m365sec:alert/a/b") is None and parse_correlation("m365sec:alerts/low") is None
    assert parse_correlation("m365sec:alert/" + "x" * 59) is None


def test_a_record_naming_a_tenant_s_alert_is_refused_unless_the_tenant_is_read(connected):
    planted = plant(connected.simulator, correlation_id("alert/low", NORTHWIND.id))
    sync_every_connection(connected.services)
    tracked = {t.sys_id for t, _ in connected.services.store.list_tickets()}
    assert planted["sys_id"] not in tracked
    failed = _failed(connected, "default")
    assert f"{planted['number']} was not adopted" in failed and f"names the tenant {NORTHWIND.id}" in failed


def test_the_connector_s_own_alert_record_is_adopted_on_the_instance_its_category_route_sends_it_to(
    msp_two: Any,  # noqa: F811
    second: Any,  # noqa: F811
) -> None:
    saved(msp_two, [{"name": "Alerts", "match": {"categories": ["Infrastructure"]}, "set": {"connection": SECOND_ID}}])
    mine = plant(second, correlation_id("alert/low"))
    sync_every_connection(msp_two.services)
    adopted = [t for t, _ in msp_two.services.store.list_tickets() if t.sys_id == mine["sys_id"]]
    assert [(t.recommendation_id, t.connection) for t in adopted] == [("alert/low", SECOND_ID)]
