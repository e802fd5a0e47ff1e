"""The ServiceNow simulator driven by ServiceNow's own Python client (pysnc, a test dependency only).

pysnc is what ServiceNow ships for Python: it insists on https, asks for `sysparm_display_value=all`, pages with
`sysparm_offset`, and reads every answer as a real instance sends it. Driving the simulator with it, over TLS with
the project's own test certificates, keeps the simulator answering the way pysnc (and so a real instance) expects."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import trustme
from pysnc import ServiceNowClient

from dev.servicenow import ADMIN_SYS_ID, ServiceNowSimulator, serve
from tests.conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServiceNowSimulator, str, Path]]:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these override the client's own CA file
        monkeypatch.delenv(name, raising=False)
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    simulator = ServiceNowSimulator()
    simulator.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    simulator.auto_approve = True
    simulator.signed_in_user = ADMIN_SYS_ID
    server, url = serve(simulator, tls=context)
    try:
        yield simulator, url, ca_file
    finally:
        server.shutdown()
        server.server_close()


def _token(url: str, ca_file: Path) -> str:
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(ca_file))) as http:
        consent = http.get("/oauth_auth.do", params={"response_type": "code", "client_id": CLIENT_ID,
                                                     "redirect_uri": REDIRECT_URI, "state": "s"})  # fmt: skip
        code = httpx.URL(consent.headers["Location"]).params["code"]
        grant = http.post("/oauth_token.do", data={"grant_type": "authorization_code", "code": code,
                                                   "redirect_uri": REDIRECT_URI, "client_id": CLIENT_ID,
                                                   "client_secret": CLIENT_SECRET})  # fmt: skip
    return str(grant.json()["access_token"])


def test_pysnc_inserts_queries_pages_updates_and_deletes(instance):
    simulator, url, ca_file = instance
    client = ServiceNowClient(url, _Bearer(_token(url, ca_file)), verify=str(ca_file))
    new = client.GlideRecord("incident")
    new.initialize()
    new.short_description = "From pysnc"
    new.correlation_id = "m365sec:PysncCheck"
    new.impact = "1"
    new.urgency = "2"
    new.assigned_to = ADMIN_SYS_ID
    sys_id = new.insert()
    assert sys_id and simulator.tables["incident"][str(sys_id)]["priority"] == "2"
    for i in range(7):
        more = client.GlideRecord("incident")
        more.initialize()
        more.short_description = f"Batch {i}"
        more.correlation_id = f"m365sec:Batch{i}"
        more.insert()

    found = client.GlideRecord("incident", batch_size=3)  # pages of three: sysparm_offset paging
    found.add_query("correlation_id", "STARTSWITH", "m365sec:")
    found.query()
    assert len(found) == 8
    seen = [record.get_value("correlation_id") for record in found]
    assert len(seen) == 8 and "m365sec:PysncCheck" in seen

    one = client.GlideRecord("incident")
    assert one.get(str(sys_id))
    assert one.get_value("state") == "1" and one.get_display_value("state") == "New"
    assert one.get_display_value("priority") == "2 - High"
    assert one.get_value("assigned_to") == ADMIN_SYS_ID
    assert one.get_display_value("assigned_to") == "System Administrator"
    one.state = "2"
    one.update()
    assert simulator.tables["incident"][str(sys_id)]["state"] == "2"
    assert one.delete()
    assert str(sys_id) not in simulator.tables["incident"]


def test_pysnc_refuses_what_a_real_instance_refuses(instance):
    _, url, ca_file = instance
    client = ServiceNowClient(url, _Bearer("not-a-token"), verify=str(ca_file), auto_retry=False)
    records = client.GlideRecord("incident")
    with pytest.raises(Exception, match="User Not Authenticated"):  # pysnc's AuthenticationException
        records.query()
