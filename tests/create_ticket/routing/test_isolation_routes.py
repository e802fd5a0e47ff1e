"""Issue 25, items 3, 5 and 6: what a person writes into the routes is bounded (docs/routes.md): control patterns run
by RE2 in linear time, names that would run as script in ServiceNow's query are refused, and saving or previewing a
list stops at ROUTES_DEADLINE with every repeated lookup made once. Over the ServiceNow simulator, no mocks."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, cast

import pytest

from shared import services as services_module
from shared.services import Services
from shared.store import TicketStore
from shared.tenant_records import DOCUMENT as TENANTS
from tests.conftest import Harness
from tests.routes_support import body, create, preview, put_routes

# Patterns Python's `re` backtracks on exponentially (each matched against a 40-character id for minutes); the
# validator before RE2 let every one of them through.
BACKTRACKING = [".?" * 32 + "_", "(?:a|.)" * 20 + "_", "[a-z]?" * 30 + "_", ".{0,1}" * 20 + "_", ".*.*.*.*_"]
HANG_GUARD = 20.0  # seconds: not a benchmark (RE2 takes microseconds); Python's re takes minutes on these


def _finishes(action: Any) -> tuple[float, Any]:
    """How long `action` took and what it returned. A hang guard only: what separates RE2 from a backtracking
    match here is microseconds against minutes."""
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


@pytest.mark.parametrize("pattern", BACKTRACKING)
def test_a_pattern_that_backtracks_in_python_is_taken_and_a_create_that_reaches_it_is_not_held(connected, pattern):
    rules = [{"name": "trap", "match": {"controls": [pattern]}, "set": {"priority": "low"}},
             {"name": "everything else", "set": {"priority": "high"}}]  # fmt: skip
    saved = put_routes(connected, rules)
    assert saved.status_code == 200, saved.get_body()
    control = "a" * 40  # reaches the first rule and never matches it (no '_')
    payload: dict[str, Any] = {"name": "Bounded", "recommendation": {"id": control, "source": "user",
                                                                     "category": "Identity"}}  # fmt: skip
    seconds, (status, ticket) = _finishes(lambda: create(connected, payload))
    assert status == 201, ticket
    assert ticket["route"]["name"] == "everything else"
    assert seconds < HANG_GUARD
    matched = {**payload, "recommendation": {**payload["recommendation"], "id": "a" * 20 + "_"}}
    status, ticket = create(connected, matched)
    assert status == 201 and ticket["route"]["name"] == "trap" and ticket["priority"] == "low"


def test_a_match_never_holds_the_other_requests(connected):
    """A create matching `.?`x32 `_` held the interpreter: a `GET /api/me` sent meanwhile waited as long."""
    saved = put_routes(connected, [{"match": {"controls": [".?" * 32 + "_"]}, "set": {"priority": "low"}}])
    assert saved.status_code == 200, saved.get_body()
    payload = {"name": "Bounded", "recommendation": {"id": "b" * 40, "source": "user", "category": "Identity"}}
    done: dict[str, float] = {}

    def creating() -> None:
        create(connected, payload)
        done["create"] = time.monotonic()

    started = time.monotonic()
    worker = threading.Thread(target=creating, daemon=True)
    worker.start()
    me = connected.call("me", path="/me")
    answered = time.monotonic() - started
    worker.join(HANG_GUARD)
    assert me.status_code == 200 and answered < HANG_GUARD
    assert "create" in done


@pytest.mark.parametrize("pattern", [r"(\w+)\1", "(?=Admin)Admin.*", "(?<!x)y", "(a)?(?(1)b|c)", "a++"])
def test_what_re2_cannot_run_is_validation_failed_naming_the_pattern(connected, pattern):
    response = put_routes(connected, [{"match": {"controls": ["aad_.*", pattern]}}])
    assert response.status_code == 400, response.get_body()
    (error,) = body(response)["errors"]
    assert error["field"] == "routes[0].match.controls[1]" and "RE2" in error["message"]
    assert body(preview(connected, [{"match": {"controls": [pattern]}}]))["code"] == "validation_failed"


# -- item 5: a name ServiceNow would run as script ------------------------------------------------------------


@pytest.mark.parametrize("member", ["assignmentGroup", "company"])
@pytest.mark.parametrize("name", ["javascript:gs.getUserID()", "JavaScript:new GlideRecord('sys_user')",
                                  "JAVASCRIPT:1"])  # fmt: skip
def test_a_group_or_company_name_starting_with_javascript_never_reaches_servicenow(connected, member, name):
    connected.simulator.requests.clear()
    response = put_routes(connected, [{"set": {member: name}}])
    assert response.status_code == 400, response.get_body()
    (error,) = body(response)["errors"]
    assert error["field"] == f"routes[0].set.{member}" and "javascript:" in error["message"]
    queries = [r.query.get("sysparm_query", "") for r in connected.simulator.requests]
    assert not any("javascript" in q.lower() for q in queries), queries
    assert body(preview(connected, [{"set": {member: name}}]))["code"] == "validation_failed"
    assert not any("javascript" in r.query.get("sysparm_query", "").lower() for r in connected.simulator.requests)


# -- item 6: a deadline, and each lookup once ----------------------------------------------------------------


def test_saving_and_previewing_stop_at_the_routes_deadline_with_nothing_saved(connected):
    connected.services.routes_deadline = 0.0  # the deadline has passed before the first rule is checked
    rules = [{"name": f"rule {i}", "match": {"controls": [f"R{i}_.*"]}} for i in range(20)]
    response = put_routes(connected, rules)
    assert response.status_code == 422, response.get_body()
    problem = body(response)
    assert problem["code"] == "deadline_exceeded" and "ROUTES_DEADLINE" in problem["detail"]
    assert "smaller" in problem["remediation"]
    assert body(connected.call("get_routes", path="/routes"))["routes"] == []
    previewed = preview(connected, rules)
    assert previewed.status_code == 422 and body(previewed)["code"] == "deadline_exceeded"


class CountingStore:
    """The real store, with its Secure Score reads counted by tenant (what a request asks of the store)."""

    def __init__(self, store: TicketStore) -> None:
        self._store = store
        self.snapshots: Counter[str] = Counter()

    def get_secure_score(self, tenant: str = "") -> Any:
        self.snapshots[tenant] += 1
        return self._store.get_secure_score(tenant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_repeated_lookups_within_one_save_are_made_once(connected: Harness):
    """`_Context.home_id()` read the home snapshot once per tenant id named in any rule: 2,000 ids, 2,000 reads."""
    tenants = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(1, 201)]
    connected.services.store.put_document(TENANTS, {"tenants": {t: {"id": t, "state": "active"} for t in tenants}},
                                          None)  # fmt: skip
    counting = CountingStore(connected.services.store)
    old = connected.services
    services_module.install(Services(old.settings, transport=connected.transport, store=cast(TicketStore, counting),
                                     secrets=old.secrets, clock=connected.clock))  # fmt: skip
    rules = [{"name": f"rule {i}", "match": {"tenants": tenants, "services": ["AzureAD"], "categories": ["Apps1"]}}
             for i in range(10)]  # fmt: skip
    response = put_routes(connected, rules)
    assert response.status_code == 400  # no service or category is named by Secure Score here: that is not the point
    assert counting.snapshots[""] <= 2, counting.snapshots  # the home id once, the home snapshot's controls once
    assert max(counting.snapshots.values()) <= 2, counting.snapshots
