"""The Entra ID simulator answers as login.microsoftonline.com does (docs/design.md#entra-id-facts), over TLS, and
azure-identity's real `ClientAssertionCredential` (and MSAL itself) gets tokens from it exactly as the connector will:
the managed identity's token as the client assertion, one credential for every tenant."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

from dev.entra import (
    FABRIKAM,
    HOME,
    NORTHWIND,
    READER_APP_ID,
    SECURITY_EVENTS_READWRITE_ALL,
    TOKEN_EXCHANGE,
)
from dev.graph import ManagedIdentity
from tests.entra_support import CONSENT_REDIRECT, ConsentPage, ServedEntra, press, served_entra

GRAPH = "https://graph.microsoft.com"


@pytest.fixture(scope="module")
def served(identity: ManagedIdentity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedEntra]:
    with served_entra(identity, tmp_path_factory.mktemp("entra")) as entra:
        yield entra


@pytest.fixture
def entra(served: ServedEntra) -> Iterator[ServedEntra]:
    """The module's simulator with no consent and an administrator signed in, for each test."""
    served.simulator.principals.clear()
    served.simulator.requests.clear()
    served.simulator.signed_in_role = "Global Administrator"
    yield served


def consent_url(entra: ServedEntra, tenant: str, **overrides: str) -> str:
    """The link the connector builds (docs/design.md#several-microsoft-tenants): client id, `{graph}/.default`, its
    redirect, a state."""
    params = {"client_id": READER_APP_ID, "scope": f"{GRAPH}/.default", "redirect_uri": CONSENT_REDIRECT,
              "state": "s7a8t9e", **overrides}  # fmt: skip
    return f"{entra.url}/{tenant}/v2.0/adminconsent?{urlencode(params)}"


def back_to_app(answer: httpx.Response) -> dict[str, list[str]]:
    location = answer.headers["location"]
    assert location.startswith(CONSENT_REDIRECT + "?"), location
    return parse_qs(urlsplit(location).query)


def credential(entra: ServedEntra, **options: object) -> ClientAssertionCredential:
    """What the connector builds once: the managed identity's token for the token exchange as the assertion,
    every tenant allowed (`tenant_id=` on each call)."""
    identity = ManagedIdentityCredential(client_id=entra.simulator.identity.client_id)  # type: ignore[union-attr]
    return ClientAssertionCredential(
        HOME.id, READER_APP_ID, lambda: identity.get_token(f"{TOKEN_EXCHANGE}/.default").token,
        authority=entra.url, additionally_allowed_tenants=["*"], **options,
    )  # fmt: skip


# -- OpenID discovery --------------------------------------------------------------------------------


@pytest.mark.parametrize("named", [FABRIKAM.domain, FABRIKAM.id, FABRIKAM.id.upper(), "FABRIKAM.onmicrosoft.com"])
def test_discovery_by_domain_or_id_names_the_tenant_by_id(entra, named):
    with entra.client() as http:
        answer = http.get(f"{entra.url}/{named}/v2.0/.well-known/openid-configuration")
    assert answer.status_code == 200
    document = answer.json()
    assert document["issuer"] == f"{entra.url}/{FABRIKAM.id}/v2.0"
    assert document["token_endpoint"] == f"{entra.url}/{FABRIKAM.id}/oauth2/v2.0/token"
    assert document["authorization_endpoint"] == f"{entra.url}/{FABRIKAM.id}/oauth2/v2.0/authorize"
    assert document["jwks_uri"] == f"{entra.url}/{FABRIKAM.id}/discovery/v2.0/keys"


@pytest.mark.parametrize(
    ("named", "error", "code"),
    [("unknown.example", "invalid_tenant", 90002), ("0b9e1c4d-0000-4000-8000-000000000000", "invalid_tenant", 90002),
     ("not_a_domain", "invalid_request", 900023)],
)  # fmt: skip
def test_an_unknown_or_malformed_tenant_is_the_real_error(entra, named, error, code):
    with entra.client() as http:
        answer = http.get(f"{entra.url}/{named}/v2.0/.well-known/openid-configuration")
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ") and named in body["error_description"]
    assert f"Trace ID: {body['trace_id']}" in body["error_description"]
    assert {"timestamp", "correlation_id", "error_uri"} <= set(body)


