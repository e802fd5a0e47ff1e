"""Caller identity from Entra ID bearer tokens, checked against a local JWKS endpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared import services as services_module
from tests.conftest import Harness, build_services
from tests.create_ticket.test_tickets import BODY
from tests.fakes.entra import AUDIENCE, TENANT, FakeEntra


@pytest.fixture
def entra(harness: Harness) -> Iterator[FakeEntra]:
    fake = FakeEntra()
    assert harness.connect().status_code == 200
    services_module.install(
        build_services(
            harness.tmp, harness.transport, harness.clock, harness.sleeps,
            ENTRA_TENANT_ID=TENANT, ENTRA_AUDIENCE=AUDIENCE, ENTRA_AUTHORITY=fake.authority,
        )
    )  # fmt: skip
    yield fake
    fake.stop()


def _post(harness: Harness, token: str | None, body: dict[str, object] | None = None, **headers: str):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = harness.call(
        "create_ticket", "POST", "/tickets", body=json.dumps(body or BODY).encode(), headers=headers
    )
    return response, json.loads(response.get_body())


def test_a_valid_token_is_required_and_names_the_initiating_user(harness, entra):
    response, problem = _post(harness, None)
    assert response.status_code == 401 and problem["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response, ticket = _post(harness, entra.token())
    assert response.status_code == 201
    assert ticket["requestedBy"] == "alice@contoso.com"  # the token's user, not the body's requestedBy
    assert "Requested by: alice@contoso.com" in harness.simulator.records()[0]["description"]


def test_the_signing_keys_are_fetched_once(harness, entra):
    for i in range(5):
        body = {**BODY, "recommendation": {**BODY["recommendation"], "id": f"R{i}"}}
        assert _post(harness, entra.token(), body)[0].status_code == 201
    assert entra.key_requests == 1


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "api://someone-else"},
        {"iss": "https://login.microsoftonline.com/another-tenant/v2.0"},
        {"exp": int(time.time()) - 3600},
        {"nbf": int(time.time()) + 3600},
        {"tid": "another-tenant"},
        {"exp": None},
    ],
)
def test_tokens_with_the_wrong_claims_are_refused(harness, entra, claims):
    response, problem = _post(harness, entra.token(**claims))
    assert response.status_code == 401 and problem["code"] == "unauthorized"
    assert harness.simulator.records() == []


def test_forged_and_malformed_tokens_are_refused(harness, entra):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unsigned = jwt.encode({"aud": AUDIENCE, "tid": TENANT}, key="", algorithm="none")
    hs256 = jwt.encode({"aud": AUDIENCE}, "secret-that-is-long-enough-for-hs256!", algorithm="HS256")
    for token in [entra.token(key=stranger), unsigned, hs256, "not.a.jwt", entra.token(kid="unknown-kid")]:
        response, _ = _post(harness, token)
        assert response.status_code == 401, token[:20]
    assert harness.simulator.records() == []


def test_idempotency_keys_are_scoped_to_the_caller(harness, entra):
    alice = entra.token()
    bob = entra.token(oid="99999999-2222-3333-4444-555555555555", preferred_username="bob@contoso.com")
    other = {**BODY, "recommendation": {**BODY["recommendation"], "id": "Other"}}
    assert _post(harness, alice, BODY, **{"Idempotency-Key": "k1"})[0].status_code == 201
    assert _post(harness, bob, other, **{"Idempotency-Key": "k1"})[0].status_code == 201


def test_admin_routes_require_the_token_too(harness, entra):
    assert harness.call("provisioning").status_code == 401
    assert harness.call("disconnect", "POST").status_code == 401
    ok = harness.call("provisioning", headers={"Authorization": f"Bearer {entra.token()}"})
    assert ok.status_code == 200


def test_a_valid_token_without_the_app_role_is_forbidden(harness, entra):
    response, problem = _post(harness, entra.token(roles=["Some.Other"]))
    assert (response.status_code, problem["code"]) == (403, "forbidden")
    assert "Tickets.Create" in problem["detail"] and "Users and groups" in problem["remediation"]
    assert harness.simulator.records() == []


def test_admin_routes_need_connector_admin(harness, entra):
    token = {"Authorization": f"Bearer {entra.token()}"}
    assert harness.call("disconnect", "POST", "/disconnect", headers=token).status_code == 403
    assert harness.call("provisioning", params={"live": "true"}, headers=token).status_code == 403
    assert harness.call("provisioning", headers=token).status_code == 200  # reads need only a signed-in caller
    admin = {"Authorization": f"Bearer {entra.token(roles=['Connector.Admin'])}"}
    assert harness.call("provisioning", params={"live": "true"}, headers=admin).status_code == 200
