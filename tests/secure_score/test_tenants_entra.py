"""Consent, clouds and identities as Microsoft Entra ID answers (issue 27,
docs/design.md#consent-clouds-and-identities), over the same simulators as tests/secure_score/test_tenants.py: the
Entra ID simulator over TLS (a consent that reaches tokens only after a delay, a tenant of another cloud, discovery
that fails for a moment, a federated credential that stops matching, an admin who signs in with another
organisation's account, a deleted tenant) and the Graph simulator. No mocks: the consent page is pressed as a
browser presses it, the timer and the routes are called as the worker calls them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from dev.entra import FABRIKAM, HOME, NORTHWIND, READER_APP_ID
from dev.entra.tenants import TAILSPIN
from secure_score import tenants
from shared.graph_tokens import federated_audience
from tests.conftest import Harness
from tests.secure_score.test_tenants import accepted, add, added, body, consent, entra, msp, overview, refresh, use  # noqa: F401

TOKEN_PATH = "/oauth2/v2.0/token"
# docs/design.md#consent-clouds-and-identities: about 30 s, 1, 2, 4 and 8 minutes after the consent page's own try
RETRIES = (30, 60, 120, 240, 480)


def token_requests(entra: Any, tenant: str) -> int:  # noqa: F811
    """How many token requests for `tenant` reached Entra ID (one the SDK's cache answered never does)."""
    return sum(1 for r in entra.simulator.requests if r.path == f"/{tenant}{TOKEN_PATH}")


def tick(harness: Harness) -> None:
    """`tenant_confirmation` fires, as the Functions host fires it every 30 s."""
    harness.functions["tenant_confirmation"].get_user_function()(TimerRequest(past_due=False))


def link_of(harness: Harness, tenant: Any) -> str:
    response = add(harness, tenant.domain)
    assert response.status_code == 201, response.get_body()
    return str(body(response)["consentUrl"])


def checks(harness: Harness) -> dict[str, dict[str, Any]]:
    answer = body(harness.call("provisioning", path="/provisioning"))
    return {c["tenant"]: c for c in answer["checks"] if c["name"] == "tenant"}


@pytest.fixture
def delayed(msp: Harness, entra: Any) -> Harness:  # noqa: F811
    """Consent reaches Fabrikam's tokens 90 s after it is given, on the test's clock (the connector's too)."""
    entra.simulator.consent_clock = msp.clock.epoch
    entra.simulator.consent_delay = 90
    return msp


# -- 1. consent takes time to reach tokens: confirming, not "not consented" -------------------------------------------


def test_a_consent_that_has_not_reached_tokens_yet_is_confirming_and_then_active(delayed, entra):  # noqa: F811
    status, page = consent(delayed, accepted(entra, link_of(delayed, FABRIKAM)))
    assert status == 202 and "Consent received" in page and "applying it" in page and "declined" not in page
    row = overview(delayed)[FABRIKAM.id]
    assert row["state"] == "confirming" and "consentUrl" not in row
    assert row["confirming"]["attempts"] == 1 and row["lastError"]["code"] == "tenant_not_consented"
    assert "has not reached its tokens yet" in row["lastError"]["detail"]
    assert delayed.graph.tenant(FABRIKAM.id).requests == []  # a token without the permission never reaches Graph
    asked = token_requests(entra, FABRIKAM.id)

    status, result = refresh(delayed)  # the regular refresh tries the confirmation, and reads it not as active
    assert status == 200 and "tenants" not in result  # the home tenant alone was read
    assert token_requests(entra, FABRIKAM.id) == asked + 1  # a new token: the role-less one was not kept anywhere
    assert overview(delayed)[FABRIKAM.id]["state"] == "confirming" and tenants.to_read(delayed.services) == [""]

    delayed.clock.advance(seconds=95)  # the consent has reached the tokens now
    tick(delayed)
    row = overview(delayed)[FABRIKAM.id]
    assert row["state"] == "active" and row["lastError"] is None and row["score"]["current"] is not None
    assert "confirming" not in row and row["lastRefresh"]["status"] == "ok"  # its first refresh, done at once


def test_confirmation_is_tried_after_30_s_1_2_4_and_8_minutes_then_at_each_refresh_for_24_hours(delayed, entra):  # noqa: F811
    entra.simulator.consent_delay = 10**7
    assert consent(delayed, accepted(entra, link_of(delayed, FABRIKAM)))[0] == 202
    asked = token_requests(entra, FABRIKAM.id)
    for wait in RETRIES:
        delayed.clock.advance(seconds=wait - 5)
        tick(delayed)
        assert token_requests(entra, FABRIKAM.id) == asked, wait  # not yet
        delayed.clock.advance(seconds=5)
        tick(delayed)
        asked += 1
        assert token_requests(entra, FABRIKAM.id) == asked, wait
    assert overview(delayed)[FABRIKAM.id]["confirming"]["nextAttemptAt"] is None
    delayed.clock.advance(hours=1)
    tick(delayed)
    assert token_requests(entra, FABRIKAM.id) == asked  # after the schedule: at refreshes only
    refresh(delayed)
    assert token_requests(entra, FABRIKAM.id) == asked + 1
    check = checks(delayed)[FABRIKAM.id]
    assert check["ok"] is False and check["code"] == "tenant_not_consented" and "applying the consent" in check[
        "detail"]  # fmt: skip
    delayed.clock.advance(hours=23)
    tick(delayed)  # 24 hours have passed: pending again, with why, what to do and a new link
    row = overview(delayed)[FABRIKAM.id]
    assert row["state"] == "pending" and "for 24 hours" in row["lastError"]["detail"] and row["consentUrl"]
    entra.simulator.consent_delay = 0
    assert consent(delayed, accepted(entra, row["consentUrl"]))[0] == 200
    assert overview(delayed)[FABRIKAM.id]["state"] == "active"


def test_a_token_graph_refused_is_dropped_and_the_next_read_asks_entra_for_a_new_one(msp, entra):  # noqa: F811
    added(msp, entra, FABRIKAM)
    fabrikam = msp.graph.tenant(FABRIKAM.id)
    fabrikam.forbidden = True  # the permission is gone: Graph answers 403 to the token the connector holds
    refresh(msp)
    assert overview(msp)[FABRIKAM.id]["lastError"]["code"] == "tenant_not_consented"
    asked = token_requests(entra, FABRIKAM.id)
    fabrikam.forbidden = False  # granted again
    _, result = refresh(msp)
    assert token_requests(entra, FABRIKAM.id) == asked + 1  # neither the connector nor azure-identity kept it
    assert {t["tenant"]: t["status"] for t in result["tenants"]}[FABRIKAM.id] == "ok"
    assert overview(msp)[FABRIKAM.id]["lastError"] is None


# -- 2. a tenant of another cloud; 3. a discovery that fails for a moment ---------------------------------------------


@pytest.mark.parametrize("named", [TAILSPIN.domain, TAILSPIN.id])
def test_a_tenant_of_another_cloud_is_refused_naming_its_cloud(msp, entra, named):  # noqa: F811
    response = add(msp, named)
    assert response.status_code == 400, response.get_body()
    problem = body(response)
    assert problem["code"] == "validation_failed" and problem["errors"][0]["field"] == "tenant"
    message = problem["errors"][0]["message"]
    assert "Azure Government (US" in message and "microsoftonline.us" in message and "cannot read it" in message
    assert "Microsoft's global cloud" in message  # and this deployment's own
    assert set(overview(msp)) == {HOME.id}


def test_a_tenant_of_another_cloud_added_before_says_so_on_its_row(msp, entra):  # noqa: F811
    """A tenant registered before the check (an older version) meets AADSTS900382 at the token endpoint."""

    def register(document: dict[str, Any]) -> None:
        document["tenants"][TAILSPIN.id] = {"id": TAILSPIN.id, "name": TAILSPIN.name, "state": "active"}

    tenants.change(msp.services, register)
    refresh(msp)
    error = overview(msp)[TAILSPIN.id]["lastError"]
    assert "another Microsoft cloud" in error["detail"] and "AADSTS900382" in error["detail"]


@pytest.mark.parametrize("mode", ["503", "90024", "drop"])
def test_a_discovery_that_fails_for_a_moment_is_503_with_retry_after_not_no_such_tenant(msp, entra, mode):  # noqa: F811
    entra.simulator.fail_discovery(mode)
    response = add(msp, FABRIKAM.domain)
    problem = body(response)
    assert response.status_code == 503 and problem["code"] == "secure_score_unavailable", problem
    assert int(response.headers["Retry-After"]) >= 1 and "knows no tenant" not in json.dumps(problem)
    assert add(msp, FABRIKAM.domain).status_code == 201  # a moment later it works


# -- 4. the reader app's federated credential no longer matches -----------------------------------------------------


@pytest.mark.parametrize("code", [70021, 700211, 700212, 700213, 7002138])
def test_a_federated_credential_mismatch_is_reader_app_misconfigured_naming_the_credential(msp, entra, identity, code):  # noqa: F811
    added(msp, entra, FABRIKAM)
    entra.simulator.break_federated_credential(READER_APP_ID, code)
    use(msp, entra)  # a new instance: no token held from before
    refresh(msp)
    error = overview(msp)[FABRIKAM.id]["lastError"]
    assert error["code"] == "reader_app_misconfigured" and f"AADSTS{code}:" in error["detail"]
    assert "not that tenant's doing" in error["detail"]
    fix = error["remediation"]
    assert "azd provision" in fix and f"subject {identity.object_id}" in fix and READER_APP_ID in fix
    assert (
        f"issuer https://login.microsoftonline.com/{HOME.id}/v2.0" in fix
        and "audience api://AzureADTokenExchange" in fix
    )
    check = checks(msp)[FABRIKAM.id]
    assert check["code"] == "reader_app_misconfigured" and "azd provision" in check["remediation"]
    entra.simulator.restore_federated_credential(READER_APP_ID)  # azd provision
    refresh(msp)
    assert overview(msp)[FABRIKAM.id]["lastError"] is None


def test_a_mismatch_met_while_confirming_a_consent_says_it_is_the_deployments_setup(msp, entra):  # noqa: F811
    entra.simulator.break_federated_credential(READER_APP_ID, 700213)  # the identity was created again
    status, page = consent(msp, accepted(entra, link_of(msp, NORTHWIND)))
    assert status == 503 and "Consent received" in page and "nothing more is needed from you" in page
    row = overview(msp)[NORTHWIND.id]
    assert row["state"] == "confirming" and row["lastError"]["code"] == "reader_app_misconfigured"


# -- 5. a provider's admin consents with their own account -------------------------------------------------------


def test_consent_with_an_account_of_another_tenant_says_to_sign_in_as_that_tenants_admin(msp, entra):  # noqa: F811
    link = body(add(msp, FABRIKAM.domain, "Fabrikam Ltd"))["consentUrl"]
    params = accepted(entra, link, "other-tenant")
    assert params["error"] == "access_denied" and params["error_description"].startswith("AADSTS50020:")
    status, page = consent(msp, params)
    assert status == 400 and "declined" not in page and "another organization" in page
    assert "Global Administrator or Privileged Role Administrator of Fabrikam Ltd" in page and "same link" in page
    row = overview(msp)[FABRIKAM.id]
    assert (
        row["state"] == "pending" and row["consentUrl"] == link and row["lastError"]["code"] == "consent_wrong_account"
    )
    assert "Fabrikam Ltd" in checks(msp)[FABRIKAM.id]["remediation"]
    assert consent(msp, accepted(entra, link))[0] == 200  # the same link, by the right admin


# -- 6. the token-exchange audience of every cloud ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "audience"),
    [("https://login.microsoftonline.com", "api://AzureADTokenExchange"),
     ("https://login.microsoftonline.com/", "api://AzureADTokenExchange"),
     ("https://login.microsoftonline.us/", "api://AzureADTokenExchangeUSGov"),  # US Government
     ("https://LOGIN.MicrosoftOnline.US", "api://AzureADTokenExchangeUSGov"),
     ("https://login.chinacloudapi.cn/", "api://AzureADTokenExchangeChina"),  # China (21Vianet)
     ("https://login.partner.microsoftonline.cn", "api://AzureADTokenExchangeChina"),  # China's partner host
     ("https://login.microsoftonline.eaglex.ic.gov/", "api://AzureADTokenExchangeUSNat"),
     ("https://login.microsoftonline.microsoft.scloud/", "api://AzureADTokenExchangeUSSec"),
     ("https://127.0.0.1:7075", "api://AzureADTokenExchange")],  # the simulator: the public cloud's
)  # fmt: skip
def test_the_federated_credential_audience_of_every_cloud(authority, audience):
    assert federated_audience(authority) == audience


