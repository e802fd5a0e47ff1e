"""Property-based fuzzing of every HTTP route through the indexed app, as the worker calls it.

Arbitrary JSON (lone surrogates, NUL and invisible characters, deep nesting, huge numbers), arbitrary bytes,
arbitrary query values and arbitrary values for every header the app reads; correctly signed push notices with
arbitrary bodies. The only acceptable answers are the ones docs/openapi.yaml documents for the operation, each
error a problem with a known code; never a 500. Each route also reaches its success path often enough to count
(seeded tickets, their sys_ids, validly signed notices, real authorization callbacks) and each route's share of
successes is asserted (over 50 answers or more; always in CI). Seeded; `FUZZ_EXAMPLES` sets the examples per route
(with CI=true, never fewer than 500).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from secure_score.overview import tenant_overview
from shared import services as services_module
from shared.auth import OBJECT_ID_CLAIM
from shared.problems import PROBLEM_CODES
from shared.secrets import WEBHOOK_SECRET
from shared.store import StoreConflict
from shared.text import one_line_ok
from status_sync.events import sign
from status_sync.sync import StatusSync
from templates.api import load_all
from templates.fanout import run_name
from templates.model import TEMPLATE_ID
from tests.conftest import IN_CI, ROOT, Harness, build_services
from tests.create_ticket.test_tickets import BODY
from tests.fakes.entra import AUDIENCE, TENANT, FakeEntra
from tests.status_sync.test_events import SECRET

DEFAULT_EXAMPLES = CI_MIN_EXAMPLES = 500
SEED = 20261126
# Of each route's answers, at least this share must be a success (2xx, or connect's 302 to ServiceNow): a fuzz
# run that never gets past validation says nothing about what happens after it.
MIN_SUCCESS_SHARE = 0.2
SHARE_SAMPLE = 50  # fewer answers than this say nothing about a share (a quick local run); CI always has more


def fuzz_examples(env: Mapping[str, str]) -> int:
    """Examples per route: `FUZZ_EXAMPLES` for a quick local run; CI never runs fewer than CI_MIN_EXAMPLES."""
    requested = int(env.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
    return max(requested, CI_MIN_EXAMPLES) if env.get("CI", "").lower() == "true" else requested


EXAMPLES = fuzz_examples(os.environ)
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
    "rename_tenant": ("renameTenant", "PATCH", "/tenants/{id}"),
    "tenant_review": ("tenantReview", "GET", "/tenants/{id}/review"),
    "list_templates": ("listTemplates", "GET", "/templates"),
    "create_template": ("createTemplate", "POST", "/templates"),
    "get_template": ("getTemplate", "GET", "/templates/{id}"),
    "put_template": ("putTemplate", "PUT", "/templates/{id}"),
    "preview_template": ("previewTemplate", "POST", "/templates/{id}/preview"),
    "apply_template": ("applyTemplate", "POST", "/templates/{id}/apply"),
    "template_apply_progress": ("templateApplyProgress", "GET", "/templates/{id}/applies/{run}"),
}
RUN = "0123456789abcdef0123456789abcdef"  # a queued apply's run the fuzz stores for a template
TEMPLATE_ROUTES = ("get_template", "put_template", "preview_template", "apply_template", "template_apply_progress")
# Every header the app reads, and a few it must never trust.
HEADERS = ["Content-Type", "Idempotency-Key", "Authorization", "Origin", "Cookie", "X-ServiceNow-Timestamp",
           "X-ServiceNow-Signature", "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-TOKEN-AAD-ID-TOKEN",
           "Host", "X-Forwarded-Host"]  # fmt: skip


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


SYS_IDS = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
VALID_TEMPLATE = st.fixed_dictionaries(
    {"name": st.text(VISIBLE, min_size=1, max_size=100).filter(str.strip),
     "controls": st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True), min_size=1, max_size=5),
     "state": st.sampled_from(["ThirdParty", "Ignored", "Reviewed"]),
     "tenants": st.sampled_from(["all", ["home"]])},
    optional={"comment": st.text(VISIBLE, max_size=200), "expiresInDays": st.integers(1, 3650)},
)  # fmt: skip
SEEDED_TEMPLATE = {"name": "Mail filter", "controls": ["DLPEnabled", "mip_DLP_policies"], "state": "ThirdParty",
                   "tenants": ["home"]}  # fmt: skip


@pytest.fixture
def fuzzed(connected: Harness) -> Iterator[Harness]:
    """Connected, Secure Score read, and a ticket per control (one of them deleted in ServiceNow), so ticket ids
    and sys_ids exist from the first example."""
    connected.services.secrets.set(WEBHOOK_SECRET, SECRET)
    assert connected.call("refresh_recommendations", "POST", "/recommendations/refresh").status_code == 200
    for control in CONTROL_IDS:
        body = json.dumps({**BODY, "recommendation": {"id": control}}).encode()
        assert connected.call("create_ticket", "POST", "/tickets", body=body).status_code == 201, control
    deleted = next(t for t, _ in connected.services.store.list_tickets() if t.recommendation_id == CONTROL_IDS[-1])
    assert deleted.sys_id is not None
    connected.simulator.delete("incident", deleted.sys_id)
    seeded = connected.call("create_template", "POST", "/templates", body=json.dumps(SEEDED_TEMPLATE).encode())
    assert seeded.status_code == 201, seeded.get_body()
    yield connected


def _mostly(draw: Any) -> bool:
    """True seven times in ten: the well-formed branch, so each route's success path is well trodden."""
    return bool(draw(st.integers(0, 9)) < 7)


