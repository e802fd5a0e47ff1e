"""Sign-in and roles (docs/design.md#portal-and-sign-in) for every route: App Service Authentication's principal, Entra
bearer tokens, the two app roles, nothing open in Azure without sign-in, the local host's emulation, and the hostile
matrix: which principal headers count, for every combination of the emulation, WEBSITE_AUTH_ENABLED and each
Azure marker, through the app and through the local host."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dev.host.easyauth import SESSION_COOKIE, LocalUser
from dev.host.server import LocalHost
from dev.servicenow.state import INTEGRATION_USER_SYS_ID
from shared import services as services_module
from shared.signin import LOCAL_PROOF_HEADER, local_host_proof
from tests.conftest import Harness, build_services, free_port
from tests.create_ticket.test_tickets import BODY
from tests.fakes.entra import AUDIENCE, TENANT, FakeEntra

OID = "11111111-2222-3333-4444-555555555555"  # FakeEntra's default object id
AZURE_MARKERS = ["WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"]  # shared/config.py running_in_azure


def principal(user: str = "alice@contoso.com", roles: tuple[str, ...] = (), oid: str = OID) -> str:
    claims = [{"typ": "preferred_username", "val": user}, {"typ": "name", "val": user},
              {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
              *({"typ": "roles", "val": r} for r in roles)]  # fmt: skip
    data = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(data).encode()).decode()


def use(harness: Harness, **env: str) -> None:
    services_module.install(build_services(harness.tmp, harness.transport, harness.clock, harness.sleeps,
                                           harness.graph, **env))  # fmt: skip
    harness.services = services_module.get_services()


def code(response: Any) -> tuple[int, str | None]:
    body = response.get_body()
    try:
        return response.status_code, json.loads(body).get("code")
    except ValueError:
        return response.status_code, None


ROUTES = [("connect", "GET", "/connect", None), ("provisioning", "GET", "/provisioning", None),
          ("disconnect", "POST", "/disconnect", None), ("create_ticket", "POST", "/tickets", BODY),
          ("list_tickets", "GET", "/tickets", None), ("recommendations", "GET", "/recommendations", None),
          ("refresh_recommendations", "POST", "/recommendations/refresh", None), ("me", "GET", "/me", None),
          ("portal", "GET", "/portal", None), ("list_tenants", "GET", "/tenants", None),
          ("add_tenant", "POST", "/tenants", {"tenant": "fabrikam.example"}),
          ("remove_tenant", "DELETE", "/tenants/b2e4f6a8-3c5d-4e7f-8a9b-0c1d2e3f4a5b", None),
          ("rename_tenant", "PATCH", "/tenants/b2e4f6a8-3c5d-4e7f-8a9b-0c1d2e3f4a5b", {"name": "Fabrikam"}),
          ("list_connections", "GET", "/connections", None),
          ("add_connection", "POST", "/connections", {"id": "second", "instance": "second"}),
          ("remove_connection", "DELETE", "/connections/second", None),
          ("list_templates", "GET", "/templates", None),
          ("create_template", "POST", "/templates", {"name": "x", "controls": ["DLPEnabled"], "state": "Ignored",
                                                     "tenants": ["home"]})]  # fmt: skip


def call(harness: Harness, route: tuple[str, str, str, Any], headers: dict[str, str] | None = None) -> Any:
    name, method, path, body = route
    return harness.call(name, method, path, body=json.dumps(body).encode() if body else b"", headers=headers)


@pytest.mark.parametrize("marker", AZURE_MARKERS)
def test_in_azure_without_sign_in_nothing_is_open(connected, marker):
    use(connected, **{marker: "func-connector"})
    for route in ROUTES:
        status, problem_code = code(call(connected, route))
        assert status == 503, route
        assert problem_code in ("not_configured", None), route  # the portal answers with an HTML page
    assert connected.simulator.records() == []


def test_outside_azure_without_sign_in_the_caller_is_a_local_user_with_every_role(connected):
    me = json.loads(connected.call("me", path="/me").get_body())
    assert me == {"user": None, "roles": ["Connector.Admin", "Tickets.Create"]}


def test_the_principal_header_is_ignored_unless_the_platform_turned_sign_in_on(connected):
    forged = {"X-MS-CLIENT-PRINCIPAL": principal("mallory@evil.example", ())}
    me = json.loads(connected.call("me", path="/me", headers=forged).get_body())
    assert me["user"] is None  # the local user, not the forged one


@pytest.fixture
def easy_auth(connected: Harness) -> Harness:
    """In Azure with App Service Authentication on: the principal header stands for the platform's."""
    use(connected, WEBSITE_AUTH_ENABLED="True", WEBSITE_SITE_NAME="func-connector")
    return connected


