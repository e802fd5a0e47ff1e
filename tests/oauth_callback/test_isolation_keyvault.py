"""Issue 25, item 8: removing a connection erases its secrets as Key Vault really deletes them (every version goes,
soft-deleted, then purged where the vault allows), and the answer says exactly what remains and until when. Through
the real azure-keyvault-secrets SDK and DefaultAzureCredential against the HTTPS Key Vault fake, whose delete, deleted
and purge answers follow the REST API (tests/fakes/keyvault.py cites them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from dev.servicenow import ServiceNowSimulator
from shared import services as services_module
from shared.secrets import CLIENT_SECRET, TOKEN_BUNDLE, WEBHOOK_SECRET, KeyVaultSecretStore
from shared.services import Services
from tests.conftest import ROOT, Harness
from tests.fakes.keyvault import FakeKeyVault
from tests.isolation_support import Instances, second_simulator
from tests.oauth_callback.test_connections import connect
from tests.shared.test_secrets import _key_vault_store, tls, vault  # noqa: F401  (fixtures)

NAMES = [f"{CLIENT_SECRET}-second", f"{TOKEN_BUNDLE}-second", f"{WEBHOOK_SECRET}-second"]


def body(response: Any) -> Any:
    return json.loads(response.get_body())


def test_erase_deletes_every_version_and_purges_where_the_vault_allows(vault, tls):  # noqa: F811
    store = _key_vault_store(vault, tls[1])
    store.set("servicenow-token-x", '{"access_token": "old"}')
    store.set("servicenow-token-x", '{"access_token": "new"}')
    erased = store.erase("servicenow-token-x")
    assert (erased.state, erased.until, erased.why) == ("purged", None, None)
    assert "servicenow-token-x" not in vault.state.secrets and vault.state.deleted == {}  # no version left anywhere
    assert ("DELETE", "/deletedsecrets/servicenow-token-x", True) in vault.state.requests
    assert store.get("servicenow-token-x") is None
    assert store.erase("servicenow-token-x").state == "absent"
    store.set("servicenow-token-x", "{}")  # purged: the name is free again


def test_with_purge_protection_a_deleted_secret_stays_recoverable_until_its_scheduled_purge(vault, tls):  # noqa: F811
    vault.state.purge_protection = True
    store = _key_vault_store(vault, tls[1])
    store.set("servicenow-client-secret-x", "first")
    store.set("servicenow-client-secret-x", "second")
    erased = store.erase("servicenow-client-secret-x")
    assert erased.state == "deleted" and "purge protection" in str(erased.why)
    assert erased.until is not None and abs(erased.until - (datetime.now(UTC) + timedelta(days=90))) < timedelta(
        minutes=5)  # fmt: skip
    held = vault.state.deleted["servicenow-client-secret-x"]
    assert [v["value"] for v in held["versions"]] == ["first", "second"]  # recoverable, every version, not readable
    assert store.get("servicenow-client-secret-x") is None
    with pytest.raises(HttpResponseError) as refused:  # the name stays reserved: why an id added again is renamed
        store.set("servicenow-client-secret-x", "third")
    assert refused.value.status_code == 409
    assert store.erase("servicenow-client-secret-x").state == "deleted"  # a removal done again says the same


def test_erase_waits_for_a_deletion_still_under_way_before_purging(vault, tls):  # noqa: F811
    vault.state.deleting_polls = 1  # the deleted secret shows after one poll (azure-keyvault-secrets waits 2 s)
    store = _key_vault_store(vault, tls[1])
    store.set("servicenow-webhook-secret-x", "a2V5")
    assert store.erase("servicenow-webhook-secret-x").state == "purged"


def _in_key_vault(connected: Harness, vault: FakeKeyVault, tls: Any, second: ServiceNowSimulator) -> Harness:  # noqa: F811
    """The connected app keeping its secrets in Key Vault, on a network with `second` too."""
    transport = Instances(connected.simulator, second)
    store: KeyVaultSecretStore = _key_vault_store(vault, tls[1])
    old = connected.services
    services_module.install(Services(old.settings, transport=transport, store=old.store, secrets=store,
                                     clock=connected.clock, retry=old._retry, sleep=connected.sleeps))  # fmt: skip
    connected.services = services_module.get_services()
    connected.transport = transport  # type: ignore[assignment]
    return connected


def _add(harness: Harness, second: ServiceNowSimulator) -> Any:
    """POST /api/connections: `second` as the connection `second`."""
    client = next(iter(second.clients))
    payload = {"id": "second", "instance": second.instance_url, "clientId": client,
               "clientSecret": second.clients[client].client_secret}  # fmt: skip
    return harness.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode())


@pytest.fixture
def kv_world(connected: Harness, vault: FakeKeyVault, tls: Any, clock: Any) -> Any:  # noqa: F811
    """The connected app keeping its secrets in Key Vault, with a second instance added and connected."""
    second = second_simulator(clock)
    assert _add(_in_key_vault(connected, vault, tls, second), second).status_code == 201
    assert connect(connected, "second").status_code == 200
    assert all(vault.state.secrets.get(n) for n in NAMES)
    return connected


def _remove(harness: Harness) -> Any:
    return harness.call("remove_connection", "DELETE", "/connections/second", route_params={"id": "second"})


def test_removing_a_connection_purges_its_secrets_and_says_nothing_remains(kv_world, vault):  # noqa: F811
    removed = _remove(kv_world)
    assert removed.status_code == 200, removed.get_body()
    answer = body(removed)
    assert {s["name"]: s["state"] for s in answer["secrets"]} == dict.fromkeys(NAMES, "purged")
    assert "every version of its secrets is gone" in answer["remains"]
    assert not any(n in vault.state.secrets or n in vault.state.deleted for n in NAMES)


def test_in_a_vault_with_purge_protection_the_answer_says_what_remains_and_until_when(kv_world, vault, tls):  # noqa: F811
    vault.state.purge_protection = True
    removed = _remove(kv_world)
    assert removed.status_code == 200, removed.get_body()
    answer = body(removed)
    assert {s["name"]: s["state"] for s in answer["secrets"]} == dict.fromkeys(NAMES, "deleted")
    expected = datetime.now(UTC) + timedelta(days=90)  # each secret's own deletion time, seconds apart under load
    until = [datetime.fromisoformat(s["recoverableUntil"].replace("Z", "+00:00")) for s in answer["secrets"]]
    assert all(abs(u - expected) < timedelta(minutes=1) for u in until), until
    remains = answer["remains"]
    assert "recoverable until" in remains and "purge protection" in remains and "every earlier version" in remains
    assert all(vault.state.secrets.get(n) is None for n in NAMES)  # nothing readable: only recoverable
    # The same id added again is a new connection: new secret names, since Key Vault keeps the old ones reserved.
    second = kv_world.transport.by_host["second.service-now.com"].simulator
    payload = {"id": "second", "instance": second.instance_url, "clientId": next(iter(second.clients)),
               "clientSecret": "a-new-secret"}  # fmt: skip
    again = kv_world.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode())
    assert again.status_code == 201, again.get_body()
    new_names = [n for n in vault.state.secrets if n.startswith(f"{CLIENT_SECRET}-second-")]
    assert len(new_names) == 1 and len(new_names[0]) > len(NAMES[0]) + 32


def test_the_fake_names_what_it_follows():
    text = (ROOT / "tests" / "fakes" / "keyvault.py").read_text()
    for source in ("delete-secret", "purge-deleted-secret", "get-deleted-secret", "soft-delete-overview"):
        assert source in text


def test_an_add_whose_secret_the_vault_refuses_leaves_no_connection_and_its_id_free(connected, vault, tls, clock):  # noqa: F811
    """Key Vault refuses the new connection's secret (the identity lacks its role): the add says so, and the id it had
    taken is given back, so no half-made connection is listed and the same add goes through once the role is granted
    (mutation survivors of oauth_callback/connections.py add_connection 224-233)."""
    second = second_simulator(clock)
    harness = _in_key_vault(connected, vault, tls, second)
    vault.state.forbidden = True
    refused = _add(harness, second)
    assert (refused.status_code, body(refused)["code"]) == (503, "not_configured"), refused.get_body()
    vault.state.forbidden = False
    listed = body(harness.call("list_connections", path="/connections"))["connections"]
    assert [c["id"] for c in listed] == ["default"]
    assert _add(harness, second).status_code == 201
