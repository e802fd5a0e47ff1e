"""Telemetry through OpenTelemetry: a span per ServiceNow call and the sync's results as metrics.

On only when Application Insights is configured (APPLICATIONINSIGHTS_CONNECTION_STRING); locally, and in
tests unless they install a provider, the OpenTelemetry API is a no-op. Attributes carry the method, table,
status and attempt: never a URL query, a header, a token or a secret.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SCOPE = "m365-servicenow-connector"
attempt_number: contextvars.ContextVar[int] = contextvars.ContextVar("servicenow_attempt", default=1)
_configured = False
_lock = threading.Lock()


def configure_telemetry(env: Mapping[str, str] | None = None) -> bool:
    """Export to Application Insights when it is configured; returns whether it is on."""
    global _configured
    env = os.environ if env is None else env
    connection = env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection:
        return False
    with _lock:
        if _configured:
            return True
        from azure.monitor.opentelemetry import configure_azure_monitor  # lazy: cold start

        credential = None
        if "Authorization=AAD" in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""):
            # Application Insights with local auth disabled takes only Entra ID: the app's managed identity.
            from azure.identity import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID") or None)
        configure_azure_monitor(
            connection_string=connection,
            credential=credential,
            disable_logging=True,  # the Functions host already ships the logs
            enable_live_metrics=False,  # no extra connection to the live-metrics service
            sampling_ratio=1.0,  # every ServiceNow call: they are few, and each matters when debugging
            instrumentation_options={"httpx": {"enabled": False}},  # our own span per call says more
        )
        _configured = True
    log.info("Telemetry goes to Application Insights")
    return True


@contextmanager
def servicenow_span(method: str, url: str) -> Iterator[Any]:
    """A client span for one ServiceNow request; the caller sets the status on the yielded span. `url.full`
    leaves the query out (it carries record values); without it Application Insights names every call "GET /"."""
    from opentelemetry import trace

    parts = urlsplit(url)
    path, scheme, host = parts.path, parts.scheme, parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    table = path.rsplit("/table/", 1)[1].split("/", 1)[0] if "/table/" in path else path.strip("/")
    tracer = trace.get_tracer(SCOPE)
    with tracer.start_as_current_span(
        f"ServiceNow {method} {table}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": method,
            "url.full": f"{scheme}://{host}{f':{parts.port}' if parts.port else ''}{path}",
            "url.scheme": scheme,
            "server.address": host,
            "server.port": port,
            "servicenow.table": table,
            "servicenow.attempt": attempt_number.get(),
        },
    ) as span:
        yield span


def record_sync(result: Mapping[str, Any]) -> None:
    """The sync's outcome as metrics (counts and duration), tagged by status."""
    from opentelemetry import metrics

    meter = metrics.get_meter(SCOPE)
    attributes = {"status": str(result.get("status"))}
    for name in ("changed", "adopted", "resumed", "missing", "requests"):
        meter.create_counter(f"servicenow.sync.{name}").add(int(result.get(name) or 0), attributes)
    meter.create_counter("servicenow.sync.errors").add(len(result.get("errors") or []), attributes)
    meter.create_histogram("servicenow.sync.duration", unit="ms").record(int(result.get("durationMs") or 0), attributes)