_TEMPLATES_MADE = iter(range(10**9))


def _own_controls(template: dict[str, Any]) -> dict[str, Any]:
    """A valid template whose controls no other template sets (a control in a tenant belongs to one template)."""
    made = next(_TEMPLATES_MADE)
    return {**template, "controls": [f"{c}.{made}" for c in template["controls"]]}


def _call(harness: Harness, function: str, draw: Any) -> Any:
    _, method, path = OPERATIONS[function]
    params = draw(PARAMS)
    headers = draw(HEADER_SETS)
    if method in ("POST", "PATCH", "PUT") and _mostly(draw):  # a clean JSON request: the body decides
        params = {}
        headers = {"Content-Type": "application/json"}
        if draw(st.booleans()):
            headers["Idempotency-Key"] = draw(st.one_of(st.uuids().map(str), TEXT))
    body = draw(BODIES) if method in ("POST", "PATCH", "PUT") else draw(st.one_of(st.just(b""), BODIES))
    if function == "create_ticket" and draw(st.booleans()):  # a valid ticket half the time, else any body
        body = json.dumps(draw(VALID_TICKET), ensure_ascii=draw(st.booleans())).encode()
    if function == "oauth_callback" and _mostly(draw):  # ServiceNow's real redirect, with fuzzed extras
        params = {**params, **harness.authorize()}
        headers.pop("Cookie", None)  # the browser's own cookie binds the flow
    route = {}
    if function == "get_ticket":  # mostly a seeded ticket's id, else any text or an id the store does not have
        tickets = [t.id for t, _ in harness.services.store.list_tickets()]
        route["id"] = draw(st.sampled_from(tickets) if _mostly(draw) else st.one_of(TEXT, SYS_IDS))
    if function == "rename_tenant":  # mostly the home tenant (known once read) and a name, else anything
        home = harness.services.home_tenant_id() or ""
        route["id"] = draw(st.just(home) if _mostly(draw) else st.one_of(TEXT, st.uuids().map(str)))
        if _mostly(draw):
            name = st.text(VISIBLE, min_size=1, max_size=100).filter(str.strip) if _mostly(draw) else TEXT
            body = json.dumps({"name": draw(name)}, ensure_ascii=draw(st.booleans())).encode()
    if function == "tenant_review":  # mostly the home tenant (by name or id) and a period, else anything
        home = harness.services.home_tenant_id() or ""
        route["id"] = draw(st.sampled_from(["home", home]) if _mostly(draw) else st.one_of(TEXT, st.uuids().map(str)))
        if _mostly(draw):  # a period of 1-90 days, or dates of any kind
            start = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(9998, 1, 1)))
            end = start + timedelta(days=draw(st.integers(0, 89)))
            period = {"from": start.isoformat(), "to": end.isoformat()}
            anything = st.one_of(st.dates().map(date.isoformat), TEXT)
            params = (
                period
                if _mostly(draw)
                else draw(st.fixed_dictionaries({}, optional={"from": anything, "to": anything}))
            )
    if function in TEMPLATE_ROUTES:  # mostly a saved template's id, else any text or an id no template has
        saved = sorted(load_all(harness.services.store))
        ids = st.from_regex(r"[a-z0-9]{12}", fullmatch=True)
        route["id"] = draw(st.sampled_from(saved) if _mostly(draw) else st.one_of(TEXT, ids))
    if function == "template_apply_progress":  # mostly a run of the template (stored as a queued apply stores it)
        route["run"] = draw(st.one_of(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), TEXT))
        if _mostly(draw) and TEMPLATE_ID.fullmatch(route["id"]):
            route["run"] = RUN
            with contextlib.suppress(StoreConflict):
                harness.services.store.put_document(run_name(route["id"], RUN), {"run": RUN, "tenants": 1}, None)
    if function == "create_template" and draw(st.booleans()):  # a valid template half the time, else any body
        body = json.dumps(_own_controls(draw(VALID_TEMPLATE)), ensure_ascii=draw(st.booleans())).encode()
    if function == "put_template" and _mostly(draw):  # a valid template under the version GET gives now
        body = json.dumps(_own_controls(draw(VALID_TEMPLATE)), ensure_ascii=draw(st.booleans())).encode()
        current = harness.call("get_template", path=f"/templates/{route['id']}", route_params=route)
        headers["If-Match"] = current.headers.get("ETag") or draw(TEXT)
    if function in ("preview_template", "apply_template") and _mostly(draw):  # nothing, or the apply's option
        body = draw(st.sampled_from([b"", b'{"overwriteDrift": true}', b'{"overwriteDrift": false}']))
    if function == "servicenow_events" and _mostly(draw):  # signed: a notice for a known or unknown record
        known = [t.sys_id for t, _ in harness.services.store.list_tickets() if t.sys_id]
        notice = st.fixed_dictionaries({"sys_id": st.one_of(st.sampled_from(known), SYS_IDS)},
                                       optional={"state": TEXT, "table": TEXT, "sys_updated_on": TEXT})  # fmt: skip
        body = json.dumps(draw(notice)).encode() if _mostly(draw) else body
        timestamp = str(int(harness.clock.epoch()))
        headers.update({"X-ServiceNow-Timestamp": timestamp, "X-ServiceNow-Signature": sign(SECRET, timestamp, body)})
    path = path.replace("{id}", route.get("id", "")).replace("{run}", route.get("run", ""))
    return harness.call(function, method, path, params=params, body=body,
                        headers=headers, route_params=route, content_type=None)  # fmt: skip


