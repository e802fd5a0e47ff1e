"""Helpers for the routes tests: the routes API called as the worker calls it, and a second ServiceNow instance
(another simulator with its own OAuth client) added as a connection the way the store keeps one: its record in the
`connections` document and its client secret under its own secret name."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from dev.servicenow import ServiceNowSimulator, SimulatorTransport
from dev.wire import SimRequest, SimResponse
from tests.conftest import REDIRECT_URI, Clock, Harness

SECOND = "fabrikam"
SECOND_INSTANCE = "https://fabrikam.service-now.com"
SECOND_CLIENT = "5f7e1a9c0b2d4e6f8a1b3c5d7e9f0a2b"
SECOND_SECRET = "sim-second-secret-0a1b2c3d4e5f"


class Instances:
    """Several simulated instances behind one transport, each answering for its own host."""

    def __init__(self, *simulators: ServiceNowSimulator) -> None:
        self.by_host = {urlsplit(s.instance_url).netloc: s for s in simulators}
        self.instance_url = simulators[0].instance_url

    def handle(self, request: SimRequest) -> SimResponse:
        return self.by_host[urlsplit(request.url).netloc].handle(request)

    def bind(self, base_url: str) -> None:  # in process only: the instances keep their own URLs
        return None


def body(response: Any) -> Any:
    return json.loads(response.get_body() or b"null")


def get_routes(harness: Harness, headers: dict[str, str] | None = None) -> Any:
    return harness.call("get_routes", path="/routes", headers=headers)


def put_routes(harness: Harness, routes: Any, if_match: str | None = "current", **headers: str) -> Any:
    """PUT the list; `if_match` "current" sends the version GET gives now, None sends no If-Match at all."""
    sent = dict(headers)
    if if_match == "current":
        sent["If-Match"] = get_routes(harness, dict(headers)).headers["ETag"]
    elif if_match is not None:
        sent["If-Match"] = if_match
    payload = routes if isinstance(routes, bytes) else json.dumps({"routes": routes}).encode()
    return harness.call("put_routes", "PUT", "/routes", body=payload, headers=sent)


def saved(harness: Harness, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = put_routes(harness, routes)
    assert response.status_code == 200, response.get_body()
    return list(body(response)["routes"])


def preview(harness: Harness, routes: Any, headers: dict[str, str] | None = None) -> Any:
    return harness.call("preview_routes", "POST", "/routes/preview", body=json.dumps({"routes": routes}).encode(),
                        headers=headers)  # fmt: skip


def create(harness: Harness, payload: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    response = harness.call("create_ticket", "POST", "/tickets", body=json.dumps(payload).encode(), headers=headers)
    return response.status_code, body(response)


def add_second(harness: Harness, simulator: ServiceNowSimulator, table: str = "incident") -> None:
    """Register the second instance as the connection `fabrikam` (not yet authorized)."""
    simulator.register_client(SECOND_CLIENT, SECOND_SECRET, [REDIRECT_URI])
    simulator.auto_approve = True
    record = {"id": SECOND, "instance": SECOND_INSTANCE, "clientId": SECOND_CLIENT, "table": table}
    harness.services.store.put_document("connections", {"connections": {SECOND: record}}, None)
    harness.services.secrets.set(f"servicenow-client-secret-{SECOND}", SECOND_SECRET)


def connect_second(harness: Harness) -> None:
    """The browser journey for the second connection: /api/connect?connection=, its consent, the one callback."""
    start = harness.call("connect", path="/connect", params={"connection": SECOND})
    assert start.status_code == 302, start.get_body()
    assert start.headers["Location"].startswith(SECOND_INSTANCE)
    with httpx.Client(transport=harness.transport) as browser:
        consent = browser.get(start.headers["Location"])
    assert consent.status_code == 302, consent.text
    done = harness.callback(dict(parse_qsl(urlsplit(consent.headers["Location"]).query)))
    assert done.status_code == 200, done.get_body()


def two_instances(first: ServiceNowSimulator, second: ServiceNowSimulator) -> SimulatorTransport:
    return SimulatorTransport(Instances(first, second))


@pytest.fixture(name="second")
def second_simulator(clock: Clock) -> ServiceNowSimulator:
    """The second instance (import it, with `two_instances_transport`, into a test module that needs both)."""
    return ServiceNowSimulator(SECOND_INSTANCE, clock=clock.epoch)


@pytest.fixture(name="transport")
def two_instances_transport(simulator: ServiceNowSimulator, second: ServiceNowSimulator) -> SimulatorTransport:
    """The harness's transport answering for both instances."""
    return two_instances(simulator, second)
