"""Helpers shared by the benchmarks: an in-process simulator that times itself (to leave the remote service's
own time out of ours), and a connector already connected to it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from dev.graph.identity import APP_ID
from dev.servicenow import ServiceNowSimulator, SimulatorTransport
from dev.servicenow.state import ADMIN_SYS_ID, Grant
from dev.wire.transport import Simulated
from shared.config import load_settings
from shared.secrets import FileSecretStore
from shared.services import Services, utcnow
from shared.store import SqliteTicketStore, TicketStore
from shared.tokens import TokenBundle

INSTANCE = "https://bench.service-now.com"
CLIENT_ID = "bench"
CLIENT_SECRET = "bench-secret"  # noqa: S105
REDIRECT_URI = "https://bench.example/api/oauth/callback"


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


@dataclass
class TimedServiceNow:
    services: Services
    simulator: ServiceNowSimulator
    transport: TimedTransport


class ManualClock:
    """One time base for the connector and the simulator, moved by the benchmark instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def timed_servicenow(
    directory: Path,
    *,
    store: TicketStore | None = None,
    graph_transport: httpx.BaseTransport | None = None,
    clock: ManualClock | None = None,
    **env: str,
) -> TimedServiceNow:
    """A connector on an in-process ServiceNow simulator, already holding a token the simulator accepts, with
    its store in `directory` unless one is given (and both on `clock`, when one is given); `env`: more settings."""
    simulator = ServiceNowSimulator(INSTANCE, clock=clock.epoch if clock else time.time)
    simulator.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    transport = TimedTransport(simulator)
    settings = load_settings(
        {"SERVICENOW_INSTANCE": INSTANCE, "SERVICENOW_CLIENT_ID": CLIENT_ID, "SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,
         "OAUTH_REDIRECT_URI": REDIRECT_URI, "AZURE_CLIENT_ID": APP_ID, **env}
    )  # fmt: skip
    services = Services(
        settings,
        transport=transport,
        graph_transport=graph_transport,
        store=store or SqliteTicketStore(directory / "store.db"),
        secrets=FileSecretStore(directory / "secrets.json"),
        clock=clock or utcnow,
    )
    now = clock() if clock else datetime.now(UTC).replace(microsecond=0)
    access = uuid.uuid4().hex  # valid for the whole run
    simulator.access_tokens[access] = Grant(ADMIN_SYS_ID, CLIENT_ID, now.timestamp() + 30 * 86400)
    services.tokens.save(
        TokenBundle(access, "refresh", now + timedelta(days=30), now + timedelta(days=90), INSTANCE, now, CLIENT_ID)
    )
    return TimedServiceNow(services, simulator, transport)


@contextmanager
def environment_kept(names: Iterable[str]) -> Iterator[None]:
    """The environment variables `names` as they were before, whatever a benchmark set meanwhile."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