# -- admin consent -----------------------------------------------------------------------------------


def test_accept_returns_the_tenant_by_id_with_scope_and_state_and_records_the_consent(entra):
    with entra.client() as browser:
        page = browser.get(consent_url(entra, FABRIKAM.domain))
        assert page.status_code == 200 and "SecurityEvents.ReadWrite.All" in page.text
        assert {"accept", "cancel"} <= {button for form in ConsentPage(page.text).forms for button in form[2]}
        answer = press(browser, consent_url(entra, FABRIKAM.domain))
    assert back_to_app(answer) == {"admin_consent": ["True"], "tenant": [FABRIKAM.id], "scope": [f"{GRAPH}/.default"],
                                   "state": ["s7a8t9e"]}  # fmt: skip
    principal = entra.simulator.consent_of(FABRIKAM.id, READER_APP_ID)
    assert principal is not None and principal.roles == (SECURITY_EVENTS_READWRITE_ALL,) and principal.enabled
    assert entra.simulator.consent_of(NORTHWIND.id, READER_APP_ID) is None  # consent is per tenant


def test_cancel_returns_access_denied_with_the_state_and_no_tenant_and_records_nothing(entra):
    with entra.client() as browser:
        answer = press(browser, consent_url(entra, FABRIKAM.id), "cancel")
    returned = back_to_app(answer)
    assert returned["error"] == ["access_denied"] and returned["state"] == ["s7a8t9e"]
    assert returned["error_description"][0].startswith("AADSTS65004: User declined to consent to access the app.")
    assert returned["admin_consent"] == ["True"] and "tenant" not in returned
    assert entra.simulator.consent_of(FABRIKAM.id, READER_APP_ID) is None


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({"redirect_uri": "https://evil.example/api/tenants/consent"}, 50011),
     ({"redirect_uri": CONSENT_REDIRECT + "/"}, 50011),  # exactly one registered: not a prefix, not a variant
     ({"client_id": "00000000-1111-2222-3333-444444444444"}, 700016)],
)  # fmt: skip
def test_a_redirect_uri_or_app_that_is_not_registered_is_an_error_page_and_no_redirect(entra, overrides, code):
    with entra.client() as browser:
        page = browser.get(consent_url(entra, FABRIKAM.id, **overrides))
        assert page.status_code == 400 and "location" not in page.headers
        assert f"AADSTS{code}:" in page.text and "accept" not in page.text
        forged = browser.post(f"{entra.url}/{FABRIKAM.id}/v2.0/adminconsent",
                              data={**dict(parse_qs(urlsplit(consent_url(entra, FABRIKAM.id, **overrides)).query,
                                                    keep_blank_values=True)), "action": "accept"})  # fmt: skip
    assert "location" not in forged.headers
    assert entra.simulator.principals == {}


def test_an_unknown_tenant_in_the_consent_link_is_an_error_page(entra):
    with entra.client() as browser:
        page = browser.get(consent_url(entra, "unknown.example"))
    assert page.status_code == 400 and "AADSTS90002:" in page.text and "location" not in page.headers


def test_a_scope_other_than_the_apps_default_comes_back_as_invalid_scope(entra):
    with entra.client() as browser:
        answer = browser.get(consent_url(entra, FABRIKAM.id, scope=f"{GRAPH}/SecurityEvents.ReadWrite.All"))
    returned = back_to_app(answer)
    assert returned["error"] == ["invalid_scope"] and returned["state"] == ["s7a8t9e"]
    assert entra.simulator.principals == {}


@pytest.mark.parametrize("role", ["Cloud Application Administrator", "Application Administrator", "User"])
def test_a_user_who_may_not_grant_graph_application_permissions_needs_admin_approval(entra, role):
    """Only a Global Administrator or a Privileged Role Administrator may (learn grant-admin-consent)."""
    entra.simulator.signed_in_role = role
    url = consent_url(entra, FABRIKAM.id)
    with entra.client() as browser:
        page = browser.get(url)
        buttons = {button for form in ConsentPage(page.text).forms for button in form[2]}
        assert "Need admin approval" in page.text and "accept" not in buttons and {"back", "switch"} <= buttons
        forged = ConsentPage(page.text).press(browser, url, "back", action="accept")  # Accept without its button
        assert "location" not in forged.headers and "Need admin approval" in forged.text
        returned = back_to_app(press(browser, url, "back"))
    assert returned["error"] == ["access_denied"] and returned["error_description"][0].startswith("AADSTS90094:")
    assert returned["state"] == ["s7a8t9e"] and entra.simulator.principals == {}


