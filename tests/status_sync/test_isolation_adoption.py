"""Issue 25, item 1: a record planted in one customer's ServiceNow never takes over another's ticket
(docs/admin-guide.md: What one customer can and cannot reach). A record found by its correlation id is adopted
only when (a) its tenant is the home tenant or active, (b) the routes in force send that (tenant, control) to the
connection where it was found, and (c) the recommendation has no ticket yet (a pending one counts); otherwise it is
`record_refused`, listed with where it was found and why. Over two ServiceNow simulators, the Entra ID and Graph
simulators; no mocks."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from dev.entra import FABRIKAM, NORTHWIND
from dev.servicenow import Fault, ServiceNowSimulator
from shared.tenant_records import DOCUMENT as TENANTS
from shared.tickets import Ticket, correlation_id, parse_correlation, tenant_tag
from status_sync.every import sync_every_connection
from tests.conftest import Clock, Harness
from tests.isolation_support import SECOND_CLIENT, SECOND_ID, SECOND_URL, Instances, plant, second_simulator
from tests.isolation_support import two_instance_world as world_in
from tests.routes_support import saved
from tests.secure_score.test_tenants import added, entra, msp, use  # noqa: F401  (fixtures)

CONTROL = "AdminMFAV2"
HOME_CONTROL = "BlockLegacyAuthentication"


def body(response: Any) -> Any:
    return json.loads(response.get_body())


@pytest.fixture
def second(clock: Clock) -> ServiceNowSimulator:
    return second_simulator(clock)


@pytest.fixture
def msp_two(msp: Harness, entra: Any, second: ServiceNowSimulator) -> Iterator[Harness]:  # noqa: F811
    """The issue's deployment: two instances, three tenants (home, Fabrikam, Northwind, all read); Fabrikam's
    tickets go to `second`, everyone else's to `default`."""
    msp.transport = Instances(msp.simulator, second)  # type: ignore[assignment]
    use(msp, entra)
    payload = {"id": SECOND_ID, "instance": SECOND_URL, "clientId": SECOND_CLIENT, "clientSecret": "x"}
    second.clients[SECOND_CLIENT].client_secret = "x"
    assert msp.call("add_connection", "POST", "/connections", body=json.dumps(payload).encode()).status_code == 201
    from tests.oauth_callback.test_connections import connect

    assert connect(msp, SECOND_ID).status_code == 200
    for tenant in (FABRIKAM, NORTHWIND):
        added(msp, entra, tenant)
    saved(msp, [{"name": "Fabrikam's instance", "match": {"tenants": [FABRIKAM.id]}, "set": {"connection": SECOND_ID}}])
    yield msp


def _failed(harness: Harness, connection: str) -> str:
    status = body(harness.call("provisioning", path="/provisioning", params={"connection": connection}))
    return str(next(c for c in status["checks"] if c["name"] == "failed_items")["detail"])


def _create(harness: Harness, control: str, tenant: str | None = None) -> tuple[int, dict[str, Any]]:
    payload = {"recommendation": {"id": control}, **({"tenant": tenant} if tenant else {})}
    response = harness.call("create_ticket", "POST", "/tickets", body=json.dumps(payload).encode())
    return response.status_code, body(response)


def test_a_record_planted_on_another_instance_never_takes_over_a_tenants_ticket(msp_two, second):
    mallory = second.tables["sys_user"]
    northwind = plant(second, correlation_id(CONTROL, NORTHWIND.id), assigned_to=next(
        s for s, u in mallory.items() if u["user_name"] == "admin"))  # fmt: skip
    home = plant(second, correlation_id(HOME_CONTROL))
    msp_two.graph.tenant(NORTHWIND.id).requests.clear()
    msp_two.clock.advance(minutes=5)
    results = sync_every_connection(msp_two.services)
    assert [r.adopted for r in results] == [0, 0]
    tracked = {t.sys_id for t, _ in msp_two.services.store.list_tickets()}
    assert northwind["sys_id"] not in tracked and home["sys_id"] not in tracked
    failed = _failed(msp_two, SECOND_ID)
    for planted in (northwind, home):
        assert f"{planted['number']} was not adopted" in failed and "record_refused" in failed
    assert f"connection '{SECOND_ID}' ({SECOND_URL})" in failed
    assert f"the routes send tenant {NORTHWIND.id}'s {CONTROL} to connection 'default'" in failed
    assert f"the routes send the home tenant's {HOME_CONTROL} to connection 'default'" in failed
    assert not [r for r in msp_two.graph.tenant(NORTHWIND.id).requests if r.method == "PATCH"]  # nothing written
    card = body(msp_two.call("list_tickets", path="/tickets", params={"tenant": "all"}))["tickets"]
    assert card == []
    # Northwind's own request makes its own ticket on its own instance, never answered with the planted record.
    for control, tenant in ((CONTROL, NORTHWIND.id), (HOME_CONTROL, None)):
        status, ticket = _create(msp_two, control, tenant)
        assert status == 201, ticket
        assert ticket["connection"] == "default" and ticket["sysId"] not in (northwind["sys_id"], home["sys_id"])
    assert len(msp_two.simulator.records()) == 2


