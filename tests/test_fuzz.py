"""Property-based fuzzing of every HTTP route through the indexed app, as the worker calls it.

Arbitrary JSON (lone surrogates, NUL and invisible characters, deep nesting, huge numbers), arbitrary bytes,
arbitrary query values and arbitrary values for every header the app reads; correctly signed push notices with
arbitrary bodies. The only acceptable answers are the ones docs/openapi.yaml documents for the operation, each
error a problem with a known code; never a 500. Seeded; `FUZZ_EXAMPLES` sets the examples per route.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from shared import services as services_module
from shared.auth import OBJECT_ID_CLAIM
from shared.events import sign
from shared.problems import PROBLEM_CODES
from shared.secrets import WEBHOOK_SECRET
from shared.sync import StatusSync
from shared.text import one_line_ok
from tests.conftest import ROOT, Harness, build_services
from tests.fakes.entra import AUDIENCE, TENANT, FakeEntra
from tests.test_events import SECRET
from tests.test_tickets import BODY

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))
SEED = 20261126
OPERATIONS = {  # function name -> (operationId, method, path)
    "connect": ("connect", "GET", "/connect"),
    "oauth_callback": ("oauthCallback", "GET", "/oauth/callback"),
    "provisioning": ("provisioning", "GET", "/provisioning"),
    "disconnect": ("disconnect", "POST", "/disconnect"),
    "create_ticket": ("createTicket", "POST", "/tickets"),
    "list_tickets": ("listTickets", "GET", "/tickets"),
    "get_ticket": ("getTicket", "GET", "/tickets/{id}"),
    "servicenow_events": ("servicenowEvents", "POST", "/servicenow/events"),
    "recommendations": ("listRecommendations", "GET", "/recommendations"),
    "refresh_recommendations": ("refreshRecommendations", "POST", "/recommendations/refresh"),
    "me": ("me", "GET", "/me"),
    "portal": ("portal", "GET", "/portal"),
}
# Every header the app reads, and a few it must never trust.
HEADERS = ["Content-Type", "Idempotency-Key", "Authorization", "Origin", "Cookie", "X-ServiceNow-Timestamp",
           "X-ServiceNow-Signature", "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-TOKEN-AAD-ID-TOKEN",
           "Host", "X-Forwarded-Host"]  # fmt: skip
TALLY: Counter[str] = Counter()


def documented_statuses() -> dict[str, set[int]]:
    document = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    statuses: dict[str, set[int]] = {}
    for path in document["paths"].values():
        for operation in path.values():
            statuses[operation["operationId"]] = {int(code) for code in operation["responses"]}
    return statuses


CONTROL_IDS = ["AdminMFAV2", "scid_2016", "11770.MDA_Google_EnableTwoFactorAuth", "IntegratedApps"]
HOSTILE = st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028", "\u202e", "\u200b", "\x85", "\x1b", "^", "é"])
TEXT = st.one_of(
    st.text(st.one_of(st.characters(exclude_categories=()), HOSTILE), max_size=40),
    st.sampled_from(["^NQsys_idANYTHING", "a,b@c", "x" * 300, " ", "AdminMFAV2"]),
)
LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**60).map(lambda n: n * -1),
    st.floats(allow_nan=False, allow_infinity=False), TEXT,
)  # fmt: skip
JSON = st.recursive(
    LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=25
)
TICKETISH = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(TEXT, JSON, st.just(BODY["name"])), "description": st.one_of(TEXT, JSON),
        "priority": st.one_of(st.sampled_from(["high", 2, 2.0, 0, 6, "HIGH"]), JSON),
        "dueDate": st.one_of(st.sampled_from(["2026-12-31", "1000-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59",
                                              "2026-02-29"]), TEXT),
        "recommendation": st.one_of(
            st.fixed_dictionaries({"id": st.sampled_from(CONTROL_IDS)}),
            st.fixed_dictionaries({"id": st.one_of(st.from_regex(r"[A-Za-z0-9._:-]{1,8}", fullmatch=True), TEXT),
                                   "source": st.sampled_from(["microsoft", "user", "x"]),
                                   "category": st.sampled_from(["Identity", "Data", "x"])},
                                  optional={"url": st.one_of(TEXT, st.just("https://security.microsoft.com/x"))}),
            JSON),
        "requestedBy": st.one_of(TEXT, st.just("m365.integration@example.com")),
    },
)  # fmt: skip
VISIBLE = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn"))
VALID_TICKET = st.fixed_dictionaries(
    {"name": st.text(VISIBLE, min_size=1, max_size=160).filter(str.strip),
     "recommendation": st.fixed_dictionaries({
         "id": st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
         "source": st.sampled_from(["microsoft", "user"]),
         "category": st.sampled_from(["Identity", "Data", "Device", "Apps", "Infrastructure"])})},
    optional={"description": st.text(st.one_of(VISIBLE, st.sampled_from("\n\t\r")), max_size=4000),
              "priority": st.one_of(st.sampled_from(["critical", "high", "medium", "low", "planning"]),
                                    st.integers(1, 5)),
              "dueDate": st.datetimes().map(lambda d: d.isoformat()).filter(lambda d: d[:4] >= "2000"),
              "requestedBy": st.from_regex(r"[A-Za-z0-9._-]{1,30}@[a-z]{1,10}\.example", fullmatch=True)},
)  # fmt: skip
BODIES = st.one_of(
    VALID_TICKET.map(lambda v: json.dumps(v).encode()),
    VALID_TICKET.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    TICKETISH.map(lambda v: json.dumps(v).encode()),
    st.integers(30, 30000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(30, 3000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
    st.integers(4000, 6000).map(lambda n: ("9" * n).encode()),
    st.just(json.dumps(BODY).encode()),
)
HEADER_VALUES = st.one_of(
    TEXT, st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8", "\u00b2",
                           "9" * 5000, "Bearer x.y.z", "https://evil.example", "https://connector.example.net"])
)  # fmt: skip
HEADER_SETS = st.fixed_dictionaries({}, optional={name: HEADER_VALUES for name in HEADERS})
PARAMS = st.dictionaries(
    st.one_of(st.sampled_from(["status", "category", "live", "force", "code", "state", "error", "error_description",
                               "ticket"]), TEXT),
    st.one_of(TEXT, st.sampled_from(["true", "open", "closed", "completed", "with", "Identity", "x" * 3000])),
    max_size=4,
)  # fmt: skip


@pytest.fixture
def fuzzed(connected: Harness) -> Iterator[Harness]:
    connected.services.secrets.set(WEBHOOK_SECRET, SECRET)
    assert connected.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    yield connected
    total = sum(TALLY.values())
    print(f"\nfuzz: {total} examples, statuses {dict(sorted(TALLY.items()))}")


def _call(harness: Harness, function: str, draw: Any) -> Any:
    _, method, path = OPERATIONS[function]
    params = draw(PARAMS)
    headers = draw(HEADER_SETS)
    if method == "POST" and draw(st.integers(0, 9)) < 7:  # mostly a clean JSON request: the body decides
        params = {}
        headers = {"Content-Type": "application/json"}
        if draw(st.booleans()):
            headers["Idempotency-Key"] = draw(st.one_of(st.uuids().map(str), TEXT))
    body = draw(BODIES) if method == "POST" else draw(st.one_of(st.just(b""), BODIES))
    route = {}
    if function == "get_ticket":
        tickets = [t.id for t, _ in harness.services.store.list_tickets()]
        route["id"] = draw(st.one_of(TEXT, st.sampled_from(tickets or ["0" * 32])))
    if function == "servicenow_events" and draw(st.booleans()):
        known = [t.sys_id for t, _ in harness.services.store.list_tickets() if t.sys_id]
        if draw(st.booleans()) and known:
            body = json.dumps({"sys_id": draw(st.sampled_from(known)), "state": draw(TEXT)}).encode()
        timestamp = str(int(harness.clock.epoch()))
        headers.update({"X-ServiceNow-Timestamp": timestamp, "X-ServiceNow-Signature": sign(SECRET, timestamp, body)})
    return harness.call(function, method, path.replace("{id}", route.get("id", "")), params=params, body=body,
                        headers=headers, route_params=route, content_type=None)  # fmt: skip


def _check(function: str, response: Any, allowed: dict[str, set[int]]) -> None:
    operation = OPERATIONS[function][0]
    status = response.status_code
    TALLY[str(status)] += 1
    assert status != 500, response.get_body()[:500]
    assert status in allowed[operation], (operation, status, response.get_body()[:500])
    content_type = response.headers.get("Content-Type", "")
    if function in ("oauth_callback", "portal"):
        assert content_type.startswith("text/html")
    elif status >= 400:
        problem = json.loads(response.get_body())
        assert content_type == "application/problem+json"
        assert PROBLEM_CODES[problem["code"]].status == status, problem
        for forbidden in ("evil.example", "\ud800"):
            assert forbidden not in json.dumps(problem, ensure_ascii=False, default=str).replace("\\ud800", "")


@pytest.mark.parametrize("function", [f for f in OPERATIONS if f != "disconnect"])
def test_every_route_answers_only_what_it_documents(fuzzed: Harness, function: str) -> None:
    allowed = documented_statuses()

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.large_base_example])  # fmt: skip
    @given(st.data())
    def run(data: st.DataObject) -> None:
        _check(function, _call(fuzzed, function, data.draw), allowed)

    run()
    # Whatever got in is clean text, and the status sync still runs over it.
    for ticket, _ in fuzzed.services.store.list_tickets():
        assert one_line_ok(ticket.name) and ticket.recommendation_id.isascii()
    assert StatusSync(fuzzed.services).run().status == "ok"


def test_disconnect_answers_only_what_it_documents(fuzzed: Harness) -> None:
    allowed = documented_statuses()

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(st.data())
    def run(data: st.DataObject) -> None:
        _check("disconnect", _call(fuzzed, "disconnect", data.draw), allowed)

    run()


def test_bearer_tokens_and_their_claims_are_fuzzed_with_entra_configured(harness: Harness) -> None:
    """With ENTRA_* set, the Authorization header and a signed token's claims are caller input too."""
    fake = FakeEntra()
    assert harness.connect().status_code == 200
    services_module.install(
        build_services(harness.tmp, harness.transport, harness.clock, harness.sleeps,
                       ENTRA_TENANT_ID=TENANT, ENTRA_AUDIENCE=AUDIENCE, ENTRA_AUTHORITY=fake.authority)
    )  # fmt: skip
    allowed = documented_statuses()
    claims = st.dictionaries(
        st.sampled_from(["preferred_username", "upn", "oid", "sub", "tid", "aud", "iss", "exp", "roles"]),
        JSON,
        max_size=4,
    )

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(st.one_of(HEADER_VALUES, claims.map(lambda c: "Bearer " + fake.signed(c))), st.sampled_from(
        ["create_ticket", "list_tickets", "provisioning"]))  # fmt: skip
    def run(authorization: str, function: str) -> None:
        _, method, path = OPERATIONS[function]
        body = json.dumps(BODY).encode() if method == "POST" else b""
        response = harness.call(function, method, path, body=body, headers={"Authorization": authorization})
        _check(function, response, allowed)

    try:
        run()
    finally:
        fake.stop()


