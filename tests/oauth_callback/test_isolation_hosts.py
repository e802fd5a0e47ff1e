"""Issue 25, item 4: where the connector connects for a ServiceNow instance (shared/egress.py). A host made of numbers
is refused as an IP literal is; in Azure every address the instance's name resolves to must be public, when the
connection is added and on each new connection to it; an error never names the socket error. The name-to-address
step is handed in at the composition point (as a transport is), so a test can say what DNS answers; the connections
themselves are real sockets, over TLS to the simulator on loopback where one is made."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from dev.host.azurite import free_port
from dev.servicenow import ServiceNowSimulator, serve
from shared import services as services_module
from shared.config import load_settings
from shared.problems import NotConfigured, ServiceNowUnavailable
from shared.retries import RetryPolicy
from shared.secrets import FileSecretStore
from shared.services import Services
from shared.store import SqliteTicketStore
from tests.conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Clock, Harness, settings_env
from tests.oauth_callback.test_connections import add
from tests.shared.test_signin import principal

AZURE = {"WEBSITE_AUTH_ENABLED": "True", "WEBSITE_SITE_NAME": "func-connector"}
ADMIN = {"X-MS-CLIENT-PRINCIPAL": principal("admin@contoso.com", ("Connector.Admin",))}


class Dns:
    """What the name service answers, name by name (a name it does not know does not resolve), and who asked."""

    def __init__(self, **names: list[str]) -> None:
        self.names = {k.replace("_", "."): v for k, v in names.items()}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.names[host])


def _services(tmp: Path, clock: Clock, dns: Dns, **env: str) -> Services:
    return Services(load_settings(settings_env(**env)), store=SqliteTicketStore(tmp / "store.db"),
                    secrets=FileSecretStore(tmp / "secrets.json"), clock=clock, resolver=dns,
                    retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, max_total=2.0))  # fmt: skip


def body(response: Any) -> Any:
    return json.loads(response.get_body())


@pytest.mark.parametrize("instance", ["https://127.1:7598", "https://0x7f.1", "https://10.5", "https://169.254.43518",
                                      "https://0177.0.0.1", "https://2130706433.example.0x1"])  # fmt: skip
def test_a_host_made_of_numbers_is_refused_as_an_ip_literal(connected, instance):
    response = add(connected, instance=instance)
    assert response.status_code == 400, response.get_body()
    (error,) = body(response)["errors"]
    assert error["field"] == "instance" and "made of numbers" in error["message"]
    assert connected.services.secrets.get("servicenow-client-secret-fabrikam") is None


@pytest.fixture
def azure(harness: Harness) -> Iterator[tuple[Harness, Dns]]:
    """The app as in Azure (App Service Authentication's principal), with a name service the test controls."""
    dns = Dns(public_example_com=["20.50.2.10", "2603:1020::10"], inward_example_com=["20.50.2.11", "10.0.0.7"],
              meta_example_com=["169.254.169.254"], mapped_example_com=["::ffff:127.0.0.1"],
              shared_example_com=["100.64.0.9"], local_example_com=["fd00::7"])  # fmt: skip
    services_module.install(_services(harness.tmp, harness.clock, dns, **AZURE))
    harness.services = services_module.get_services()
    yield harness, dns


@pytest.mark.parametrize("host", ["inward.example.com", "meta.example.com", "mapped.example.com",
                                  "shared.example.com", "local.example.com", "nowhere.example.com"])  # fmt: skip
def test_in_azure_an_instance_whose_name_resolves_inward_is_refused_when_added(azure, host):
    harness, dns = azure
    payload = {"id": "x", "instance": f"https://{host}", "clientId": "c", "clientSecret": "s"}
    response = harness.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode(), headers=ADMIN)
    assert response.status_code == 400, response.get_body()
    (error,) = body(response)["errors"]
    assert error["field"] == "instance" and host in error["message"]
    assert host in dns.asked
    assert harness.services.secrets.get("servicenow-client-secret-x") is None


def test_in_azure_a_name_that_resolves_inward_later_is_refused_on_the_next_connection(azure):
    harness, dns = azure
    payload = {"id": "x", "instance": "https://public.example.com", "clientId": "c", "clientSecret": "s"}
    response = harness.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode(), headers=ADMIN)
    assert response.status_code == 201, response.get_body()
    dns.names["public.example.com"] = ["127.0.0.1"]  # the name now points inward (a wildcard DNS service, a takeover)
    scoped = harness.services.for_connection(harness.services.connection_named("x"))
    with pytest.raises(NotConfigured) as refused:
        scoped.servicenow.revoke("a-token")  # the first request to it opens a connection: checked then
    assert "not public" in refused.value.detail and "Errno" not in refused.value.detail
    assert dns.asked.count("public.example.com") == 2  # once when added, once for this connection


@pytest.fixture
def tls_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServiceNowSimulator, int]]:
    """The simulator over TLS on loopback, its certificate for `instance.example.com` (a CA this process trusts)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("instance.example.com").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # httpx's default context reads it
    simulator = ServiceNowSimulator()
    simulator.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    server, url = serve(simulator, tls=context)
    port = int(url.rsplit(":", 1)[1])
    simulator.bind(f"https://instance.example.com:{port}")
    try:
        yield simulator, port
    finally:
        server.shutdown()
        server.server_close()


def test_each_connection_goes_to_the_address_resolved_and_checked_and_tls_checks_the_name(tmp_path, clock,
                                                                                           tls_instance):  # fmt: skip
    simulator, port = tls_instance
    dns = Dns(instance_example_com=["127.0.0.1"])
    local = _services(tmp_path, clock, dns, SERVICENOW_INSTANCE=f"https://instance.example.com:{port}")
    try:
        local.servicenow.revoke("a-token")  # locally loopback is allowed (the simulators live there)
        assert dns.asked == ["instance.example.com"] and simulator.requests[-1].path == "/oauth_revoke_token.do"
    finally:
        local.close()
    (tmp_path / "azure").mkdir()
    azure = _services(tmp_path / "azure", clock, dns, SERVICENOW_INSTANCE=f"https://instance.example.com:{port}",
                      **AZURE)  # fmt: skip
    try:
        with pytest.raises(NotConfigured, match="not public"):
            azure.servicenow.revoke("a-token")
    finally:
        azure.close()
    assert len(simulator.requests) == 1  # nothing reached the instance from "Azure"
    (tmp_path / "spoofed").mkdir()
    spoofed = _services(tmp_path / "spoofed", clock, Dns(other_example_com=["127.0.0.1"]),
                        SERVICENOW_INSTANCE=f"https://other.example.com:{port}")  # fmt: skip
    try:
        with pytest.raises(ServiceNowUnavailable):  # the certificate names another host: TLS refuses it
            spoofed.servicenow.revoke("a-token")
    finally:
        spoofed.close()


def test_an_instance_that_cannot_be_reached_is_said_without_the_socket_error(tmp_path, clock):
    dns = Dns(closed_example_com=["127.0.0.1"])
    port = free_port()  # nothing listens there: the connection is refused at once
    services = _services(tmp_path, clock, dns, SERVICENOW_INSTANCE=f"https://closed.example.com:{port}")
    try:
        with pytest.raises(ServiceNowUnavailable) as failed:
            services.servicenow.revoke("a-token")
    finally:
        services.close()
    detail = failed.value.detail
    assert "could not be reached" in detail
    for leak in ("ConnectError", "Errno", "refused", "ConnectionRefused", str(port) + ")"):
        assert leak not in detail, detail