def test_with_app_service_authentication_a_request_needs_a_principal(easy_auth):
    for route in ROUTES:
        expected = (401, None if route[0] == "portal" else "unauthorized")  # the portal answers with an HTML page
        assert code(call(easy_auth, route)) == expected, route


NAMELESS = b'{"claims": [{"typ": "roles", "val": "Connector.Admin"}]}'  # roles, but no user and no object id


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"[1,2]").decode(), "A" * 20000,
                                   base64.b64encode(b'{"claims": 7}').decode(),
                                   base64.b64encode(NAMELESS).decode()])  # fmt: skip
def test_a_malformed_principal_is_unauthorized(easy_auth, value):
    assert code(easy_auth.call("me", path="/me", headers={"X-MS-CLIENT-PRINCIPAL": value})) == (401, "unauthorized")


def test_roles_decide_what_a_signed_in_user_may_do(easy_auth):
    reader = {"X-MS-CLIENT-PRINCIPAL": principal("reader@contoso.com", ())}
    creator = {"X-MS-CLIENT-PRINCIPAL": principal("creator@contoso.com", ("Tickets.Create",))}
    admin = {"X-MS-CLIENT-PRINCIPAL": principal("admin@contoso.com", ("Connector.Admin",))}
    for route in ROUTES:
        name = route[0]
        status = call(easy_auth, route, reader).status_code
        needs = {"connect", "disconnect", "create_ticket", "refresh_recommendations", "add_tenant", "remove_tenant",
                 "rename_tenant", "add_connection", "remove_connection", "create_template"}  # fmt: skip
        assert (status == 403) == (name in needs), (name, status)
    assert easy_auth.call("provisioning", params={"live": "true"}, headers=reader).status_code == 403
    assert easy_auth.call("provisioning", params={"live": "true"}, headers=admin).status_code == 200
    assert call(easy_auth, ROUTES[3], admin).status_code == 403  # an admin is not a creator by role
    assert call(easy_auth, ROUTES[3], creator).status_code == 201
    assert easy_auth.call("connect", path="/connect", headers=admin).status_code == 302


def test_the_initiating_user_is_the_signed_in_user(easy_auth):
    bob = easy_auth.simulator.add_user("0b0b0b0b0b0b4b0b8b0b0b0b0b0b0b0b", "bob", "Bob Example", "bob@contoso.com")
    creator = {"X-MS-CLIENT-PRINCIPAL": principal("bob@contoso.com", ("Tickets.Create",))}
    body = {**BODY, "requestedBy": "m365.integration@example.com"}  # another real ServiceNow user: not taken
    response = easy_auth.call("create_ticket", "POST", "/tickets", body=json.dumps(body).encode(), headers=creator)
    assert response.status_code == 201, response.get_body()
    assert json.loads(response.get_body())["requestedBy"] == "bob@contoso.com"
    (record,) = easy_auth.simulator.records()
    assert record["caller_id"]["value"] == bob["sys_id"] != INTEGRATION_USER_SYS_ID  # the signed-in user is the caller


@pytest.fixture
def in_azure(connected: Harness) -> Iterator[tuple[Harness, FakeEntra]]:
    fake = FakeEntra()
    use(connected, WEBSITE_AUTH_ENABLED="True", WEBSITE_INSTANCE_ID="abc123", ENTRA_TENANT_ID=TENANT,
        ENTRA_AUDIENCE=AUDIENCE, ENTRA_AUTHORITY=fake.authority)  # fmt: skip
    yield connected, fake
    fake.stop()


def test_in_azure_the_platforms_principal_is_enough_without_the_token_store(in_azure):
    harness, _ = in_azure
    header = {"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com", ("Connector.Admin", "Tickets.Create"))}
    me = json.loads(harness.call("me", path="/me", headers=header).get_body())
    assert me == {"user": "alice@contoso.com", "roles": ["Connector.Admin", "Tickets.Create"]}


def test_in_azure_an_id_token_when_present_is_validated_and_must_name_the_same_user(in_azure):
    harness, entra = in_azure
    header = {"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com", ("Connector.Admin", "Tickets.Create"))}
    id_token = entra.token(aud=AUDIENCE.removeprefix("api://"), roles=["Tickets.Create"])
    me = json.loads(harness.call("me", path="/me", headers={**header, "X-MS-TOKEN-AAD-ID-TOKEN": id_token}).get_body())
    assert me == {"user": "alice@contoso.com", "roles": ["Tickets.Create"]}  # the validated token's roles
    forged = {**header, "X-MS-TOKEN-AAD-ID-TOKEN": id_token[:-4] + "AAAA"}
    assert code(harness.call("me", path="/me", headers=forged)) == (401, "unauthorized")


