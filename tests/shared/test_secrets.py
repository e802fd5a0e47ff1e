"""FileSecretStore on disk, and KeyVaultSecretStore through the real SDK against the HTTPS Key Vault fake."""

from __future__ import annotations

import json
import os
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from shared.secrets import CLIENT_SECRET, TOKEN_BUNDLE, FileSecretStore, KeyVaultSecretStore
from tests.fakes.keyvault import FakeKeyVault


def test_file_store_round_trip_and_delete(tmp_path):
    store = FileSecretStore(tmp_path / "secrets.json")
    assert store.get("a") is None
    store.set("a", "1")
    store.set("b", "2")
    assert (store.get("a"), store.get("b")) == ("1", "2")
    store.delete("a")
    assert store.get("a") is None and store.get("b") == "2"


def test_file_store_is_private_to_its_owner(tmp_path):
    store = FileSecretStore(tmp_path / "secrets.json")
    store.set("a", "1")
    assert stat.S_IMODE(os.stat(tmp_path / "secrets.json").st_mode) == 0o600


def test_file_store_replaces_atomically_under_concurrent_writers(tmp_path):
    store = FileSecretStore(tmp_path / "secrets.json")
    threads = [threading.Thread(target=store.set, args=(f"k{i}", "v" * 1000)) for i in range(40)]
    readers_saw_garbage: list[str] = []

    def read() -> None:
        for _ in range(200):
            try:
                json.loads((tmp_path / "secrets.json").read_text())
            except FileNotFoundError:
                pass
            except ValueError as exc:
                readers_saw_garbage.append(str(exc))

    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.join()
    assert readers_saw_garbage == []
    assert len(json.loads((tmp_path / "secrets.json").read_text())) == 40
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    ca_path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return server_context, ca_path


@pytest.fixture
def vault(tls: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKeyVault]:
    fake = FakeKeyVault(tls[0]).start()
    # DefaultAzureCredential finds the App Service managed identity the way it does in Azure.
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", fake.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", fake.state.identity_header)
    yield fake
    fake.stop()


def _key_vault_store(vault: FakeKeyVault, ca_path: Path) -> KeyVaultSecretStore:
    # The fake lives on localhost, not *.vault.azure.net, so the challenge's resource cannot match the host.
    return KeyVaultSecretStore(vault.url, verify_challenge_resource=False, connection_verify=str(ca_path))


def test_key_vault_store_answers_the_bearer_challenge_and_round_trips(vault, tls):
    store = _key_vault_store(vault, tls[1])
    assert store.get(TOKEN_BUNDLE) is None
    store.set(TOKEN_BUNDLE, '{"access_token": "a"}')
    store.set(TOKEN_BUNDLE, '{"access_token": "b"}')
    assert store.get(TOKEN_BUNDLE) == '{"access_token": "b"}'
    assert len(vault.state.secrets[TOKEN_BUNDLE]) == 2  # each write is a new version, never a delete
    assert vault.state.requests[0][2] is False  # the SDK's first request is the unauthenticated challenge
    assert all(authorized for _, _, authorized in vault.state.requests[1:])
    assert vault.state.token_requests == 1  # the credential's token is cached


def test_key_vault_delete_leaves_the_name_reusable(vault, tls):
    store = _key_vault_store(vault, tls[1])
    store.set(TOKEN_BUNDLE, "{}")
    store.delete(TOKEN_BUNDLE)
    assert store.get(TOKEN_BUNDLE) is None
    assert not any(method == "DELETE" for method, _, _ in vault.state.requests)
    store.set(TOKEN_BUNDLE, '{"x": 1}')
    assert store.get(TOKEN_BUNDLE) == '{"x": 1}'


def test_the_connection_flow_keeps_its_secrets_in_key_vault(vault, tls, harness, tmp_path):
    from shared import services as services_module
    from shared.services import Services
    from shared.store import SqliteTicketStore

    store = _key_vault_store(vault, tls[1])
    store.set(CLIENT_SECRET, harness.simulator.clients[next(iter(harness.simulator.clients))].client_secret)
    settings = harness.services.settings
    services_module.install(
        Services(
            type(settings)(**{**settings.__dict__, "client_secret": None}),
            transport=harness.transport,
            secrets=store,
            store=SqliteTicketStore(tmp_path / "kv-store.db"),
            clock=harness.clock,
        )
    )
    page = harness.connect()
    assert page.status_code == 200, page.get_body()
    bundle = json.loads(store.get(TOKEN_BUNDLE) or "{}")
    assert bundle["connected_as"] == "m365.integration"


def test_a_vault_refusing_the_identity_is_a_clear_not_configured(vault, tls):
    """RBAC missing: the fake answers 403 Forbidden to an authenticated request, as Key Vault does."""
    from shared.problems import NotConfigured

    store = _key_vault_store(vault, tls[1])
    vault.state.forbidden = True
    with pytest.raises(NotConfigured) as raised:
        store.get(TOKEN_BUNDLE)
    assert "Key Vault Secrets Officer" in (raised.value.remediation or "")
