"""No caller text reaches an encoded query: hostile recommendation ids and requesters are refused before
any request leaves, and accepted values can only ever fill the connector's own query shapes."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Harness
from tests.create_ticket.test_tickets import BODY

BREAKOUTS = ["^", "^NQ", "^OR", ",", "@", "\r", "\n", "é", "\u202e", "=", " ", "%5E", "javascript:gs.getUserID()"]
SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
hostile_text = st.builds(
    lambda prefix, breakout, suffix: prefix + breakout + suffix,
    st.text(max_size=20),
    st.sampled_from(BREAKOUTS),
    st.text(max_size=20),
)
FIXTURE_OK = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def _create(harness: Harness, body: dict[str, Any]) -> int:
    response = harness.call("create_ticket", "POST", "/tickets", body=json.dumps(body).encode())
    return int(response.status_code)


@FIXTURE_OK
@given(hostile_text)
def test_hostile_recommendation_ids_are_refused_before_anything_is_sent(connected, value):
    connected.simulator.requests.clear()
    status = _create(connected, {**BODY, "recommendation": {**BODY["recommendation"], "id": value}})
    assert status == 400
    assert connected.simulator.requests == []


@FIXTURE_OK
@given(hostile_text.filter(lambda v: not re.fullmatch(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+", v)))
def test_hostile_requesters_are_refused_before_anything_is_sent(connected, value):
    connected.simulator.requests.clear()
    assert _create(connected, {**BODY, "requestedBy": value}) == 400
    assert connected.simulator.requests == []


def test_accepted_values_only_fill_the_connectors_own_query_shapes(connected):
    shapes: Counter[str] = Counter()

    @FIXTURE_OK
    @given(st.from_regex(SAFE_ID, fullmatch=True), st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True))
    def create(recommendation_id: str, user: str) -> None:
        connected.simulator.requests.clear()
        connected.simulator.chaos_rate = 0.5  # ambiguous failures make the connector look records up
        body = {**BODY, "requestedBy": user, "recommendation": {**BODY["recommendation"], "id": recommendation_id}}
        status = _create(connected, body)
        connected.simulator.chaos_rate = 0.0
        # Made, found, or ServiceNow's failure (a 409 is an earlier try of the same id still in doubt after a
        # dropped POST: docs/architecture.md, creates in doubt): never refused.
        assert status in (200, 201, 409, 502, 503), status
        lookup = re.compile(rf"correlation_id=m365sec:{re.escape(recommendation_id)}\^descriptionLIKE[0-9a-f]{{32}}")
        for request in connected.simulator.requests:
            query = dict(parse_qsl(urlsplit(request.url).query)).get("sysparm_query")
            if query is None:
                continue
            assert query == f"user_name={user}" or lookup.fullmatch(query), query
            shapes["user" if query.startswith("user_name=") else "record"] += 1

    create()
    assert shapes["user"] and shapes["record"], shapes  # both query shapes were sent, and checked