def test_the_connectors_own_record_on_its_routed_instance_is_adopted_after_a_lost_store(msp_two, second):
    status, ticket = _create(msp_two, CONTROL, FABRIKAM.id)
    assert status == 201 and ticket["connection"] == SECOND_ID
    store = msp_two.services.store
    store.delete_ticket(ticket["id"])  # the store is lost (restored from a backup older than the ticket)
    store.release_claim(f"{FABRIKAM.id}|{CONTROL}", ticket["id"])
    msp_two.clock.advance(minutes=5)
    sync_every_connection(msp_two.services)
    (adopted,) = [t for t, _ in store.list_tickets()]
    assert (adopted.sys_id, adopted.tenant, adopted.connection) == (ticket["sysId"], FABRIKAM.id, SECOND_ID)
    again = _create(msp_two, CONTROL, FABRIKAM.id)
    assert again[0] == 200 and again[1]["sysId"] == ticket["sysId"]  # it holds its claim again


def test_a_record_naming_a_tenant_the_connector_does_not_read_is_refused(msp_two, second):
    removed = msp_two.call("remove_tenant", "DELETE", f"/tenants/{NORTHWIND.id}", route_params={"id": NORTHWIND.id})
    assert removed.status_code == 200
    stranger = str(uuid.uuid4())
    planted = [plant(msp_two.simulator, correlation_id(CONTROL, NORTHWIND.id)),
               plant(msp_two.simulator, correlation_id(CONTROL, stranger))]  # fmt: skip
    msp_two.clock.advance(minutes=5)
    sync_every_connection(msp_two.services)
    assert [t for t, _ in msp_two.services.store.list_tickets()] == []
    failed = _failed(msp_two, "default")
    assert f"names the tenant {NORTHWIND.id}, which the connector does not read (removed)" in failed
    assert f"names the tenant {stranger}, which the connector does not read (not registered)" in failed
    assert all(p["number"] in failed for p in planted)


def test_a_record_of_a_recommendation_whose_ticket_is_being_created_is_refused(msp_two):
    """A pending ticket counts as a ticket: the planted record never becomes the recommendation's ticket, and the
    create in flight makes its own record."""
    hold = Fault("hold", method="POST", path_prefix="/api/now/v2/table/incident", seconds=30)
    msp_two.simulator.inject(hold)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(answer=_create(msp_two, CONTROL)))
    worker.start()
    assert hold.arrived.wait(30)
    planted = plant(msp_two.simulator, correlation_id(CONTROL))  # an ordinary user, through the unversioned path
    try:  # within the create's lease: the sync leaves the pending ticket to its create
        sync_every_connection(msp_two.services)
    finally:
        hold.release.set()
        worker.join(30)
    status, ticket = outcome["answer"]
    assert status == 201 and ticket["sysId"] != planted["sys_id"]
    assert [t.sys_id for t, _ in msp_two.services.store.list_tickets()] == [ticket["sysId"]]
    failed = _failed(msp_two, "default")
    assert "whose ticket is being created (pending" in failed, failed  # and without its reference: not linked


def test_a_tag_that_decodes_to_a_tenant_but_is_not_the_one_the_connector_mints_is_not_its_correlation():
    tag = tenant_tag(NORTHWIND.id)
    assert parse_correlation(f"m365sec:{tag}/{CONTROL}") == (NORTHWIND.id, CONTROL)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(tag[-1])
    others = [tag[:-1] + alphabet[(last & ~3) | pad] for pad in range(4) if (last & ~3) | pad != last]
    assert len(others) == 3  # the last letter's two low bits are padding: three more spellings of Northwind's id
    for spelling in others:
        assert parse_correlation(f"m365sec:{spelling}/{CONTROL}") is None