def test_signing_in_as_a_privileged_role_administrator_on_the_page_lets_them_accept(entra):
    entra.simulator.signed_in_role = "User"
    url = consent_url(entra, NORTHWIND.domain)
    with entra.client() as browser:
        page = browser.get(url)
        switched = ConsentPage(page.text).press(browser, url, "switch", role="Privileged Role Administrator")
        assert switched.status_code == 200 and "Permissions requested" in switched.text
        answer = ConsentPage(switched.text).press(browser, url, "accept")
    assert back_to_app(answer)["tenant"] == [NORTHWIND.id]
    assert entra.simulator.consent_of(NORTHWIND.id, READER_APP_ID) is not None


# -- tokens ------------------------------------------------------------------------------------------


def test_client_assertion_credential_gets_a_token_per_tenant_over_tls(entra, monkeypatch):
    """The connector's path: one ClientAssertionCredential, `tenant_id=` per call (by id or domain), the CA given
    as `connection_verify`; the token names the tenant and carries the consented permission."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    entra.simulator.grant(NORTHWIND.id, READER_APP_ID)
    with credential(entra, connection_verify=str(entra.ca), disable_instance_discovery=True) as reader:
        tokens = {named: reader.get_token(f"{GRAPH}/.default", tenant_id=named).token
                  for named in (FABRIKAM.id, NORTHWIND.domain)}  # fmt: skip
        again = reader.get_token(f"{GRAPH}/.default", tenant_id=FABRIKAM.id).token
    fabrikam, northwind = (entra.simulator.verify(tokens[named]) for named in (FABRIKAM.id, NORTHWIND.domain))
    assert fabrikam and northwind
    assert (fabrikam["tid"], northwind["tid"]) == (FABRIKAM.id, NORTHWIND.id)
    for claims in (fabrikam, northwind):
        assert claims["aud"] == GRAPH and claims["appid"] == READER_APP_ID
        assert claims["roles"] == [SECURITY_EVENTS_READWRITE_ALL] and claims["exp"] > claims["iat"]
    assert again == tokens[FABRIKAM.id]  # cached per tenant: no second request
    asked = [r.path for r in entra.simulator.requests]
    assert asked == [f"/{FABRIKAM.id}/oauth2/v2.0/token", f"/{NORTHWIND.domain}/oauth2/v2.0/token"]  # nothing else


def test_the_ca_is_trusted_through_requests_ca_bundle_and_not_without_it(entra, monkeypatch):
    """What `make run` sets for the app process (a bundle with the simulator's CA); without it TLS fails."""
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with credential(entra) as untrusting, pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.get_token(f"{GRAPH}/.default", tenant_id=FABRIKAM.id)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(entra.ca))
    with credential(entra) as trusting:
        token = trusting.get_token(f"{GRAPH}/.default", tenant_id=FABRIKAM.id).token
    assert (entra.simulator.verify(token) or {}).get("tid") == FABRIKAM.id


def test_the_bundle_make_run_sets_is_trusted_by_httpx_and_azure_identity_and_keeps_the_public_cas(
    entra, monkeypatch, tmp_path: Path
):
    """`make run` points REQUESTS_CA_BUNDLE (requests: azure-identity) and SSL_CERT_FILE (httpx, the connector's
    client) at the CAs the process trusted already plus the simulator's."""
    from dev.entra import ca_bundle

    entra.simulator.grant(NORTHWIND.id, READER_APP_ID)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    bundle = ca_bundle(entra.ca, tmp_path)
    assert bundle.read_text().count("BEGIN CERTIFICATE") > 100  # certifi's public roots are still there
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with httpx.Client(timeout=10) as http:  # no verify= given: what the connector's clients do
        assert http.get(f"{entra.url}/{NORTHWIND.domain}/v2.0/.well-known/openid-configuration").status_code == 200
    with credential(entra) as reader:
        token = reader.get_token(f"{GRAPH}/.default", tenant_id=NORTHWIND.domain).token
    assert (entra.simulator.verify(token) or {}).get("tid") == NORTHWIND.id


