"""End to end over real HTTP: the local host in dev/ serving function_app, the simulator on loopback,
and a browser-like client that presses Allow on the consent page. Also `dev/run.py` (make run) itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from dev.host import LocalHost
from dev.simulator import ServiceNowSimulator, serve
from shared import services as services_module
from tests.conftest import CLIENT_ID, CLIENT_SECRET, ROOT, free_port, served_graph


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        if tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values.get("value", "")


def press_allow(client: httpx.Client, connector: str, function_key: str | None = None) -> httpx.Response:
    """What an admin does: sign in (App Service Authentication, when the host emulates it), open /api/connect,
    land on ServiceNow's consent page, press Allow."""
    client.get(f"{connector}/.auth/login/aad")  # a 404 where the host does not emulate sign-in
    start = client.get(f"{connector}/api/connect", params={"code": function_key} if function_key else None)
    assert start.status_code == 302, start.text
    consent = client.get(start.headers["Location"])
    assert consent.status_code == 200 and "Allow" in consent.text
    form = _Form()
    form.feed(consent.text)
    instance = start.headers["Location"].split("/oauth_auth.do")[0]
    allowed = client.post(instance + form.action, data={**form.fields, "action": "allow"})
    assert allowed.status_code == 302
    return client.get(allowed.headers["Location"])