# -- the property: adopted exactly when the three conditions hold ----------------------------------------------

TENANT_IDS = ["1b6f0a2c-0000-4000-8000-00000000000a", "1b6f0a2c-0000-4000-8000-00000000000b",
              "1b6f0a2c-0000-4000-8000-00000000000c"]  # fmt: skip
CONTROLS = ["Ctl1", "Ctl2", "Other"]
CATEGORY = {"Ctl1": "Identity", "Ctl2": "Data"}  # Secure Score's controls, stored for every tenant; "Other" is not one
PATTERNS = ["Ctl1", "Ctl[0-9]", ".*", "Oth.*"]
WHO = st.sampled_from(["home", *TENANT_IDS])
RULE = st.fixed_dictionaries(
    {"set": st.fixed_dictionaries({"connection": st.sampled_from(["default", SECOND_ID])})},
    optional={"match": st.fixed_dictionaries({}, optional={
        "tenants": st.lists(WHO, min_size=1, max_size=3, unique=True),
        "controls": st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2, unique=True),
        "categories": st.lists(st.sampled_from(["Identity", "Data"]), min_size=1, max_size=1)})},
)  # fmt: skip
CASE = st.fixed_dictionaries({
    "states": st.fixed_dictionaries({t: st.sampled_from(["active", "pending", "removed", None]) for t in TENANT_IDS}),
    "rules": st.lists(RULE, max_size=3),
    # "closed+claim": a closed ticket still holding its claim (a crash between its update and the release)
    "tickets": st.lists(st.tuples(WHO, st.sampled_from(CONTROLS),
                                  st.sampled_from(["pending", "new", "resolved", "closed+claim"])), max_size=3),
    "records": st.lists(st.tuples(st.sampled_from(["default", SECOND_ID]), WHO, st.sampled_from(CONTROLS),
                                  st.sampled_from(["1", "2", "6", "7"])), min_size=1, max_size=6),
})  # fmt: skip


def _routed(rules: list[dict[str, Any]], tenant: str, control: str) -> str:
    """The oracle's (b), written independently of the connector: the first rule whose members all hold."""
    for rule in rules:
        match = rule.get("match") or {}
        if "tenants" in match and tenant not in match["tenants"]:
            continue
        if "controls" in match and not any(re.fullmatch(p, control) for p in match["controls"]):
            continue
        if "categories" in match and CATEGORY.get(control) not in match["categories"]:
            continue  # the category is the stored control's, never the record's
        return str(rule["set"]["connection"])
    return "default"


def _ticket(who: str, control: str, status: str, now: str) -> Ticket:
    linked = status != "pending"
    return Ticket(id=uuid.uuid4().hex, recommendation_id=control, recommendation={"id": control}, name=control,
                  priority=3, due_date=None, requested_by=None, table="incident", fingerprint="", created_at=now,
                  updated_at=now, status=status, sys_id=uuid.uuid4().hex if linked else None,
                  lease_until="9999-12-31T00:00:00+00:00", tenant="" if who == "home" else who)  # fmt: skip