def test_the_token_is_signed_with_the_keys_discovery_names(entra):
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    with credential(entra, connection_verify=str(entra.ca)) as reader:
        token = reader.get_token(f"{GRAPH}/.default", tenant_id=FABRIKAM.id).token
    with entra.client() as http:
        jwks_uri = http.get(f"{entra.url}/{FABRIKAM.domain}/v2.0/.well-known/openid-configuration").json()["jwks_uri"]
    keys = jwt.PyJWKClient(jwks_uri, ssl_context=ssl.create_default_context(cafile=str(entra.ca)))
    claims = jwt.decode(token, keys.get_signing_key_from_jwt(token).key, algorithms=["RS256"], audience=GRAPH)
    assert claims["tid"] == FABRIKAM.id


@pytest.mark.parametrize(("how", "code"), [("before", 7000229), ("delete", 7000229), ("disable", 7000112)])
def test_a_tenant_without_consent_or_after_withdrawal_gets_no_token(entra, how, code):
    if how != "before":
        entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
        entra.simulator.withdraw(FABRIKAM.id, how=how)
    with credential(entra, connection_verify=str(entra.ca)) as reader, pytest.raises(ClientAuthenticationError) as no:
        reader.get_token(f"{GRAPH}/.default", tenant_id=FABRIKAM.id)
    assert f"AADSTS{code}:" in str(no.value)
    assert no.value.response is not None and no.value.response.status_code == (401 if code == 7000229 else 400)
    body = json.loads(no.value.response.text())
    assert body["error"] == ("invalid_client" if code == 7000229 else "unauthorized_client")
    assert body["error_codes"] == [code]


def test_permissions_removed_later_give_a_token_without_roles(entra):
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    entra.simulator.withdraw(FABRIKAM.id, how="revoke")
    with credential(entra, connection_verify=str(entra.ca)) as reader:
        token = reader.get_token(f"{GRAPH}/.default", tenant_id=FABRIKAM.id).token
    assert "roles" not in (entra.simulator.verify(token) or {"roles": []})


def _token_request(entra: ServedEntra, assertion: str, tenant: str = FABRIKAM.id, **form: str) -> httpx.Response:
    with entra.client() as http:
        return http.post(f"{entra.url}/{tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": READER_APP_ID, "scope": f"{GRAPH}/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion, **form})  # fmt: skip


def test_the_assertion_must_be_the_trusted_identitys_token_for_the_exchange(entra, identity):
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    stranger = ManagedIdentity()
    stranger.object_id = "11111111-2222-4333-8444-555555555555"
    cases = {
        700027: ManagedIdentity().issue(TOKEN_EXCHANGE),  # another identity's signature
        700024: identity.issue(TOKEN_EXCHANGE, lifetime=-1),  # expired
        700211: identity.issue("https://management.azure.com"),  # not a token-exchange token: another issuer
        700212: identity.issue("api://AzureADTokenExchangeUSGov"),  # the exchange audience of another cloud
    }
    for code, assertion in cases.items():
        refused = _token_request(entra, assertion)
        assert (refused.status_code, refused.json()["error"], refused.json()["error_codes"]) == (
            401, "invalid_client", [code]), refused.text  # fmt: skip
    entra.simulator.identity = stranger  # signed right, but its subject is not the credential's
    refused = _token_request(entra, stranger.issue(TOKEN_EXCHANGE))
    assert refused.json()["error_codes"] == [700213] and stranger.object_id in refused.json()["error_description"]
    entra.simulator.identity = identity
    assert _token_request(entra, identity.issue(TOKEN_EXCHANGE)).status_code == 200


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [({"scope": f"{GRAPH}/SecurityEvents.ReadWrite.All"}, 400, "invalid_scope", 1002012),
     ({"scope": "https://graph.microsoft.us/.default"}, 400, "invalid_resource", 500011),
     ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type", 70003),
     ({"client_assertion": ""}, 401, "invalid_client", 7000218),
     ({"client_id": "00000000-1111-2222-3333-444444444444"}, 400, "unauthorized_client", 700016)],
)  # fmt: skip
def test_token_requests_the_endpoint_refuses(entra, identity, form, status, error, code):
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    refused = _token_request(entra, identity.issue(TOKEN_EXCHANGE), **form)
    assert (refused.status_code, refused.json()["error"], refused.json()["error_codes"]) == (status, error, [code])
    assert refused.headers["cache-control"] == "no-store"


