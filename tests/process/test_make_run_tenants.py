"""`make run` for issues 20 and 21, as a process: it prints how to add the two simulated customer tenants and
serves their consent (the Entra ID simulator over TLS, its CA in the data folder, the reader app registered with
the connector's consent redirect), and it starts a second simulated ServiceNow instance whose printed client works;
both keep their state across a restart, and `make reset` removes it."""

from __future__ import annotations

import json
import re
import ssl
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from dev.entra import FABRIKAM, NORTHWIND, READER_APP_ID
from dev.entra.tenants import TAILSPIN
from tests.entra_support import press
from tests.process.test_local_host import press_allow
from tests.process.test_make_run import NAMES, READ, STARTED, MakeRun, reset


def _ports(run: MakeRun) -> dict[str, int]:
    return dict(zip(NAMES, run.ports, strict=True))


def _second_instance(banner: str) -> dict[str, str]:
    """The connection the banner says to add: `curl ... /api/connections ... -d '{...}'`."""
    found = re.search(r"/api/connections -H 'Content-Type: application/json' -d '(\{[^']*\})'", banner)
    assert found, banner
    return dict(json.loads(found[1]))


def _servicenow_token(instance: str, client_id: str, secret: str, redirect: str) -> str:
    """What the connector does with the printed client: the consent (Allow) and the code exchange."""
    with httpx.Client(base_url=instance, timeout=10) as browser:
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "state": "s"}
        page = browser.get("/oauth_auth.do", params=params)
        assert page.status_code == 200 and 'id="allow"' in page.text, page.text
        allowed = browser.post("/oauth_auth.do", data={**params, "action": "allow"})
        code = parse_qs(urlsplit(allowed.headers["location"]).query)["code"][0]
        grant = browser.post("/oauth_token.do", data={"grant_type": "authorization_code", "code": code,
                                                      "redirect_uri": redirect, "client_id": client_id,
                                                      "client_secret": secret})  # fmt: skip
    assert grant.status_code == 200, grant.text
    return str(grant.json()["access_token"])


