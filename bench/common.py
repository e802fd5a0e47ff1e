"""Helpers shared by the benchmarks: a connected connector on the loopback simulator, and percentiles."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from dev.simulator import ServiceNowSimulator, SimulatorTransport, serve
from dev.simulator.transport import Simulated
from shared.auth import LOCAL_CALLER
from shared.config import load_settings
from shared.connection import finish_callback, start_connect
from shared.secrets import FileSecretStore
from shared.services import Services
from shared.store import SqliteTicketStore

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"  # noqa: S105
REDIRECT_URI = "http://localhost:7071/api/oauth/callback"


@dataclass
class Rig:
    simulator: ServiceNowSimulator
    services: Services
    instance: str


@contextmanager
def connected_rig() -> Iterator[Rig]:
    simulator = ServiceNowSimulator()
    server, instance = serve(simulator)
    simulator.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    simulator.auto_approve = True
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "SERVICENOW_INSTANCE": instance,
                "SERVICENOW_CLIENT_ID": CLIENT_ID,
                "SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,
                "OAUTH_REDIRECT_URI": REDIRECT_URI,
            }
        )
        services = Services(
            settings, store=SqliteTicketStore(Path(tmp) / "store.db"), secrets=FileSecretStore(Path(tmp) / "s.json")
        )
        start = start_connect(services, LOCAL_CALLER)
        with httpx.Client() as browser:
            callback = browser.get(start.location).headers["Location"]
        cookie = start.cookie.split(";", 1)[0]  # what the browser sends back to the callback
        outcome = finish_callback(services, dict(parse_qsl(urlsplit(callback).query)), cookie)
        assert outcome.ok, outcome.message
        try:
            yield Rig(simulator, services, instance)
        finally:
            services.close()
            server.shutdown()
            server.server_close()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> str:
    return (
        f"p50 {percentile(samples, 50) * 1000:7.2f} ms   p99 {percentile(samples, 99) * 1000:7.2f} ms   "
        f"mean {statistics.fmean(samples) * 1000:7.2f} ms"
    )


class TimedTransport(SimulatorTransport):
    """Counts requests and the time spent inside a simulator (the remote service), to leave it out of ours."""

    def __init__(self, simulator: Simulated) -> None:
        super().__init__(simulator)
        self.count = 0
        self.server_seconds = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        started = time.perf_counter()
        try:
            return super().handle_request(request)
        finally:
            self.server_seconds += time.perf_counter() - started
