"""A review on Table Storage (Azurite), as deployed: the days' review data and a ticket's resolution time survive the
Table store (which keeps no null property and splits long documents), and the review says the same as on SQLite."""

from __future__ import annotations

from typing import Any

import pytest

from dev.servicenow import SimulatorTransport
from shared import services as services_module
from shared.config import load_settings
from shared.retries import RetryPolicy
from shared.secrets import FileSecretStore
from shared.services import Services
from tests.conftest import Harness, settings_env
from tests.reviews.test_reviews import CONTROL, resolve, review, ticket
from tests.secure_score.test_tenants import refresh


def _on_tables(harness: Harness, connection: str) -> None:
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    service = TableServiceClient.from_connection_string(connection)
    for table in service.list_tables():
        service.delete_table(table.name)
    harness.services.close()
    services = Services(
        load_settings(settings_env()),
        transport=harness.transport,
        graph_transport=SimulatorTransport(harness.graph),
        store=TableTicketStore(service),
        secrets=FileSecretStore(harness.tmp / "secrets.json"),
        clock=harness.clock,
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_total=60.0),
        sleep=harness.sleeps,
    )
    services_module.install(services)
    harness.services = services


@pytest.fixture
def tables(connected: Harness, azurite: str) -> Harness:
    _on_tables(connected, azurite)
    return connected


def test_a_review_on_table_storage_keeps_the_days_and_the_resolution(tables):
    assert refresh(tables)[0] == 200
    tables.graph.regress(next(c for c, s in tables.graph.scores.items() if s >= tables.graph.profiles[c]["maxScore"]))
    assert refresh(tables)[0] == 200  # the second refresh reads today again, from the base the Table store kept
    made = ticket(tables, CONTROL, due="2026-01-01")
    resolve(tables, made)
    status, shown = review(tables, "home")
    assert status == 200, shown
    today = tables.clock().date().isoformat()
    assert len(shown["score"]) == 90 and shown["comparative"] and shown["actions"]["completed"]
    regressed: list[Any] = [a for a in shown["actions"]["regressed"] if a["date"] == today]
    assert len(regressed) == 1
    assert shown["tickets"] == {"opened": 1, "resolved": 1, "overdue": 0, "medianDaysToResolve": 0.0}