def test_a_record_is_adopted_exactly_when_the_three_conditions_hold(tmp_path_factory):
    tally: Counter[str] = Counter()

    @seed(25)
    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(CASE)
    def run(case: dict[str, Any]) -> None:
        clock = Clock()
        world = world_in(tmp_path_factory.mktemp("world"), clock, SECURE_SCORE_WRITE_BACK="off")
        store = world.services.store
        store.put_document(TENANTS, {"tenants": {t: {"id": t, "state": s} for t, s in case["states"].items() if s}},
                           None)  # fmt: skip
        store.put_document("routes", {"routes": [{**r, "id": f"rule-{i:012x}"} for i, r in enumerate(case["rules"])]},
                           None)  # fmt: skip
        for tenant in ["", *TENANT_IDS]:
            store.put_secure_score({"secureScore": {}}, [{"id": c, "category": k, "service": "AzureAD", "maxScore": 5}
                                                         for c, k in CATEGORY.items()], tenant)  # fmt: skip
        claims: dict[tuple[str, str], bool] = {}
        for who, control, status in case["tickets"]:
            ticket = _ticket(who, control, status.split("+")[0], clock().isoformat())
            holder, _ = store.begin_creation(ticket)
            if holder is not None and not claims.get((who, control), False):  # a closed holder gives it up
                holder, _ = store.begin_creation(ticket, replacing=holder)
            if holder is None and not ticket.is_open and status != "closed+claim":
                store.release_claim(ticket.claim_key, ticket.id)
            if holder is None:
                claims[(who, control)] = ticket.is_open
        planted = []
        for where, who, control, state in case["records"]:
            simulator = world.default if where == "default" else world.second
            record = plant(simulator, correlation_id(control, "" if who == "home" else who), state=state)
            planted.append((where, who, control, state, record))
        clock.advance(minutes=5)
        sync_every_connection(world.services)
        adopted = {t.sys_id for t, _ in store.list_tickets() if t.extra.get("adopted")}

        expected = set()
        order = sorted(planted, key=lambda p: (p[4]["sys_updated_on"], p[4]["sys_id"]))
        for where, who, control, state, record in order:
            readable = who == "home" or case["states"][who] == "active"  # (a)
            routed = _routed(case["rules"], who, control) == where  # (b)
            free = not claims.get((who, control), False)  # (c): no open ticket (pending counts) holds it
            if readable and routed and free:
                expected.add(record["sys_id"])
                if state in ("1", "2"):  # an open record becomes the recommendation's open ticket
                    claims[(who, control)] = True
        assert adopted == expected, (case, adopted, expected)
        tally["adopted"] += len(adopted)
        tally["refused"] += len(planted) - len(adopted)
        for why, held in (("unread", lambda p: p[1] != "home" and case["states"][p[1]] != "active"),
                          ("elsewhere", lambda p: _routed(case["rules"], p[1], p[2]) != p[0])):  # fmt: skip
            tally[why] += sum(1 for p in planted if held(p))
        world.services.close()

    run()
    # Not vacuous: records of each kind were generated, and both outcomes were seen many times.
    assert min(tally.values()) >= 20 and len(tally) == 4, tally


# -- what an adopted ticket records (mutation survivors of `Adoption._ticket`) ----------------------------------


def test_an_adopted_ticket_is_what_its_record_says_and_stays_on_the_instance_it_was_found_on(tmp_path):
    """A store that was lost: each record the routes sent where it is found becomes a ticket carrying its own
    priority and name, and the instance it lives on, so the next sync still follows it there."""
    clock = Clock()
    world = world_in(tmp_path, clock, SECURE_SCORE_WRITE_BACK="off")
    store = world.services.store
    tenant = TENANT_IDS[0]
    store.put_document(TENANTS, {"tenants": {tenant: {"id": tenant, "state": "active"}}}, None)
    store.put_document("routes", {"routes": [{"id": "rule-00000000000a", "match": {"tenants": [tenant]},
                                              "set": {"connection": SECOND_ID}}]}, None)  # fmt: skip
    long_name = "Require MFA for administrative roles " * 6  # 222 characters
    impacts = {1: ("1", "1"), 2: ("1", "2"), 3: ("1", "3"), 4: ("2", "3"), 5: ("3", "3")}
    planted = {f"Home{p}": plant(world.default, correlation_id(f"Home{p}"), impact=i, urgency=u,
                                 short_description=long_name if p == 1 else ("" if p == 2 else f"Control {p}"))
               for p, (i, u) in impacts.items()}  # fmt: skip
    theirs = plant(world.second, correlation_id("Ctl1", tenant), impact="1", urgency="2", short_description="Theirs")
    done = plant(world.default, correlation_id("Home6"), state="6")  # a resolved one is history: kept, no claim
    clock.advance(minutes=5)
    sync_every_connection(world.services)
    now = clock().isoformat()
    adopted = {(t.tenant, t.recommendation_id): t for t, _ in store.list_tickets()}
    history = adopted.pop(("", "Home6"))
    assert (history.sys_id, history.status) == (done["sys_id"], "resolved")
    assert set(adopted) == {*(("", c) for c in planted), (tenant, "Ctl1")}
    first = store.get_sync_state()
    assert first is not None and not first[0].get("failures"), first  # nothing failed on the way
    for control, record in [*planted.items(), ("Ctl1", theirs)]:
        ticket = adopted[(tenant if control == "Ctl1" else "", control)]
        assert ticket.sys_id == record["sys_id"] and ticket.priority == int(record["priority"])
        assert ticket.name == record["short_description"][:160] and ticket.table == "incident"
        assert ticket.recommendation == {"id": control, "source": None, "category": None, "url": None}
        assert (ticket.created_at, ticket.updated_at, ticket.synced_at) == (now, now, now)
        # Table Storage keeps no null property: the stored ticket reads back from what it keeps
        assert Ticket.from_record({k: v for k, v in ticket.to_record().items() if v is not None}) == ticket
    assert sorted(t.priority for t in adopted.values()) == [1, 2, 2, 3, 4, 5]
    assert len(adopted[("", "Home1")].name) == 160 and adopted[("", "Home2")].name == ""
    assert {t.instance for k, t in adopted.items() if k[0] == ""} == {""}  # the default's: as its settings say
    assert (adopted[(tenant, "Ctl1")].connection, adopted[(tenant, "Ctl1")].instance) == (SECOND_ID, SECOND_URL)

    # The next sync follows each ticket on its own instance: resolved there, resolved here.
    world.second.update("incident", theirs["sys_id"], state="6")
    world.default.update("incident", planted["Home3"]["sys_id"], state="6")
    clock.advance(minutes=5)
    sync_every_connection(world.services)
    status = {(t.tenant, t.recommendation_id): t.status for t, _ in store.list_tickets()}
    assert status[(tenant, "Ctl1")] == status[("", "Home3")] == "resolved"

    # A copy made by hand of a recommendation that has its open ticket is refused, naming that ticket.
    copy = plant(world.default, correlation_id("Home4"))
    clock.advance(minutes=5)
    sync_every_connection(world.services)
    state = store.get_sync_state()
    assert state is not None
    failures = json.dumps(state[0]["failures"])
    assert (
        f"{copy['number']} was not adopted: recommendation Home4 has a ticket already "
        f"({adopted[('', 'Home4')].number})" in failures
    ), failures
    world.services.close()


