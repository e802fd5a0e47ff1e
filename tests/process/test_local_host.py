"""End to end over real HTTP: the local host in dev/ serving function_app, the simulator on loopback,
and a browser-like client that presses Allow on the consent page. Also `dev/host/run.py` (make run) itself."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from dev.host.easyauth import LocalUser
from dev.host.server import LocalHost
from dev.servicenow import ServiceNowSimulator, serve
from shared import services as services_module
from tests.conftest import CLIENT_ID, CLIENT_SECRET, free_port, served_graph


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


def test_timer_functions_fire_on_their_ncrontab_schedule(monkeypatch: pytest.MonkeyPatch):
    """A throwaway app (not function_app, which is indexed once per process) with a one-second timer, on the
    test's clock: the host waits exactly until each occurrence, and one reached more than a minute late is
    past due. No real time passes."""
    import azure.functions as func

    fired: list[bool] = []
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="%TEST_SCHEDULE%", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        fired.append(timer.past_due)

    now = [datetime(2026, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)]
    waits: list[float] = []
    stopped = threading.Event()
    late = {2: 120.0}  # the second wait oversleeps by two minutes (a suspended laptop)

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) > 2:
            stopped.set()
            return True  # the host is stopping
        now[0] += timedelta(seconds=seconds + late.get(len(waits), 0.0))
        return False

    monkeypatch.setenv("TEST_SCHEDULE", "*/1 * * * * *")
    host = LocalHost(app.get_functions(), "127.0.0.1", free_port(), now=lambda: now[0], wait=wait)
    assert [(t.name, t.schedule) for t in host.timers] == [("tick", "*/1 * * * * *")]
    host.start()
    try:
        assert stopped.wait(30), "the timer thread never asked to wait a third time"
    finally:
        host.stop()
    assert waits[:2] == [0.5, 1.0]  # to 12:00:01, then to 12:00:02
    assert fired == [False, True]


def _raw(port: int, request: bytes, *, half_close: bool = True, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send bytes as they are (no client library fixing them up); the status and what came back."""

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)
            if not half_close and length and len(body) >= int(length[1]):  # the whole answer: headers and body
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
    """The host gives up on the body after its read timeout (0.5 s here) and answers; the client's own socket
    timeout (5 s) only bounds the test: a host that waited forever fails it with a timeout, never hangs it."""
    monkeypatch.setenv("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")
    monkeypatch.setenv("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), read_timeout=0.5)
    host.start()
    try:
        request = b"POST /api/tickets HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{}"
        status, answer = _raw(host.server_address[1], request, half_close=False)
        assert status == 400 and b"the body ended before its Content-Length" in answer
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


# -- the local host as a newcomer meets it (issue 18) -----------------------------------------------------------


@pytest.fixture
def signed_in_host(indexed_functions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHost]:
    """The local host as `make run` starts it: App Service Authentication emulated for an admin (signed in by
    default) and a reader (login_hint), listening on 127.0.0.1 and [::1]."""
    port = free_port()
    for name, value in {
        "LOCAL_DATA_DIR": str(tmp_path), "TICKET_STORE": "sqlite", "STATUS_SYNC_SCHEDULE": "0 */5 * * * *",
        "SECURE_SCORE_SCHEDULE": "0 0 */4 * * *", "OAUTH_REDIRECT_URI": f"http://localhost:{port}/api/oauth/callback",
        "WEBSITE_AUTH_ENABLED": "True", "SERVICENOW_INSTANCE": "contoso", "SERVICENOW_CLIENT_ID": CLIENT_ID,
        "SERVICENOW_CLIENT_SECRET": CLIENT_SECRET,  # configured, never connected: nothing reaches ServiceNow
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    services_module.install(None)
    admin = LocalUser.parse("admin@contoso.com", "Connector.Admin Tickets.Create")
    reader = LocalUser.parse("reader@contoso.com", "")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", port, user=admin, other_users=(reader,), ipv6=True)
    host.start()
    yield host
    host.stop()
    services_module.install(None)


def test_admin_functions_run_for_tools_and_this_apps_admin_never_for_another_site_or_a_reader(signed_in_host):
    url, port = signed_in_host.url, signed_in_host.port
    run = "/admin/functions/status_sync"
    with httpx.Client(base_url=url) as tool:
        assert tool.post(run).status_code == 202  # curl: no Origin, as Core Tools allows
        for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}", f"https://localhost:{port}"):
            assert tool.post(run, headers={"Origin": origin}).status_code == 403, origin
        form = tool.post(run, headers={"Origin": "http://evil.example"}, data={"a": "b"})  # a cross-site form
        assert form.status_code == 403
        assert tool.post(run, headers={"Origin": url}).status_code == 403  # a browser without a session
    with httpx.Client(base_url=url) as reader:
        reader.get("/.auth/login/aad", params={"login_hint": "reader@contoso.com"})
        assert reader.post(run, headers={"Origin": url}).status_code == 403
    with httpx.Client(base_url=url) as admin:
        admin.get("/.auth/login/aad")
        for origin in (url, f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
            assert admin.post(run, headers={"Origin": origin}).status_code == 202, origin
        assert admin.post(run, headers={"Origin": "http://evil.example"}).status_code == 403


OFF_SITE = ["//evil.example/x", "/\\evil.example/x", "\\\\evil.example/x", "/\t/evil.example", "/\n/evil.example",
            "https://evil.example/", "javascript:alert(1)", "http:evil.example", " //evil.example",
            "/api/portal\r\nSet-Cookie: a=b", "/\x00/evil.example", "/é"]  # fmt: skip


@pytest.mark.parametrize("target", OFF_SITE)
def test_the_sign_in_and_the_simulators_login_follow_only_paths_on_their_own_site(signed_in_host, target):
    from dev.servicenow import ADMIN_SYS_ID
    from dev.wire import SimRequest

    with httpx.Client(base_url=signed_in_host.url) as browser:
        login = browser.get("/.auth/login/aad", params={"post_login_redirect_uri": target})
        assert login.status_code == 302 and login.headers["location"] == "/api/portal"
    simulator = ServiceNowSimulator()
    form = {"content-type": "application/x-www-form-urlencoded"}
    body = urlencode({"next": target, "user": ADMIN_SYS_ID}).encode()
    signed = simulator.handle(SimRequest("POST", "https://sim.service-now.com/login.do", form, body))
    assert signed.status == 302 and signed.headers["Location"] == "/"
    asked = f"https://sim.service-now.com/login.do?{urlencode({'next': target})}"
    page = simulator.handle(SimRequest("GET", asked, {}))
    assert 'name="next" value="/"' in page.body.decode()


def test_same_site_paths_are_followed(signed_in_host):
    from dev.servicenow import ADMIN_SYS_ID
    from dev.wire import SimRequest

    with httpx.Client(base_url=signed_in_host.url) as browser:
        login = browser.get("/.auth/login/aad", params={"post_login_redirect_uri": "/api/tickets?status=all"})
        assert login.headers["location"] == "/api/tickets?status=all"
    back = "/oauth_auth.do?" + urlencode({"client_id": "c", "redirect_uri": "http://localhost:7071/api/oauth/cb"})
    body = urlencode({"next": back, "user": ADMIN_SYS_ID}).encode()
    form = {"content-type": "application/x-www-form-urlencoded"}
    signed = ServiceNowSimulator().handle(SimRequest("POST", "https://sim.service-now.com/login.do", form, body))
    assert signed.headers["Location"] == back


def test_pages_opened_at_127_0_0_1_or_ipv6_move_to_the_printed_url_and_calls_from_there_are_same_site(
    signed_in_host,
):
    url, port = signed_in_host.url, signed_in_host.port
    with httpx.Client() as browser:
        moved = browser.get(f"http://127.0.0.1:{port}/api/portal?x=1")
        assert moved.status_code == 307 and moved.headers["location"] == f"{url}/api/portal?x=1"
        connect = browser.get(f"http://127.0.0.1:{port}/api/connect")  # its state cookie must live on localhost
        assert connect.status_code == 307 and connect.headers["location"] == f"{url}/api/connect"
        xhr = browser.get(f"http://127.0.0.1:{port}/api/me", headers={"X-Requested-With": "XMLHttpRequest"})
        assert xhr.status_code == 401  # an API call is answered where it is (here: not signed in)
        assert browser.get(f"{url}/api/portal").status_code == 302  # on localhost: to sign in, not moved
        other = browser.get(f"{url}/api/portal", headers={"Host": f"evil.example:{port}"})
        assert other.status_code == 302 and other.headers["location"].startswith("/.auth/login/")
        if signed_in_host.listeners[1:]:  # [::1] where the machine has IPv6 loopback
            ipv6 = browser.get(f"http://[::1]:{port}/api/portal")
            assert ipv6.status_code == 307 and ipv6.headers["location"] == f"{url}/api/portal"
    with httpx.Client(base_url=url) as admin:
        admin.get("/.auth/login/aad")
        for origin in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
            gone = admin.post("/api/disconnect", headers={"Origin": origin, "X-Requested-With": "XMLHttpRequest"})
            assert gone.status_code == 204, gone.text  # not "Cross-site requests are refused"


def test_a_burst_of_100_connections_queues_and_is_served_concurrently(indexed_functions, monkeypatch):
    """socketserver's backlog of 5 refused a burst; the host queues it (the handshakes complete before it
    accepts one) and serves the connections side by side: the last request to finish is answered first."""
    import selectors

    monkeypatch.setenv("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")
    monkeypatch.setenv("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port())  # listening, not yet accepting
    connections = [socket.socket() for _ in range(100)]
    try:
        with selectors.DefaultSelector() as selector:
            for connection in connections:
                connection.setblocking(False)
                connection.connect_ex(("127.0.0.1", host.port))
                selector.register(connection, selectors.EVENT_WRITE)
            waiting = set(connections)
            deadline = time.monotonic() + 10  # bounds the wait: a full backlog drops SYNs, never answering
            while waiting and time.monotonic() < deadline:
                for key, _ in selector.select(max(deadline - time.monotonic(), 0)):
                    selector.unregister(key.fileobj)
                    waiting.discard(key.fileobj)
        assert not waiting, f"{len(waiting)} of 100 connections were not queued"
        assert all(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for c in connections)
        host.start()
        for connection in connections:
            connection.setblocking(True)
            connection.settimeout(10)
            connection.sendall(b"GET /api/nope HTTP/1.1\r\nHost: localhost\r\n")  # not finished yet
        for connection in reversed(connections):
            connection.sendall(b"\r\n")
            assert connection.recv(12) == b"HTTP/1.1 404"
    finally:
        for connection in connections:
            connection.close()
        host.stop()


def test_an_idle_keep_alive_connection_closes_without_a_malformed_request_log(indexed_functions, monkeypatch, caplog):
    import logging

    monkeypatch.setenv("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")
    monkeypatch.setenv("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), read_timeout=0.2)
    host.start()
    try:
        with caplog.at_level(logging.INFO, logger="dev.host"):
            status, _ = _raw(host.port, b"GET /favicon.ico HTTP/1.1\r\nHost: localhost\r\n\r\n", half_close=False)
            assert status == 204  # a browser's favicon request: answered, not 404 or a sign-in demand
            with socket.create_connection(("127.0.0.1", host.port), timeout=5) as browser:
                browser.sendall(b"GET /api/nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
                received = b""
                while chunk := browser.recv(65536):  # then idle: the host closes it after its read timeout
                    received += chunk
        assert received.startswith(b"HTTP/1.1 404") and received.count(b"HTTP/1.1") == 1
    finally:
        host.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Malformed" in m or "favicon" in m], messages
