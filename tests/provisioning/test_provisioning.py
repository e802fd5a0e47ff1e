"""GET /api/provisioning: states, and live failures mapped to the original connector's advice."""

from __future__ import annotations

import json
from typing import Any

from dev.servicenow import Fault
from tests.conftest import Harness, build_services


def _status(harness: Harness, live: bool = False) -> dict[str, Any]:
    response = harness.call("provisioning", params={"live": "true"} if live else None)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.get_body())
    return body


def _check(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in body["checks"] if c["name"] == name)


def test_not_configured_names_the_settings(harness, tmp_path):
    from shared import services as services_module

    services_module.install(
        build_services(tmp_path, harness.transport, harness.clock, harness.sleeps, SERVICENOW_CLIENT_ID="")
    )
    body = _status(harness)
    assert body["state"] == "not_configured"
    assert "SERVICENOW_CLIENT_ID" in _check(body, "settings")["detail"]


def test_not_connected_says_to_open_connect(harness):
    body = _status(harness, live=True)
    assert body["state"] == "not_connected"
    assert "/api/connect" in _check(body, "connection")["remediation"]
    assert harness.transport.sent == []


def test_connected_with_every_live_check_passing(connected):
    body = _status(connected, live=True)
    assert body["state"] == "connected", body
    assert body["connectedAs"] == "m365.integration"
    assert body["instance"] == "https://contoso.service-now.com"
    assert body["accessTokenExpiresAt"] and body["refreshTokenExpiresAt"] and body["connectedAt"]
    names = [c["name"] for c in body["checks"]]
    assert names == [
        "settings",
        "client_secret",
        "connection",
        "refresh_token_lifetime",
        "status_sync",
        "secure_score",
        "failed_items",
        "secure_score_notes",
        "token_valid",
        "servicenow_reachable",
        "table_readable",
        "table_writable",
    ]
    assert all(c["ok"] for c in body["checks"])
    groups = {c["name"]: c["group"] for c in body["checks"]}
    assert {n for n, g in groups.items() if g == "tenant"} == {"secure_score", "secure_score_notes"}


def test_the_writable_check_updates_a_connector_record_without_changing_it(connected):
    sim = connected.simulator
    sim.tables["incident"]["a" * 32] = {
        "sys_id": "a" * 32,
        "correlation_id": "m365sec:AdminMFAV2",
        "sys_updated_on": "2026-01-01 00:00:00",
        "sys_mod_count": "0",
    }
    body = _status(connected, live=True)
    assert _check(body, "table_writable")["ok"]
    assert sim.tables["incident"]["a" * 32]["sys_mod_count"] == "0"
    sim.deny["incident"] = {"update"}
    body = _status(connected, live=True)
    assert body["state"] == "degraded"
    writable = _check(body, "table_writable")
    assert not writable["ok"] and "ACL Exception Update Failed" in writable["detail"]
    assert "itil" in writable["remediation"]


def test_ip_access_control_403_says_to_allow_list_the_egress_ip(connected):
    connected.simulator.ip_denied = True
    body = _status(connected, live=True)
    assert body["state"] == "degraded"
    check = _check(body, "ip_access")
    assert not check["ok"]
    assert "IP Address Access Control" in check["remediation"] and "egressIp" in check["remediation"]


def test_ip_access_control_on_the_token_endpoint_too(connected):
    connected.clock.advance(minutes=31)
    connected.simulator.ip_denied = True
    body = _status(connected, live=True)
    assert body["state"] == "degraded"
    assert any("IP Address Access Control" in (c["remediation"] or "") for c in body["checks"])


def test_insufficient_rights_names_the_role_and_the_acl(connected):
    connected.simulator.deny["incident"] = {"read"}
    body = _status(connected, live=True)
    check = _check(body, "table_readable")
    assert not check["ok"]
    assert "Insufficient rights to query records" in check["detail"]
    assert "itil" in check["remediation"] and "Access Control (ACL)" in check["remediation"]


def test_a_cross_scope_refusal_names_the_table_setting(connected):
    connected.simulator.deny["incident"] = {"cross_scope"}
    check = _check(_status(connected, live=True), "table_readable")
    assert "cross-scope access policy" in check["detail"]
    assert "Accessible from" in check["remediation"] and "All application scopes" in check["remediation"]


def test_an_unknown_table_says_to_fix_the_setting(connected, tmp_path):
    from shared import services as services_module

    services_module.install(
        build_services(connected.tmp, connected.transport, connected.clock, connected.sleeps, SERVICENOW_TABLE="u_nope")
    )
    check = _check(_status(connected, live=True), "table_readable")
    assert "SERVICENOW_TABLE" in check["remediation"]


def test_an_unreachable_instance(connected):
    connected.simulator.inject(Fault("drop", times=100))
    body = _status(connected, live=True)
    check = _check(body, "servicenow_reachable")
    assert body["state"] == "degraded"
    assert not check["ok"] and "could not be reached" in check["detail"]
    assert "SERVICENOW_INSTANCE" in check["remediation"]


def test_a_refresh_token_within_fourteen_days_of_expiry_warns(connected):
    connected.clock.advance(days=87)
    body = _status(connected)
    check = _check(body, "refresh_token_lifetime")
    assert body["state"] == "degraded"
    assert not check["ok"] and "13 day(s)" in check["detail"]
    assert "/api/connect" in check["remediation"]
    connected.clock.advance(days=14)
    assert _status(connected)["state"] == "reauthorization_required"


def test_a_broken_key_vault_is_reported_not_a_500(harness, tmp_path):
    """A secret store that fails (here: Key Vault at an address nobody listens on) is a check, not a crash."""
    from shared import services as services_module
    from shared.config import load_settings
    from shared.secrets import KeyVaultSecretStore
    from shared.services import Services
    from shared.store import SqliteTicketStore
    from tests.conftest import settings_env

    class NoCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise PermissionError("no identity")

    vault = KeyVaultSecretStore("https://127.0.0.1:9", credential=NoCredential(), retry_total=0)
    services_module.install(
        Services(
            load_settings(settings_env(SERVICENOW_CLIENT_SECRET="")),
            transport=harness.transport,
            secrets=vault,
            store=SqliteTicketStore(tmp_path / "store.db"),
            clock=harness.clock,
        )
    )
    body = _status(harness)
    assert body["state"] == "not_configured"
    check = _check(body, "client_secret")
    assert not check["ok"] and "Key Vault" in check["detail"]


def test_a_hibernating_developer_instance_is_named(connected):
    connected.simulator.hibernating = True
    body = _status(connected, live=True)
    check = _check(body, "table_readable")
    assert body["state"] == "degraded" and not check["ok"]
    assert "hibernating developer instance" in check["remediation"]