def test_a_records_route_is_decided_by_its_own_tenants_control(tmp_path):
    """(b) takes the facts of the record's own tenant's control: the same control id can be of another category in
    another tenant's snapshot, and only its own decides where its tickets go."""
    clock = Clock()
    world = world_in(tmp_path, clock, SECURE_SCORE_WRITE_BACK="off")
    store = world.services.store
    tenant = TENANT_IDS[1]
    store.put_document(TENANTS, {"tenants": {tenant: {"id": tenant, "state": "active"}}}, None)
    for who, category in (("", "Identity"), (tenant, "Data")):
        store.put_secure_score({"secureScore": {}}, [{"id": "Ctl1", "category": category, "service": "AzureAD",
                                                      "maxScore": 5}], who)  # fmt: skip
    store.put_document("routes", {"routes": [{"id": "rule-00000000000b", "match": {"categories": ["Data"]},
                                              "set": {"connection": SECOND_ID}}]}, None)  # fmt: skip
    theirs = plant(world.second, correlation_id("Ctl1", tenant))
    home = plant(world.default, correlation_id("Ctl1"))
    clock.advance(minutes=5)
    sync_every_connection(world.services)
    assert {t.sys_id for t, _ in store.list_tickets()} == {theirs["sys_id"], home["sys_id"]}
    world.services.close()


def test_a_record_for_a_control_its_tenants_snapshot_lacks_is_routed_by_its_control_id(tmp_path):
    """(b) for a control the last snapshot no longer lists (Microsoft retired it, or the snapshot is older than the
    record): its id, from the correlation id, still decides a rule that names controls."""
    clock = Clock()
    world = world_in(tmp_path, clock, SECURE_SCORE_WRITE_BACK="off")
    store = world.services.store
    tenant = TENANT_IDS[1]
    store.put_document(TENANTS, {"tenants": {tenant: {"id": tenant, "state": "active"}}}, None)
    store.put_secure_score({"secureScore": {}}, [{"id": "Other", "category": "Data", "service": "AzureAD",
                                                  "maxScore": 5}], tenant)  # fmt: skip
    store.put_document("routes", {"routes": [{"id": "rule-00000000000c", "match": {"controls": ["Retired1"]},
                                              "set": {"connection": SECOND_ID}}]}, None)  # fmt: skip
    routed = plant(world.second, correlation_id("Retired1", tenant))
    elsewhere = plant(world.default, correlation_id("Retired1", tenant))
    clock.advance(minutes=5)
    sync_every_connection(world.services)
    assert {t.sys_id for t, _ in store.list_tickets()} == {routed["sys_id"]}
    assert elsewhere["sys_id"] != routed["sys_id"]
    world.services.close()