def _check(function: str, response: Any, allowed: dict[str, set[int]]) -> int:
    operation = OPERATIONS[function][0]
    status = int(response.status_code)
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
    return status


def assert_successes_are_common(tally: Mapping[str, Counter[int]]) -> None:
    """Each route got past validation often: a success is a 2xx, or connect's redirect to ServiceNow."""
    for function, statuses in tally.items():
        if statuses.total() < SHARE_SAMPLE and not IN_CI:
            continue
        assert statuses.total() >= SHARE_SAMPLE, (function, dict(statuses))
        successes = sum(count for status, count in statuses.items() if status < 400)
        assert successes >= MIN_SUCCESS_SHARE * statuses.total(), (function, dict(sorted(statuses.items())))


@pytest.mark.parametrize("function", [f for f in OPERATIONS if f != "disconnect"])
def test_every_route_answers_only_what_it_documents(fuzzed: Harness, function: str) -> None:
    allowed = documented_statuses()

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.large_base_example])  # fmt: skip
    @given(st.data())
    def run(data: st.DataObject) -> None:
        tally[function][_check(function, _call(fuzzed, function, data.draw), allowed)] += 1

    tally: dict[str, Counter[int]] = {function: Counter()}
    run()
    assert_successes_are_common(tally)
    # Whatever got in is clean text, and the status sync still runs over it.
    for ticket, _ in fuzzed.services.store.list_tickets():
        assert one_line_ok(ticket.name) and ticket.recommendation_id.isascii()
    for row in tenant_overview(fuzzed.services, admin=True)["tenants"]:
        assert one_line_ok(row["name"]) and 0 < len(row["name"]) <= 100 and row["name"] == row["name"].strip()
    assert StatusSync(fuzzed.services).run().status == "ok"


