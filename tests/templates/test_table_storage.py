"""Templates on Azure Table Storage (Azurite): the templates document, one record document per (template, tenant)
listed by its prefix (names that are safe RowKeys), the lease, and a template's removal taking its records along."""

from __future__ import annotations

from typing import Any

from dev.servicenow import SimulatorTransport
from shared import services as services_module
from shared.services import Services
from tests.templates_support import DLP, apply, created, delete, patches, states, template


def test_templates_apply_once_and_keep_their_records_on_table_storage(connected, azurite):
    from azure.data.tables import TableServiceClient

    from shared.store.tables import TableTicketStore

    service = TableServiceClient.from_connection_string(azurite)
    for table in service.list_tables():
        service.delete_table(table.name)
    services = Services(connected.services.settings, transport=connected.transport,
                        graph_transport=SimulatorTransport(connected.graph), store=TableTicketStore(service),
                        secrets=connected.services.secrets, clock=connected.clock, sleep=connected.sleeps)  # fmt: skip
    services_module.install(services)
    connected.services = services
    saved = created(connected, template())
    second: list[dict[str, Any]] = []

    def apply_again(request: Any) -> None:
        if request.method == "PATCH" and not second:
            second.append(apply(connected, saved["id"]))

    connected.graph.while_in_flight = apply_again
    first = apply(connected, saved["id"])
    connected.graph.while_in_flight = None
    assert first["applied"] == 3 and [f["code"] for f in second[0]["failed"]] == ["apply_in_progress"]
    assert len(patches(connected)) == 3 and states(connected, DLP) == dict.fromkeys(DLP, "ThirdParty")
    found = services.store.list_documents(f"template-apply:{saved['id']}:")
    assert list(found) == [f"template-apply:{saved['id']}:home"]
    assert {r["status"] for r in found[f"template-apply:{saved['id']}:home"][0]["controls"].values()} == {"done"}
    assert delete(connected, saved["id"]).status_code == 204
    assert services.store.list_documents("template-apply:") == {}