def test_principals_are_fuzzed_with_app_service_authentication(harness: Harness) -> None:
    """With the platform's sign-in on, the principal header is caller input too (the platform strips what
    clients send, but the app never relies on that alone)."""
    import base64

    assert harness.connect().status_code == 200
    services_module.install(build_services(harness.tmp, harness.transport, harness.clock, harness.sleeps,
                                           harness.graph, WEBSITE_AUTH_ENABLED="True",
                                           WEBSITE_SITE_NAME="func-x"))  # in Azure: the principal counts  # fmt: skip
    allowed = documented_statuses()
    types = st.sampled_from(["roles", "preferred_username", "name", "oid", OBJECT_ID_CLAIM])
    values = st.one_of(TEXT, st.sampled_from(["Connector.Admin", "Tickets.Create"]), JSON)
    claim = st.fixed_dictionaries({"typ": st.one_of(types, TEXT), "val": values})
    principals = st.one_of(
        TEXT, st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode()),
        st.fixed_dictionaries({"claims": st.one_of(st.lists(claim, max_size=6), JSON)},
                              optional={"name_typ": TEXT, "role_typ": TEXT}).map(
            lambda d: base64.b64encode(json.dumps(d).encode()).decode()),
    )  # fmt: skip

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(principals, st.sampled_from(["create_ticket", "list_tickets", "me", "disconnect", "portal"]))
    def run(principal: str, function: str) -> None:
        _, method, path = OPERATIONS[function]
        body = json.dumps(BODY).encode() if function == "create_ticket" else b""
        response = harness.call(function, method, path, body=body, headers={"X-MS-CLIENT-PRINCIPAL": principal})
        _check(function, response, allowed)

    run()