def test_disconnect_answers_only_what_it_documents(fuzzed: Harness) -> None:
    allowed = documented_statuses()

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(st.data())
    def run(data: st.DataObject) -> None:
        tally["disconnect"][_check("disconnect", _call(fuzzed, "disconnect", data.draw), allowed)] += 1

    tally: dict[str, Counter[int]] = {"disconnect": Counter()}
    run()
    assert_successes_are_common(tally)


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
    @given(st.data(), st.sampled_from(["create_ticket", "list_tickets", "provisioning"]))
    def run(data: st.DataObject, function: str) -> None:
        authorization = data.draw(HEADER_VALUES)
        if _mostly(data.draw):  # a signed token: valid half the time, else with fuzzed claims
            authorization = "Bearer " + fake.signed({} if data.draw(st.booleans()) else data.draw(claims))
        _, method, path = OPERATIONS[function]
        body = json.dumps(BODY).encode() if method == "POST" else b""
        response = harness.call(function, method, path, body=body, headers={"Authorization": authorization})
        tally[function][_check(function, response, allowed)] += 1

    tally: defaultdict[str, Counter[int]] = defaultdict(Counter)
    try:
        run()
    finally:
        fake.stop()
    assert_successes_are_common(tally)


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
    signed_in = st.builds(  # a user App Service signed in, with some of the app's roles and fuzzed extra claims
        lambda roles, extra: base64.b64encode(json.dumps({"claims": [
            {"typ": "preferred_username", "val": "alice@contoso.com"}, {"typ": OBJECT_ID_CLAIM, "val": "1" * 32},
            *({"typ": "roles", "val": role} for role in roles), *extra]}).encode()).decode(),
        st.sets(st.sampled_from(["Connector.Admin", "Tickets.Create"])), st.lists(claim, max_size=3),
    )  # fmt: skip
    admin = base64.b64encode(json.dumps({"claims": [
        {"typ": "preferred_username", "val": "admin@contoso.com"}, {"typ": OBJECT_ID_CLAIM, "val": "2" * 32},
        {"typ": "roles", "val": "Connector.Admin"}]}).encode()).decode()  # fmt: skip

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(st.data(), st.sampled_from(["create_ticket", "list_tickets", "me", "disconnect", "portal"]))
    def run(data: st.DataObject, function: str) -> None:
        principal = data.draw(signed_in if _mostly(data.draw) else principals)
        _, method, path = OPERATIONS[function]
        body = json.dumps(BODY).encode() if function == "create_ticket" else b""
        response = harness.call(function, method, path, body=body, headers={"X-MS-CLIENT-PRINCIPAL": principal})
        tally[function][_check(function, response, allowed)] += 1
        if function == "disconnect" and response.status_code == 204:  # connect again, or nothing else can succeed
            assert harness.callback(harness.authorize({"X-MS-CLIENT-PRINCIPAL": admin})).status_code == 200

    tally: defaultdict[str, Counter[int]] = defaultdict(Counter)
    run()
    assert_successes_are_common(tally)


def test_ci_never_fuzzes_fewer_examples_than_its_floor() -> None:
    assert fuzz_examples({"CI": "true", "FUZZ_EXAMPLES": "5"}) == CI_MIN_EXAMPLES
    assert fuzz_examples({"CI": "true", "FUZZ_EXAMPLES": "2000"}) == 2000
    assert fuzz_examples({"CI": "true"}) == fuzz_examples({}) == DEFAULT_EXAMPLES
    assert fuzz_examples({"FUZZ_EXAMPLES": "5"}) == 5  # a quick local run