def test_an_unknown_tenant_has_no_token_endpoint(entra, identity):
    refused = _token_request(entra, identity.issue(TOKEN_EXCHANGE), tenant="unknown.example")
    assert refused.status_code == 400 and refused.json()["error_codes"] == [90002]


def test_msal_finds_the_endpoints_by_discovery_and_gets_the_token(entra, identity, monkeypatch):
    """MSAL itself (which azure-identity's other credentials use) reads the tenant's OpenID configuration, then
    asks the token endpoint it names. Its instance discovery always goes to login.microsoftonline.com for a host it
    does not know, so it is turned off, as azure-identity's `disable_instance_discovery=True` does."""
    import msal  # type: ignore[import-untyped]
    import requests

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # when set, requests prefers them to a session's verify
        monkeypatch.delenv(name, raising=False)
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    session = requests.Session()
    session.verify = str(entra.ca)
    app = msal.ConfidentialClientApplication(
        READER_APP_ID, client_credential={"client_assertion": lambda: identity.issue(TOKEN_EXCHANGE)},
        authority=f"{entra.url}/{FABRIKAM.domain}", http_client=session, instance_discovery=False,
    )  # fmt: skip
    result = app.acquire_token_for_client(scopes=[f"{GRAPH}/.default"])
    session.close()
    assert "access_token" in result, result
    assert (entra.simulator.verify(result["access_token"]) or {}).get("tid") == FABRIKAM.id
    assert [r.path for r in entra.simulator.requests] == [
        f"/{FABRIKAM.domain}/v2.0/.well-known/openid-configuration", f"/{FABRIKAM.id}/oauth2/v2.0/token"]  # fmt: skip


def test_the_simulators_page_adds_a_tenant_and_withdraws_consent(entra):
    entra.simulator.grant(FABRIKAM.id, READER_APP_ID)
    with entra.client() as browser:
        added = browser.post(f"{entra.url}/sim/tenants", data={"domain": "tailspin.example", "name": "Tailspin"})
        assert added.status_code == 303
        assert browser.get(f"{entra.url}/tailspin.example/v2.0/.well-known/openid-configuration").status_code == 200
        page = browser.get(f"{entra.url}/sim").text
        assert "Tailspin" in page and "Fabrikam" in page and "SecurityEvents.ReadWrite.All" in page
        withdrawn = browser.post(f"{entra.url}/sim/tenants/{FABRIKAM.id}/withdraw", data={"how": "disable"})
        assert withdrawn.status_code == 303
    principal = entra.simulator.consent_of(FABRIKAM.id, READER_APP_ID)
    assert principal is not None and not principal.enabled


def test_the_state_survives_a_restart(tmp_path: Path, identity):
    from dev.entra import EntraSimulator
    from dev.entra.persist import STATE_FILE, keep

    first = EntraSimulator(identity)
    first.register_app(READER_APP_ID, [CONSENT_REDIRECT])
    assert keep(first, tmp_path) is False
    tailspin = first.add_tenant("tailspin.example", "Tailspin")
    first.grant(tailspin.id, READER_APP_ID)
    first.grant(FABRIKAM.id, READER_APP_ID)
    first.withdraw(FABRIKAM.id, how="disable")
    assert (tmp_path / STATE_FILE).stat().st_mode & 0o077 == 0
    second = EntraSimulator(identity)
    assert keep(second, tmp_path) is True
    assert second.find("tailspin.example") == tailspin
    assert second.consent_of(tailspin.id, READER_APP_ID) is not None
    assert not second.consent_of(FABRIKAM.id, READER_APP_ID).enabled  # type: ignore[union-attr]
