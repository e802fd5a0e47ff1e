"""Telemetry: a span per ServiceNow call (method, table, status, attempt), sync metrics, never a secret;
exported to Application Insights only when it is configured."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dev.servicenow import Fault, serve
from dev.wire import SimRequest, SimResponse
from shared import services as services_module
from status_sync.sync import StatusSync
from tests.conftest import ROOT, Harness
from tests.create_ticket.test_tickets import post

_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()


@pytest.fixture(scope="session")
def otel() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """An OpenTelemetry SDK that keeps what it records in memory (installed once per process)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    return _EXPORTER, _READER


@pytest.fixture
def spans(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> Iterator[InMemorySpanExporter]:
    otel[0].clear()
    yield otel[0]


def test_a_span_per_servicenow_call_with_method_table_status_and_attempt(connected: Harness, spans):
    connected.simulator.inject(Fault("status", status=429, method="POST", path_prefix="/api/now/v2/table/incident"))
    assert post(connected)[0] == 201
    calls = [(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()]
    posts = [a for name, a in calls if name == "ServiceNow POST incident"]
    assert [(a["servicenow.attempt"], a["http.response.status_code"]) for a in posts] == [(1, 429), (2, 201)]
    assert all(a["servicenow.table"] == "incident" and a["http.request.method"] == "POST" for a in posts)
    assert any(name == "ServiceNow GET sys_user" for name, _ in calls)


def test_no_secret_in_any_span(connected: Harness, spans):
    connected.clock.advance(minutes=31)  # a refresh, too
    post(connected)
    secrets = {
        *connected.simulator.access_tokens,
        *connected.simulator.refresh_tokens,
        "sim-client-secret-9f8e7d6c5b4a",
    }
    recorded = json.dumps([(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()])
    assert "oauth_token.do" in recorded  # the refresh was traced...
    assert not any(secret in recorded for secret in secrets)  # ...without what it carried
    assert "Bearer" not in recorded and "sysparm_query" not in recorded


def test_sync_results_are_metrics(connected: Harness, otel):
    post(connected)
    StatusSync(connected.services).run()
    data = otel[1].get_metrics_data()
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"servicenow.sync.changed", "servicenow.sync.requests", "servicenow.sync.duration"} <= names


def test_telemetry_is_off_without_application_insights() -> None:
    code = (
        "from shared.telemetry import configure_telemetry; import sys; "
        "print(configure_telemetry({}), 'azure.monitor' in ' '.join(sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"]


class Ingestion:
    """Application Insights' ingestion endpoint on loopback: keeps every telemetry item it is sent."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def bind(self, base_url: str) -> None:
        return

    def handle(self, request: SimRequest) -> SimResponse:
        items = json.loads(request.body)
        self.items.extend(items)
        return SimResponse.json(200, {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})


def connect_and_create_with_application_insights(ingestion: str) -> None:
    """In a fresh process (a global provider can be set once): connect, then create a ticket through a 429 and
    a dropped connection; print every request the connector sent ServiceNow (the browser's consent aside)."""
    from opentelemetry import trace as api

    from dev.graph import GraphSimulator
    from dev.servicenow import ServiceNowSimulator, SimulatorTransport
    from shared.telemetry import configure_telemetry
    from tests.conftest import CLIENT_ID, CLIENT_SECRET, INSTANCE, REDIRECT_URI, Clock, Sleeps, build_services
    from tests.indexing import indexed

    key = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    assert configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": f"{key};IngestionEndpoint={ingestion}/"})
    clock, sleeps = Clock(), Sleeps()
    simulator = ServiceNowSimulator(INSTANCE, clock=clock.epoch)
    simulator.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    simulator.auto_approve = True
    transport = SimulatorTransport(simulator)
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Path(tmp), transport, clock, sleeps)
        services_module.install(services)
        graph = GraphSimulator(clock=clock.epoch)
        harness = Harness(services, simulator, transport, graph, clock, sleeps, indexed(), Path(tmp))
        assert harness.connect().status_code == 200
        simulator.inject(Fault("status", status=429, method="POST", path_prefix="/api/now/v2/table/incident"))
        simulator.inject(Fault("drop", method="GET", path_prefix="/api/now/v2/table/sys_user"))
        assert post(harness)[0] == 201
        services.close()
    api.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    sent = [(r.method, r.path) for r in simulator.requests if r.path not in ("/oauth_auth.do", "/login.do")]
    print(json.dumps(sent))


def test_with_application_insights_configured_every_servicenow_call_is_recorded(tmp_path: Path) -> None:
    """Every request the connector sends ServiceNow (token, whoami, lookups, retries, a dropped one) arrives at
    the Application Insights ingestion endpoint as one dependency, with its attempt."""
    ingestion = Ingestion()
    server, url = serve(ingestion)
    code = f"from tests.shared.test_telemetry import connect_and_create_with_application_insights as run; run({url!r})"
    # TMPDIR: the exporter's offline store (what it could not send, re-sent by the next process) is this test's own.
    env = {"PATH": "/usr/bin:/bin", "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "TMPDIR": str(tmp_path)}
    try:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr[-3000:]
    sent = sorted(f"{method} {path}" for method, path in json.loads(result.stdout.splitlines()[-1]))
    recorded = [i["data"]["baseData"] for i in ingestion.items if i["data"]["baseType"] == "RemoteDependencyData"]
    assert sorted(d["name"] for d in recorded) == sent  # one dependency per request, named by its path
    assert {(d["type"], d["target"]) for d in recorded} == {("HTTP", "contoso.service-now.com")}
    calls = sorted((d["properties"]["servicenow.table"], d["properties"]["servicenow.attempt"], d["resultCode"])
                   for d in recorded)  # fmt: skip
    assert calls == [
        ("incident", "1", "429"), ("incident", "2", "201"),  # the create, refused once for the rate limit
        ("oauth_token.do", "1", "200"),  # the code exchange
        ("sys_user", "1", "0"), ("sys_user", "1", "200"), ("sys_user", "2", "200"),  # whoami; a lookup, dropped once
    ]  # fmt: skip