def test_make_run_serves_two_simulated_tenants_and_a_second_instance_and_keeps_them(tmp_path: Path):
    data = tmp_path / "local"
    run = MakeRun(data)
    ports = _ports(run)
    entra_url, graph_url = (
        f"https://127.0.0.1:{ports['ENTRA_SIMULATOR_PORT']}",
        f"http://127.0.0.1:{ports['GRAPH_SIMULATOR_PORT']}",
    )
    try:
        banner = run.wait_for(STARTED)
        assert f"the Entra ID simulator at {entra_url}" in banner, banner
        assert f"{FABRIKAM.name} ({FABRIKAM.domain}), {NORTHWIND.name} ({NORTHWIND.domain})" in banner
        assert "Add a tenant" in banner and "consentUrl" in banner
        assert (f"curl -X POST {run.url}/api/tenants -H 'Content-Type: application/json' -d "
                f"""'{{"tenant": "{FABRIKAM.domain}", "name": "{FABRIKAM.name}"}}'""") in banner  # fmt: skip
        ca = data / "entra-simulator-ca.pem"
        assert str(ca) in banner
        trusted = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=trusted, timeout=10) as browser:
            found = browser.get(f"{entra_url}/{FABRIKAM.domain}/v2.0/.well-known/openid-configuration").json()
            assert found["issuer"] == f"{entra_url}/{FABRIKAM.id}/v2.0"
            # The link the connector builds with the settings make run gave it: the reader app, Graph (the
            # simulator), the connector's own consent redirect (APP_URL).
            link = f"{entra_url}/{FABRIKAM.id}/v2.0/adminconsent?" + urlencode({
                "client_id": READER_APP_ID, "scope": f"{graph_url}/.default",
                "redirect_uri": f"{run.url}/api/tenants/consent", "state": "st"})  # fmt: skip
            accepted = press(browser, link)
        assert accepted.headers["location"].startswith(f"{run.url}/api/tenants/consent?admin_consent=True&tenant="
                                                       f"{FABRIKAM.id}&")  # fmt: skip
        assert "Northwind Traders" in httpx.get(f"{graph_url}/sim", timeout=10).text  # the Graph side knows them

        second = _second_instance(banner)
        assert second["instance"] == f"http://127.0.0.1:{ports['SECOND_SIMULATOR_PORT']}" and second["id"] == "second"
        token = _servicenow_token(
            second["instance"], second["clientId"], second["clientSecret"], f"{run.url}/api/oauth/callback"
        )  # the one callback serves every connection
        groups = httpx.get(f"{second['instance']}/api/now/table/sys_user_group", params={"sysparm_query":
                           "name=Service Desk"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
        assert len(groups.json()["result"]) == 2
    finally:
        run.stop()
    assert "Traceback" not in run.text
    for name in ("entra-simulator.json", "servicenow-simulator-2.json"):
        assert (data / name).stat().st_mode & 0o077 == 0, name  # consent records, client secrets and tokens

    again = MakeRun(data, run.ports)
    try:
        banner = again.wait_for(STARTED)
        assert f"Consented already (kept in {data / 'entra-simulator.json'}): Fabrikam." in banner, banner
        assert _second_instance(banner) == second  # the same client secret: stored tokens stay valid
    finally:
        again.stop()

    cleared = reset(data)
    assert cleared.exit_code() == 0, cleared.text
    left = {p.name for p in data.iterdir()}
    assert not {"entra-simulator.json", "entra-simulator-ca.pem", "entra-simulator-ca-bundle.pem",
                "servicenow-simulator-2.json"} & left, left  # fmt: skip


def test_make_run_shows_a_consent_confirming_then_active_and_refuses_a_tenant_of_another_cloud(tmp_path: Path):
    """Issue 27: `make run`'s Entra ID simulator applies a consent to tokens after a delay (20 s by default; 3 s here),
    so a newcomer sees the tenant confirming, then active; Tailspin Toys, in Azure Government, is refused by name."""
    data = tmp_path / "local"
    run = MakeRun(data, env={"ENTRA_SIMULATOR_CONSENT_DELAY": "3"})
    try:
        banner = run.wait_for(STARTED)
        assert "confirming for about 3 s" in banner and f"{TAILSPIN.name} ({TAILSPIN.domain})" in banner, banner
        run.wait_for(READ)
        trusted = ssl.create_default_context(cafile=str(data / "entra-simulator-ca.pem"))
        with httpx.Client(timeout=30) as browser, httpx.Client(verify=trusted, timeout=10) as customer:
            assert press_allow(browser, run.url).status_code == 200  # signed in (emulated), connected
            other = browser.post(f"{run.url}/api/tenants", json={"tenant": TAILSPIN.domain})
            assert other.status_code == 400 and "Azure Government" in other.json()["errors"][0]["message"]
            added = browser.post(f"{run.url}/api/tenants", json={"tenant": FABRIKAM.domain, "name": FABRIKAM.name})
            assert added.status_code == 201, added.text
            back = press(customer, added.json()["consentUrl"]).headers["location"]
            page = browser.get(back)
            assert page.status_code == 202 and "Consent received" in page.text, page.text
            row = next(t for t in browser.get(f"{run.url}/api/tenants").json()["tenants"] if t["id"] == FABRIKAM.id)
            assert row["state"] == "confirming" and row["confirming"]["nextAttemptAt"]
            time.sleep(3.5)  # the simulated Entra ID applies the consent meanwhile
            assert browser.post(f"{run.url}/api/recommendations/refresh").status_code == 200
            row = next(t for t in browser.get(f"{run.url}/api/tenants").json()["tenants"] if t["id"] == FABRIKAM.id)
            assert row["state"] == "active" and row["score"]["current"] is not None
    finally:
        run.stop()
    assert "Traceback" not in run.text