# -- 7. neutral words, and codes matched exactly -------------------------------------------------------------------


def test_a_deleted_tenant_is_said_to_no_longer_exist_not_to_lack_consent(msp, entra):  # noqa: F811
    added(msp, entra, FABRIKAM)
    entra.simulator.delete_tenant(FABRIKAM.id)
    use(msp, entra)
    refresh(msp)
    error = overview(msp)[FABRIKAM.id]["lastError"]
    assert "no longer knows" in error["detail"] and "AADSTS90002" in error["detail"]
    assert "consent" not in error["detail"].lower() and "consent" not in error["remediation"].lower()


def test_a_disabled_app_may_have_been_disabled_by_microsoft(msp, entra):  # noqa: F811
    added(msp, entra, FABRIKAM)
    entra.simulator.withdraw(FABRIKAM.id, READER_APP_ID, how="disable")
    use(msp, entra)
    refresh(msp)
    error = overview(msp)[FABRIKAM.id]["lastError"]
    assert "by that tenant's administrator, or by Microsoft" in error["detail"] and "AADSTS7000112" in error["detail"]
    assert "if Microsoft disabled the app" in error["remediation"]


def test_aadsts_codes_are_matched_whole_so_900021_is_not_90002(msp, entra):  # noqa: F811
    added(msp, entra, FABRIKAM)
    use(msp, entra)
    entra.simulator.fail_tokens(900021, f"Requested tenant identifier '{FABRIKAM.id}' is not valid. Tenant "
                                "identifiers may not be an empty GUID.", times=10)  # fmt: skip
    refresh(msp)
    error = overview(msp)[FABRIKAM.id]["lastError"]
    assert error["code"] == "secure_score_unavailable" and "AADSTS900021" in error["detail"]
    assert "no longer knows" not in error["detail"] and "consent" not in error["detail"].lower()


