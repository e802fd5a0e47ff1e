"""A Secure Score refresh reports the Graph requests it really made, also when it fails halfway (issue 17): the
count is taken as requests go out (graph.RequestCount), not computed after both reads succeed."""

from __future__ import annotations

from typing import Any

import pytest

from dev.graph.simulator import PROFILES
from dev.servicenow import Fault
from secure_score.refresh import RUN_DOCUMENT, SecureScoreRefresh
from shared.problems import SecureScoreUnavailable
from tests.conftest import Harness


def _last_run(harness: Harness) -> dict[str, Any]:
    found = harness.services.store.get_document(RUN_DOCUMENT)
    assert found is not None
    return dict(found[0]["last"])


def test_a_refresh_reports_the_requests_graph_received(harness: Harness) -> None:
    result = SecureScoreRefresh(harness.services).refresh()
    assert result.status == "ok"
    assert result.requests == len(harness.graph.requests) > 2  # the scores and every page of the profiles


def test_a_refresh_that_fails_halfway_reports_the_requests_it_made(harness: Harness) -> None:
    harness.graph.inject(Fault("status", status=503, path_prefix=PROFILES, after=1, times=100))
    with pytest.raises(SecureScoreUnavailable):
        SecureScoreRefresh(harness.services).refresh()
    last = _last_run(harness)
    assert last["status"] == "failed"
    made = len(harness.graph.requests)  # the scores, the first page, then the second page and its retries
    assert made > 3 and last["requests"] == made
