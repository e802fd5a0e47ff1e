"""Telemetry: a span per ServiceNow call (method, table, status, attempt), sync metrics, never a secret;
exported to Application Insights only when it is configured."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dev.simulator import Fault
from shared.sync import StatusSync
from tests.conftest import ROOT, Harness
from tests.test_tickets import post

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


def test_with_application_insights_configured_every_servicenow_call_is_recorded() -> None:
    """In a fresh process (a global provider can be set once), pointed at a loopback ingestion endpoint."""
    code = (
        "from shared.telemetry import configure_telemetry, servicenow_span\n"
        "assert configure_telemetry({'APPLICATIONINSIGHTS_CONNECTION_STRING': "
        "'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/'})\n"
        "with servicenow_span('GET', '/api/now/v2/table/incident', 'contoso.service-now.com') as span:\n"
        "    print(span.is_recording(), span.name)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == "True ServiceNow GET incident"
