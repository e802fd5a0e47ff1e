"""Helpers for the alerts tests: the alerts API called as the worker calls it, a score set per day in the Graph
simulator, and a refresh."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Harness
from tests.shared.test_signin import principal

ADMIN = {"X-MS-CLIENT-PRINCIPAL": principal("admin@contoso.com", ("Connector.Admin",))}
READER = {"X-MS-CLIENT-PRINCIPAL": principal("reader@contoso.com", ())}
INCIDENTS = "/api/now/v2/table/incident"


def body(response: Any) -> Any:
    return json.loads(response.get_body() or b"null")


def get_alerts(harness: Harness, headers: dict[str, str] | None = None) -> Any:
    return harness.call("list_alerts", path="/alerts", headers=headers)


def put_alerts(harness: Harness, alerts: Any, if_match: str | None = "current", **headers: str) -> Any:
    """PUT the list; `if_match` "current" sends the version GET gives now, None sends no If-Match at all."""
    sent = dict(headers)
    if if_match == "current":
        sent["If-Match"] = get_alerts(harness, dict(headers)).headers["ETag"]
    elif if_match is not None:
        sent["If-Match"] = if_match
    payload = alerts if isinstance(alerts, bytes) else json.dumps({"alerts": alerts}).encode()
    return harness.call("put_alerts", "PUT", "/alerts", body=payload, headers=sent)


def saved(harness: Harness, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    response = put_alerts(harness, alerts)
    assert response.status_code == 200, response.get_body()
    return dict(body(response))


def errors_of(response: Any) -> dict[str, str]:
    problem = body(response)
    assert response.status_code == 400 and problem["code"] == "validation_failed", problem
    return {e["field"]: e["message"] for e in problem["errors"]}


def refresh(harness: Harness) -> dict[str, Any]:
    response = harness.call("refresh_recommendations", "POST", "/recommendations/refresh")
    assert response.status_code == 200, response.get_body()
    return dict(body(response))


def posts(harness: Harness) -> int:
    return sum(1 for r in harness.simulator.requests if r.method == "POST" and r.path == INCIDENTS)


def alert_records(harness: Harness) -> list[dict[str, Any]]:
    return [r for r in harness.simulator.records() if "/alert/" in str(r.get("correlation_id")) or
            str(r.get("correlation_id")).startswith("m365sec:alert/")]  # fmt: skip


def episode(harness: Harness, alert_id: str, tenant: str = "home") -> dict[str, Any]:
    found = harness.services.store.get_document(f"alert-episode:{tenant}:{alert_id}")
    return dict(found[0]) if found else {}
