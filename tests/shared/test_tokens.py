"""Token lifecycle: cache, single-flight refresh, one refresh and one retry on 401, reauthorization."""

from __future__ import annotations

import json

import pytest

from dev.servicenow import Fault
from shared.problems import ReauthorizationRequired, ServiceNowRejected
from shared.secrets import TOKEN_BUNDLE
from tests.conftest import Harness, concurrently
from tests.create_ticket.test_tickets import post


def _refreshes(harness: Harness) -> int:
    return sum(1 for r in harness.simulator.requests if r.path == "/oauth_token.do" and "refresh_token" in r.form())


def _table_calls(harness: Harness) -> int:
    return sum(1 for r in harness.simulator.requests if r.path.startswith("/api/now/"))


def _list(harness: Harness) -> list[dict[str, object]]:
    rows, _ = harness.services.servicenow.table_list(harness.services.tokens, "incident", {"sysparm_limit": "1"})
    return rows


def test_the_access_token_is_cached_until_five_minutes_before_expiry(connected):
    for _ in range(5):
        _list(connected)
    assert _refreshes(connected) == 0
    connected.clock.advance(seconds=1799 - 301)
    _list(connected)
    assert _refreshes(connected) == 0
    connected.clock.advance(seconds=2)
    _list(connected)
    assert _refreshes(connected) == 1


def test_twenty_threads_on_an_expired_token_cause_one_refresh(connected):
    connected.clock.advance(minutes=31)
    concurrently(20, lambda _: _list(connected))  # any error is raised here
    assert _refreshes(connected) == 1


def test_a_refresh_keeps_the_same_refresh_token_and_its_expiry(connected):
    before = json.loads(connected.services.secrets.get(TOKEN_BUNDLE) or "{}")
    connected.clock.advance(minutes=40)
    _list(connected)
    after = json.loads(connected.services.secrets.get(TOKEN_BUNDLE) or "{}")
    assert after["refresh_token"] == before["refresh_token"]
    assert after["refresh_expires_at"] == before["refresh_expires_at"]
    assert after["access_token"] != before["access_token"]


def test_a_table_api_401_causes_one_refresh_and_one_retry(connected):
    bundle = json.loads(connected.services.secrets.get(TOKEN_BUNDLE) or "{}")
    connected.simulator.access_tokens[bundle["access_token"]].revoked = True
    _list(connected)
    assert _refreshes(connected) == 1
    assert _table_calls(connected) == 2


def test_a_persistent_401_is_not_retried_in_a_loop(connected):
    connected.simulator.inject(Fault("status", status=401, times=1000))
    with pytest.raises(ServiceNowRejected) as raised:
        _list(connected)
    assert "integration user" in (raised.value.remediation or "")
    assert _refreshes(connected) == 1
    assert _table_calls(connected) == 2


def test_a_rejected_refresh_token_requires_reauthorization(connected):
    connected.simulator.revoke_all()
    connected.clock.advance(minutes=31)
    with pytest.raises(ReauthorizationRequired):
        _list(connected)
    with pytest.raises(ReauthorizationRequired):
        _list(connected)
    assert _refreshes(connected) == 1  # the second call does not ask again
    assert json.loads(connected.services.secrets.get(TOKEN_BUNDLE) or "{}")["refresh_rejected_at"]
    status = json.loads(connected.call("provisioning").get_body())
    assert status["state"] == "reauthorization_required"
    assert "/api/connect" in status["checks"][-1]["remediation"]
    # The HTTP surface answers the stable problem code.
    revoked = connected.call("provisioning", params={"live": "true"})
    assert json.loads(revoked.get_body())["state"] == "reauthorization_required"


def test_reconnecting_clears_reauthorization(connected):
    connected.simulator.revoke_all()
    connected.clock.advance(minutes=31)
    with pytest.raises(ReauthorizationRequired):
        _list(connected)
    assert connected.connect().status_code == 200
    _list(connected)
    assert json.loads(connected.call("provisioning").get_body())["state"] == "connected"


def test_an_expired_refresh_token_requires_reauthorization_without_asking(connected):
    connected.clock.advance(days=101)
    with pytest.raises(ReauthorizationRequired):
        _list(connected)
    assert _refreshes(connected) == 0


def test_a_transient_refresh_failure_uses_the_still_valid_token(connected):
    status, created = post(connected)  # a record for the read to return
    assert status == 201
    still_valid = json.loads(connected.services.secrets.get(TOKEN_BUNDLE) or "{}")["access_token"]
    connected.simulator.requests.clear()
    connected.clock.advance(seconds=1799 - 120)  # inside the early-refresh window, not yet expired
    connected.simulator.inject(Fault("status", status=503, path_prefix="/oauth_token.do", times=10))
    assert [row["sys_id"] for row in _list(connected)] == [created["sysId"]]
    (read,) = [r for r in connected.simulator.requests if r.path.startswith("/api/now/")]
    assert read.headers["authorization"] == f"Bearer {still_valid}"
    assert _refreshes(connected) == 5  # one call's retries, then the still-valid token


def test_tokens_from_another_instance_are_not_used(connected, tmp_path):
    from shared import services as services_module
    from tests.conftest import build_services

    other = build_services(
        connected.tmp,
        connected.transport,
        connected.clock,
        connected.sleeps,
        SERVICENOW_INSTANCE="https://fabrikam.service-now.com",
    )
    services_module.install(other)
    with pytest.raises(ReauthorizationRequired):
        other.servicenow.table_list(other.tokens, "incident", {})
    assert json.loads(connected.call("provisioning").get_body())["state"] == "reauthorization_required"
    assert _table_calls(connected) == 0


def test_servicenow_returning_the_current_token_does_not_cause_a_refresh_per_call(connected):
    """A refresh inside the early window gets the same token back (ServiceNow's rule): keep it to its end."""
    connected.clock.advance(seconds=1799 - 200)  # inside the five-minute window
    for _ in range(20):
        _list(connected)
        connected.clock.advance(seconds=5)
    assert _refreshes(connected) == 1
    connected.clock.advance(seconds=200)  # now really expired
    _list(connected)
    assert _refreshes(connected) == 2


def test_a_ten_second_access_token_lifespan(harness):
    """The expiry path with a 10 s token: a call every second for a minute, no error reaches the caller,
    and refreshes stay at a few per lifespan (early, then the same token to its end, then a new one),
    not one per call."""
    harness.simulator.clients[next(iter(harness.simulator.clients))].access_ttl = 10
    assert harness.connect().status_code == 200
    harness.simulator.requests.clear()
    for _ in range(60):
        _list(harness)
        harness.clock.advance(seconds=1)
    assert 6 <= _refreshes(harness) <= 20
    table_calls = [r for r in harness.simulator.requests if r.path.startswith("/api/now/")]
    assert len(table_calls) == 60  # no call needed a retry: the token was never used past its expiry