# -- 9. a tenant added by domain is named ---------------------------------------------------------------------------


def rename(harness: Harness, tenant: str, payload: bytes, **headers: str) -> Any:
    return harness.call("rename_tenant", "PATCH", f"/tenants/{tenant}", body=payload, route_params={"id": tenant},
                        headers=headers or None)  # fmt: skip


def test_a_tenant_added_by_domain_is_named_with_patch(msp, entra):  # noqa: F811
    assert body(add(msp, FABRIKAM.domain))["name"] == FABRIKAM.domain
    response = rename(msp, FABRIKAM.id.upper(), b'{"name": "  Fabrikam Ltd  "}')
    assert response.status_code == 200, response.get_body()
    assert body(response)["name"] == "Fabrikam Ltd" and body(response)["state"] == "pending"
    assert overview(msp)[FABRIKAM.id]["name"] == "Fabrikam Ltd"
    home = rename(msp, HOME.id, b'{"name": "Contoso (us)"}')
    assert home.status_code == 200 and overview(msp)[HOME.id]["name"] == "Contoso (us)"


@pytest.mark.parametrize(
    ("payload", "field"),
    [(b"{}", "name"), (b'{"name": ""}', "name"), (b'{"name": "  "}', "name"), (b'{"name": 7}', "name"),
     (b'{"name": "a\\u202eb"}', "name"), (b'{"name": "two\\nlines"}', "name"),
     (json.dumps({"name": "x" * 101}).encode(), "name"), (b'{"name": "ok", "state": "active"}', "state"),
     (b"[]", "body")],
)  # fmt: skip
def test_a_bad_name_is_a_validation_failure_and_changes_nothing(msp, entra, payload, field):  # noqa: F811
    assert add(msp, FABRIKAM.domain, "Fabrikam").status_code == 201
    response = rename(msp, FABRIKAM.id, payload)
    problem = body(response)
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/problem+json"
    assert problem["code"] == "validation_failed" and field in [e["field"] for e in problem["errors"]]
    assert overview(msp)[FABRIKAM.id]["name"] == "Fabrikam" and overview(msp)[FABRIKAM.id]["state"] == "pending"


def test_renaming_an_unknown_tenant_is_not_found_and_a_form_post_is_refused(msp, entra):  # noqa: F811
    assert body(rename(msp, NORTHWIND.id, b'{"name": "N"}'))["code"] == "not_found"
    assert add(msp, NORTHWIND.domain).status_code == 201
    form = msp.call("rename_tenant", "PATCH", f"/tenants/{NORTHWIND.id}", body=b"name=N",
                    route_params={"id": NORTHWIND.id}, content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert form.status_code == 415 and body(form)["code"] == "unsupported_media_type"