@pytest.fixture
def local_host(indexed_functions, identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with served_graph(identity) as (_, graph_url):
        monkeypatch.setenv("GRAPH_URL", graph_url)
        yield from _local_host(indexed_functions, tmp_path, monkeypatch)


def _local_host(indexed_functions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    simulator = ServiceNowSimulator()
    server, instance = serve(simulator)
    port = free_port()
    redirect = f"http://localhost:{port}/api/oauth/callback"
    simulator.register_client(CLIENT_ID, CLIENT_SECRET, [redirect])
    env = {
        "SERVICENOW_INSTANCE": instance,
        "SERVICENOW_CLIENT_ID": CLIENT_ID,
        "SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,
        "OAUTH_REDIRECT_URI": redirect,
        "LOCAL_DATA_DIR": str(tmp_path),
        "TICKET_STORE": "sqlite",
        "STATUS_SYNC_SCHEDULE": "0 */5 * * * *",
        "SECURE_SCORE_SCHEDULE": "0 0 */4 * * *",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    services_module.install(None)  # built from the environment, as in Azure
    host = LocalHost(indexed_functions.values(), "127.0.0.1", port)
    host.start()
    yield host.url
    host.stop()
    server.shutdown()
    server.server_close()
    services_module.install(None)


def test_a_browser_completes_the_connection_over_http(local_host):
    with httpx.Client(timeout=10) as browser:
        page = press_allow(browser, local_host)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "Connected to ServiceNow" in page.text and "m365.integration" in page.text
        status = browser.get(f"{local_host}/api/provisioning", params={"live": "true"}).json()
        assert status["state"] == "connected", status
        assert browser.post(f"{local_host}/api/disconnect").status_code == 204
        assert browser.get(f"{local_host}/api/provisioning").json()["state"] == "not_connected"


def test_routes_methods_and_unknown_paths(local_host):
    with httpx.Client(timeout=10) as client:
        wrong_method = client.post(f"{local_host}/api/connect")
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"
        assert client.get(f"{local_host}/api/nope").status_code == 404
        assert client.get(f"{local_host}/api/disconnect").status_code == 405


def test_make_run_starts_the_connector_on_the_simulator(tmp_path: Path):
    """`make run`'s program, as a process: it says it uses the simulator, and a browser can connect."""
    port, sim_port, graph_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICENOW_", "OAUTH_", "GRAPH_", "IDENTITY_"))}
    env.update(PORT=str(port), SIMULATOR_PORT=str(sim_port), GRAPH_SIMULATOR_PORT=str(graph_port),
               LOCAL_DATA_DIR=str(tmp_path / "local"))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "dev" / "run.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = ""
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        while "Ctrl-C" not in banner and time.monotonic() < deadline:
            banner += process.stdout.readline()
        assert "using the ServiceNow simulator" in banner, banner
        assert "using the Microsoft Graph simulator" in banner, banner
        assert re.search(rf"GET\s+http://localhost:{port}/api/connect", banner)
        api = f"http://localhost:{port}/api"
        with httpx.Client(timeout=10) as browser:
            page = press_allow(browser, f"http://localhost:{port}")
            assert page.status_code == 200 and "Connected to ServiceNow" in page.text
            _the_secure_score_loop(browser, api, f"http://127.0.0.1:{graph_port}")
        assert (tmp_path / "local" / "secrets.json").exists()
        assert (tmp_path / "local" / "connector.db").exists()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _the_secure_score_loop(browser: httpx.Client, api: str, graph: str) -> None:
    """What `make run` shows: recommendations with scores (read at start), a ticket from an id alone, its note in
    the simulated Secure Score, and the ticket resolved once the control is completed."""
    deadline = time.monotonic() + 20
    listed: dict[str, Any] = {}
    while time.monotonic() < deadline and not listed.get("recommendations"):
        listed = browser.get(f"{api}/recommendations").json()
        time.sleep(0.1)
    assert listed["secureScore"]["current"] > 0 and len(listed["history"]) == 90
    assert any(r["id"] == "AdminMFAV2" and r["score"] == 0 for r in listed["recommendations"])
    created = browser.post(f"{api}/tickets", json={"recommendation": {"id": "AdminMFAV2"}})
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert ticket["name"].startswith("Ensure multifactor authentication")

    assert browser.post(f"{api}/recommendations/refresh").json()["written"] == 1
    assert ticket["number"] in browser.get(f"{graph}/sim").text  # the note, in the simulated Secure Score
    assert browser.post(f"{graph}/sim/controls/AdminMFAV2/complete").status_code == 200
    assert browser.post(f"{api}/recommendations/refresh").json()["resolved"] == 1
    assert browser.get(f"{api}/tickets/{ticket['id']}").json()["status"] == "resolved"


def test_timer_functions_fire_on_their_ncrontab_schedule(monkeypatch: pytest.MonkeyPatch):
    """A throwaway app (not function_app, which is indexed once per process) with a one-second timer."""
    import threading

    import azure.functions as func

    fired: list[bool] = []
    done = threading.Event()
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="%TEST_SCHEDULE%", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        fired.append(timer.past_due)
        if len(fired) >= 2:
            done.set()

    monkeypatch.setenv("TEST_SCHEDULE", "*/1 * * * * *")
    host = LocalHost(app.get_functions(), "127.0.0.1", free_port())
    assert [(t.name, t.schedule) for t in host.timers] == [("tick", "*/1 * * * * *")]
    host.start()
    try:
        assert done.wait(5)
    finally:
        host.stop()
    assert fired[:2] == [False, False]


def _raw(port: int, request: bytes, *, half_close: bool = True, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send bytes as they are (no client library fixing them up); the status and what came back."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and not half_close:
                break
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0
    return status, received


@pytest.fixture
def raw_host(local_host: str) -> int:
    return int(local_host.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("headers", "status"),
    [(b"Content-Length: abc\r\n", 400), (b"Content-Length: -1\r\n", 400), (b"Content-Length: \xc2\xb2\r\n", 400),
     (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400), (b"Content-Length: 99999999999\r\n", 413),
     (b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", 400), (b"Transfer-Encoding: gzip\r\n", 400),
     (b"Content-Length: 100\r\n", 400)],
    ids=["letters", "negative", "superscript", "two-lengths", "too-large", "length-and-chunked", "gzip",
         "length-beyond-the-body"],
)  # fmt: skip
def test_malformed_framing_is_a_clean_4xx_never_a_hang(raw_host, headers, status):
    request = b"POST /api/tickets HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" + headers
    answer, body = _raw(raw_host, request + b"\r\n{}")
    assert answer == status, body
    assert b"Traceback" not in body


def test_a_length_beyond_the_body_on_an_open_connection_times_out_with_400(indexed_functions, tmp_path, monkeypatch):
    monkeypatch.setenv("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")
    monkeypatch.setenv("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), read_timeout=0.5)
    host.start()
    try:
        started = time.monotonic()
        request = b"POST /api/tickets HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{}"
        status, _ = _raw(host.server_address[1], request, half_close=False)
        assert status == 400 and time.monotonic() - started < 5
    finally:
        host.stop()


def test_a_chunked_body_reaches_the_function(raw_host):
    body = b'{"name": "x"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = (b"POST /api/tickets HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunked)  # fmt: skip
    status, answer = _raw(raw_host, request)
    problem = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert status == 400 and problem["code"] == "validation_failed"
    assert {e["field"] for e in problem["errors"]} == {"recommendation"}  # the body arrived: only that is missing


def test_a_malformed_chunk_is_400(raw_host):
    request = (b"POST /api/tickets HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\nxx\r\n0\r\n\r\n")  # fmt: skip
    assert _raw(raw_host, request)[0] == 400


def test_long_paths_are_cut_in_the_log(raw_host, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="dev.host"):
        status, _ = _raw(raw_host, b"GET /api/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status == 404
    assert caplog.records and all(len(r.getMessage()) < 400 for r in caplog.records)