def test_in_azure_a_principal_with_another_users_id_token_is_refused(in_azure):
    harness, entra = in_azure
    forged = {"X-MS-CLIENT-PRINCIPAL": principal("admin@contoso.com", ("Connector.Admin",), oid="9" * 8),
              "X-MS-TOKEN-AAD-ID-TOKEN": entra.token()}  # fmt: skip
    assert code(harness.call("me", path="/me", headers=forged)) == (401, "unauthorized")


def test_an_id_token_the_app_cannot_check_is_not_configured_not_ignored(connected):
    use(connected, WEBSITE_AUTH_ENABLED="True", WEBSITE_INSTANCE_ID="abc123")
    headers = {"X-MS-CLIENT-PRINCIPAL": principal(), "X-MS-TOKEN-AAD-ID-TOKEN": "eyJ.eyJ.sig"}
    assert code(connected.call("me", path="/me", headers=headers)) == (503, "not_configured")


def test_an_expired_sign_in_says_so_so_the_page_can_renew_it(in_azure):
    harness, entra = in_azure
    expired = {"X-MS-CLIENT-PRINCIPAL": principal(), "X-MS-TOKEN-AAD-ID-TOKEN": entra.token(exp=1, iat=0, nbf=0)}
    response = harness.call("me", path="/me", headers=expired)
    assert response.status_code == 401 and json.loads(response.get_body())["reason"] == "token_expired"


def test_the_two_exceptions_stay_anonymous_in_azure(in_azure):
    harness, _ = in_azure
    assert harness.call("oauth_callback", path="/oauth/callback", params={"state": "x"}).status_code == 400
    response = harness.call("servicenow_events", "POST", "/servicenow/events", body=b"{}")
    assert response.status_code in (401, 503)  # signature or webhook secret: never a sign-in demand
    assert json.loads(response.get_body())["code"] != "forbidden"


# -- the local host's emulation of App Service Authentication ---------------------------------------------------


@pytest.fixture
def emulated(connected: Harness, indexed_functions, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")
    monkeypatch.setenv("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")
    use(connected, WEBSITE_AUTH_ENABLED="True", OAUTH_REDIRECT_URI="http://localhost/api/oauth/callback")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(),
                     user=LocalUser.parse("reader@contoso.com", ""))  # fmt: skip
    host.start()
    yield host.url
    host.stop()


def test_the_emulation_redirects_pages_and_refuses_api_calls_without_a_session(emulated):
    with httpx.Client(base_url=emulated) as client:
        page = client.get("/api/portal")
        assert page.status_code == 302 and page.headers["location"].startswith("/.auth/login/aad")
        assert client.get("/api/me", headers={"X-Requested-With": "XMLHttpRequest"}).status_code == 401
        assert client.post("/api/tickets", json=BODY).status_code == 401
        assert client.get("/.auth/me").status_code == 401


def test_the_emulation_signs_in_strips_forged_headers_and_serves_auth_me(emulated):
    with httpx.Client(base_url=emulated) as client:
        login = client.get("/.auth/login/aad", params={"post_login_redirect_uri": "https://evil.example/"})
        assert login.status_code == 302 and login.headers["location"] == "/api/portal"  # no open redirect
        assert SESSION_COOKIE in client.cookies
        forged = {"X-MS-CLIENT-PRINCIPAL": principal("admin@contoso.com", ("Connector.Admin",))}
        me = client.get("/api/me", headers=forged).json()
        assert me == {"user": "reader@contoso.com", "roles": []}
        assert client.post("/api/disconnect").status_code == 403
        (user,) = client.get("/.auth/me").json()
        assert user["user_id"] == "reader@contoso.com"


def test_admin_functions_runs_a_timer_now(emulated):
    with httpx.Client(base_url=emulated) as client:
        assert client.post("/admin/functions/status_sync").status_code == 202
        assert client.post("/admin/functions/nope").status_code == 404
    assert services_module.get_services().store.get_sync_state() is not None


# -- the hostile matrix: which principal headers count ------------------------------------------------------------
# A caller sends a forged admin principal and a guessed local-host proof. Only two things may name the caller: the
# platform (in Azure with WEBSITE_AUTH_ENABLED=True: App Service strips clients' copies and sets its own, so there
# the header is the platform's), and the local host's emulation (its session user, whatever the caller sent).

