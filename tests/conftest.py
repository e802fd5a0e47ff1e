"""Shared fixtures. Fakes sit at the wire: the ServiceNow simulator (in process or on loopback), Azurite,
and the Key Vault HTTPS fake. Services are injected only at the app's composition point."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import azure.functions as func
import httpx
import pytest

from dev.graph import GraphSimulator, ManagedIdentity
from dev.graph.identity import APP_ID
from dev.host.azurite import Azurite, AzuriteUnavailable, azurite_tables
from dev.host.azurite import free_port as free_port  # for the tests
from dev.servicenow import ServiceNowSimulator, SimulatorTransport, serve
from shared import services as services_module
from shared.config import load_settings
from shared.retries import RetryPolicy
from shared.secrets import FileSecretStore
from shared.services import Services
from shared.store import SqliteTicketStore

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = "https://contoso.service-now.com"
CLIENT_ID = "3e57bb02663102004d010ee8f561307a"
CLIENT_SECRET = "sim-client-secret-9f8e7d6c5b4a"
REDIRECT_URI = "https://connector.example.net/api/oauth/callback"
IN_CI = os.environ.get("CI", "").lower() == "true"
PICTURES = os.environ.get("PICTURES") == "1"  # `make pictures`: the browser tests renew docs/images/
T = TypeVar("T")
_STARTED = time.time()


def docs_pictures() -> set[str]:
    """The names of the pictures README.md and docs/*.md show (docs/images/NAME.png)."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {name for doc in docs for name in re.findall(r"images/([\w-]+)\.png", doc.read_text(encoding="utf-8"))}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With PICTURES=1 every picture the docs show must come from this run: one the tests did not take fails it."""
    if not PICTURES:
        return
    images = ROOT / "docs" / "images"
    stale = sorted(n for n in docs_pictures() if not (images / f"{n}.png").exists()
                   or (images / f"{n}.png").stat().st_mtime < _STARTED)  # fmt: skip
    if stale:
        print(f"\nPICTURES: not renewed by this run (no browser test took them): {', '.join(stale)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def require_service(name: str, why: str) -> None:
    """A missing test service fails the run in CI and skips locally."""
    message = f"{name} is not available: {why}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a test that needs a service must not skip)")
    pytest.skip(message + " (skipped outside CI: run `make test` to install it)")


class Clock:
    """One time base for the connector and the simulator, moved by tests instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()

    def advance(self, **kwargs: float) -> None:
        with self._lock:
            self.now += timedelta(**kwargs)


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def settings_env(**overrides: str) -> dict[str, str]:
    env = {
        "SERVICENOW_INSTANCE": INSTANCE,
        "SERVICENOW_CLIENT_ID": CLIENT_ID,
        "SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,
        "OAUTH_REDIRECT_URI": REDIRECT_URI,
        "TICKET_STORE": "sqlite",
        "AZURE_CLIENT_ID": APP_ID,  # the user-assigned managed identity, as the deployment sets it
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def simulator(clock: Clock) -> ServiceNowSimulator:
    sim = ServiceNowSimulator(INSTANCE, clock=clock.epoch)
    sim.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    sim.auto_approve = True
    return sim


@pytest.fixture
def transport(simulator: ServiceNowSimulator) -> SimulatorTransport:
    return SimulatorTransport(simulator)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture(scope="session")
def identity() -> Iterator[ManagedIdentity]:
    """The App Service managed-identity endpoint on loopback, as DefaultAzureCredential finds it in Azure."""
    endpoint = ManagedIdentity()
    server, _ = serve(endpoint)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT",
                     "IMDS_ENDPOINT"):  # fmt: skip
            patch.delenv(name, raising=False)
        patch.setenv("IDENTITY_ENDPOINT", endpoint.endpoint)
        patch.setenv("IDENTITY_HEADER", endpoint.header)
        patch.setenv("AZURE_CLIENT_ID", endpoint.client_id)  # the user-assigned identity, as the deployment sets it
        yield endpoint
    server.shutdown()
    server.server_close()


@pytest.fixture
def graph(identity: ManagedIdentity, clock: Clock) -> GraphSimulator:
    return GraphSimulator(identity, clock=clock.epoch)


@contextlib.contextmanager
def served_graph(identity: ManagedIdentity) -> Iterator[tuple[GraphSimulator, str]]:
    """A Graph simulator on loopback (for the local host and `make run`), sharing the session's identity."""
    simulator = GraphSimulator(identity)
    server, url = serve(simulator)
    try:
        yield simulator, url
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Harness:
    """The app wired to the in-process simulator, plus helpers to call its functions like the worker."""

    services: Services
    simulator: ServiceNowSimulator
    transport: SimulatorTransport
    graph: GraphSimulator
    clock: Clock
    sleeps: Sleeps
    functions: dict[str, Any]
    tmp: Path
    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (value, path): a browser's jar

    def call(
        self,
        name: str,
        method: str = "GET",
        path: str = "/",
        params: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        route_params: dict[str, str] | None = None,
        content_type: str | None = "application/json",
    ) -> func.HttpResponse:
        """Call a function as the worker would. Like a JSON client, a body goes with `content_type` (None: no
        Content-Type header at all); cookies the app set are sent back where their path allows."""
        query = f"?{urlencode(params, errors='surrogatepass')}" if params else ""
        headers = dict(headers or {})
        if body and content_type is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        sent = "; ".join(f"{k}={v}" for k, (v, p) in self.cookies.items() if f"/api{path}".startswith(p))
        if sent and "Cookie" not in headers:
            headers["Cookie"] = sent
        request = func.HttpRequest(
            method=method,
            url=f"https://connector.example.net/api{path}{query}",
            headers=headers,
            params=params or {},
            route_params=route_params or {},
            body=body,
        )
        response: func.HttpResponse = self.functions[name].get_user_function()(request)
        self._keep_cookie(response.headers.get("Set-Cookie"))
        return response

    def _keep_cookie(self, header: str | None) -> None:
        if not header:
            return
        pair, *attributes = [part.strip() for part in header.split(";")]
        cookie, _, value = pair.partition("=")
        options = {k.lower(): v for k, _, v in (a.partition("=") for a in attributes)}
        if options.get("max-age") == "0":
            self.cookies.pop(cookie, None)
        else:
            self.cookies[cookie] = (value, options.get("path", "/"))

    def connect(self) -> func.HttpResponse:
        """The whole browser journey: /api/connect, ServiceNow's consent (auto-approved), the callback."""
        return self.callback(self.authorize())

    def authorize(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        """/api/connect (with `headers`) and ServiceNow's consent: the query the consent sends the browser back
        to the callback with (the flow's cookie is in the jar)."""
        start = self.call("connect", path="/connect", headers=headers)
        assert start.status_code == 302, start.get_body()
        with httpx.Client(transport=self.transport) as browser:
            consent = browser.get(start.headers["Location"])
        assert consent.status_code == 302, consent.text
        return dict(parse_qsl(urlsplit(consent.headers["Location"]).query))

    def callback(self, params: dict[str, str]) -> func.HttpResponse:
        return self.call("oauth_callback", path="/oauth/callback", params=params)


@pytest.fixture(scope="session")
def indexed_functions() -> dict[str, Any]:
    """`get_functions()` is not idempotent: index once per process, as the worker does."""
    from tests.indexing import indexed

    return indexed()


def build_services(
    tmp: Path,
    transport: httpx.BaseTransport | None,
    clock: Clock,
    sleeps: Sleeps,
    graph: GraphSimulator | None = None,
    **env: str,
) -> Services:
    return Services(
        load_settings(settings_env(**env)),
        transport=transport,
        graph_transport=SimulatorTransport(graph) if graph is not None else None,
        store=SqliteTicketStore(tmp / "store.db"),
        secrets=FileSecretStore(tmp / "secrets.json"),
        clock=clock,
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_total=60.0),
        sleep=sleeps,
    )


@pytest.fixture
def harness(
    tmp_path: Path,
    simulator: ServiceNowSimulator,
    transport: SimulatorTransport,
    clock: Clock,
    sleeps: Sleeps,
    graph: GraphSimulator,
    indexed_functions: dict[str, Any],
) -> Iterator[Harness]:
    services = build_services(tmp_path, transport, clock, sleeps, graph)
    services_module.install(services)
    yield Harness(services, simulator, transport, graph, clock, sleeps, indexed_functions, tmp_path)
    services_module.install(None)
    services.close()


def concurrently(count: int, action: Callable[[int], T]) -> list[T]:
    """Run `action(i)` on `count` threads released together by a barrier; the results in order."""
    barrier = threading.Barrier(count)

    def run(i: int) -> T:
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's Table service on a free loopback port; yields its connection string."""
    try:
        with azurite_tables(tmp_path_factory.mktemp("azurite")) as connection_string:
            yield connection_string
    except AzuriteUnavailable as missing:
        require_service("Azurite", str(missing))


@contextlib.contextmanager
def own_azurite(tmp_path: Path, *, on_disk: bool = False, queues: bool = False) -> Iterator[Azurite]:
    """An Azurite of the test's own (to stop, pause or share with other processes), stopped at the end."""
    (tmp_path / "azurite").mkdir()
    try:
        azurite = Azurite(tmp_path / "azurite", on_disk=on_disk, queues=queues)
        azurite.start()
    except AzuriteUnavailable as missing:
        require_service("Azurite", str(missing))
    try:
        yield azurite
    finally:
        azurite.stop()


@pytest.fixture(scope="session")
def azurite_queues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's Queue and Table services (one process) on free loopback ports; yields their connection string."""
    try:
        with azurite_tables(tmp_path_factory.mktemp("azurite-queues"), queues=True) as connection_string:
            yield connection_string
    except AzuriteUnavailable as missing:
        require_service("Azurite", str(missing))


@pytest.fixture
def connected(harness: Harness) -> Harness:
    """The harness after a completed connection, with the simulator's request log cleared."""
    assert harness.connect().status_code == 200
    harness.simulator.requests.clear()
    return harness