MARKERS = {"none": {}, "WEBSITE_INSTANCE_ID": {"WEBSITE_INSTANCE_ID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
           "WEBSITE_HOSTNAME": {"WEBSITE_HOSTNAME": "localhost:7071"},  # Core Tools sets this one locally
           "WEBSITE_SITE_NAME": {"WEBSITE_SITE_NAME": "func-connector"}}  # fmt: skip
AUTH = {"auth-set": {"WEBSITE_AUTH_ENABLED": "True"}, "auth-unset": {}}
EVERY_ROLE = ("Connector.Admin", "Tickets.Create")
FORGED = {"X-MS-CLIENT-PRINCIPAL": principal("mallory@evil.example", EVERY_ROLE),
          LOCAL_PROOF_HEADER: "guessed-proof-" + "A" * 32, "X-Requested-With": "XMLHttpRequest"}  # fmt: skip


def outcome(status: int, body: bytes) -> tuple[Any, ...]:
    data = json.loads(body or b"{}")
    return ("user", data["user"], tuple(data["roles"])) if status == 200 else (status, data.get("code"))


def without_the_emulation(marker: str, auth: str) -> tuple[Any, ...]:
    in_azure = marker in AZURE_MARKERS
    if in_azure and auth == "auth-set":
        return ("user", "mallory@evil.example", EVERY_ROLE)  # stands for the platform's own principal
    if in_azure:
        return (503, "not_configured")  # nothing is open in Azure
    if auth == "auth-set":
        return (401, "unauthorized")  # the header is ignored: no signed-in user
    return ("user", None, EVERY_ROLE)  # the local user; the forged principal is ignored


@pytest.fixture
def timer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")
    monkeypatch.setenv("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")


@contextlib.contextmanager
def local_host(functions: dict[str, Any], user: LocalUser | None) -> Iterator[str]:
    host = LocalHost(functions.values(), "127.0.0.1", free_port(), user=user)
    host.start()
    try:
        yield host.url
    finally:
        host.stop()


@pytest.mark.parametrize("auth", AUTH)
@pytest.mark.parametrize("marker", MARKERS)
def test_hostile_matrix_through_the_app(connected, marker, auth):
    use(connected, **MARKERS[marker], **AUTH[auth])
    response = connected.call("me", path="/me", headers=FORGED)
    assert outcome(response.status_code, response.get_body()) == without_the_emulation(marker, auth)


@pytest.mark.parametrize("auth", AUTH)
@pytest.mark.parametrize("marker", MARKERS)
def test_hostile_matrix_through_the_local_host_without_its_emulation(
    connected, indexed_functions, timer_settings, marker, auth
):
    use(connected, **MARKERS[marker], **AUTH[auth])
    with local_host(indexed_functions, None) as url, httpx.Client(base_url=url) as client:
        response = client.get("/api/me", headers=FORGED)
    assert outcome(response.status_code, response.content) == without_the_emulation(marker, auth)


@pytest.mark.parametrize("auth", AUTH)
@pytest.mark.parametrize("marker", MARKERS)
def test_hostile_matrix_through_the_local_host_with_its_emulation(
    connected, indexed_functions, timer_settings, marker, auth
):
    use(connected, **MARKERS[marker], **AUTH[auth])
    reader = LocalUser.parse("reader@contoso.com", "")
    with local_host(indexed_functions, reader) as url, httpx.Client(base_url=url) as client:
        refused = client.get("/api/me", headers=FORGED)  # no session: the emulation answers, the app never sees it
        assert outcome(refused.status_code, refused.content) == (401, "unauthorized")
        assert client.get("/.auth/login/aad").status_code == 302
        response = client.get("/api/me", headers=FORGED)
    assert outcome(response.status_code, response.content) == ("user", "reader@contoso.com", ())
    proof = local_host_proof()
    assert proof not in response.text and all(proof not in value for value in response.headers.values())


def test_a_principal_with_the_proof_of_another_process_is_ignored(connected):
    """The proof is this process's secret: a value minted elsewhere (a previous run, another host) never counts."""
    use(connected, WEBSITE_AUTH_ENABLED="True")
    import secrets

    stale = {**FORGED, LOCAL_PROOF_HEADER: secrets.token_urlsafe(32)}
    assert code(connected.call("me", path="/me", headers=stale)) == (401, "unauthorized")
    vouched = {**FORGED, LOCAL_PROOF_HEADER: local_host_proof()}  # what only the emulation in this process sets
    assert json.loads(connected.call("me", path="/me", headers=vouched).get_body())["user"] == "mallory@evil.example"
