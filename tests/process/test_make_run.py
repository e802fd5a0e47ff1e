"""`make run` (dev/host/run.py) as a process, as a newcomer meets it: the journey on both simulators, a busy port, a
second run on the same data folder, a restart, `make reset`, and the app opened at 127.0.0.1 or [::1].

Every wait on the process is bounded: its output is read by a thread into a queue, and each read has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.process.test_local_host import press_allow

NAMES = ("PORT", "SIMULATOR_PORT", "GRAPH_SIMULATOR_PORT", "SECOND_SIMULATOR_PORT", "ENTRA_SIMULATOR_PORT")
STARTED = "Ctrl-C stops."
READ = "Secure Score read:"  # the first refresh is done: the recommendations are there


class MakeRun:
    """`dev/host/run.py` on its own ports and data folder; its merged stdout and stderr, read with deadlines."""

    def __init__(
        self, data: Path, ports: tuple[int, ...] | None = None, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.ports = ports or tuple(free_port() for _ in NAMES)
        self.port = self.ports[0]
        self.data = data
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("SERVICENOW_", "OAUTH_", "GRAPH_", "IDENTITY_", "WEBSITE_", "LOCAL_",
                                          "ENTRA_", "READER_", "APP_URL"))}  # fmt: skip
        inherited.update(dict(zip(NAMES, map(str, self.ports), strict=True)), LOCAL_DATA_DIR=str(data), **(env or {}))
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "dev" / "host" / "run.py"), *args],
            env=inherited,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, marker: str, timeout: float = 60) -> str:
        """The output up to the line with `marker`; fails (never hangs) if it does not come within `timeout`."""
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"{marker!r} did not appear within {timeout} s:\n{self.text}")
            if line is None:
                pytest.fail(f"make run ended before {marker!r}:\n{self.text}")
            self.output.append(line)
        return self.text

    def exit_code(self, timeout: float = 60) -> int:
        """Wait for the process to end by itself (bounded) and collect all its output."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"make run did not end within {timeout} s:\n{self.text}")
        self._drain()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.exit_code(30)

    def _drain(self) -> None:
        while (line := self._lines.get(timeout=10)) is not None:
            self.output.append(line)


def reset(data: Path) -> MakeRun:
    return MakeRun(data, None, "--reset")


def create(browser: httpx.Client, url: str, control_id: str, **headers: str) -> dict[str, Any]:
    created = browser.post(f"{url}/api/tickets", json={"recommendation": {"id": control_id}}, headers=headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


@contextlib.contextmanager
def signed_in(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as browser:
        browser.get(f"{url}/.auth/login/aad")
        yield browser


def test_make_run_starts_the_connector_on_the_simulator(tmp_path: Path):
    """It says it uses both simulators; a browser connects; the Secure Score loop closes; no noise in its log."""
    run = MakeRun(tmp_path / "local")
    try:
        banner = run.wait_for(STARTED)
        assert "using the ServiceNow simulator" in banner, banner
        assert "using the Microsoft Graph simulator" in banner, banner
        assert f"GET    {run.url}/api/connect" in banner
        run.wait_for(READ)
        with httpx.Client(timeout=10) as browser:
            page = press_allow(browser, run.url)
            assert page.status_code == 200 and "Connected to ServiceNow" in page.text
            _the_secure_score_loop(browser, f"{run.url}/api", f"http://127.0.0.1:{run.ports[2]}")
        assert (tmp_path / "local" / "secrets.json").exists()
        assert (tmp_path / "local" / "connector.db").exists()
    finally:
        run.stop()
    # azure-identity logs every token request at INFO; make run keeps only its own story (issue 18, item 8).
    assert not [line for line in run.output if " INFO azure" in line], run.text
    assert "Traceback" not in run.text


def _the_secure_score_loop(browser: httpx.Client, api: str, graph: str) -> None:
    """What `make run` shows: recommendations with scores (read at start), a ticket from an id alone, its note in
    the simulated Secure Score, and the ticket resolved once the control is completed."""
    listed = browser.get(f"{api}/recommendations").json()
    assert listed["secureScore"]["current"] > 0 and len(listed["history"]) == 90
    assert any(r["id"] == "AdminMFAV2" and r["score"] == 0 for r in listed["recommendations"])
    ticket = create(browser, api.removesuffix("/api"), "AdminMFAV2")
    assert ticket["name"].startswith("Ensure multifactor authentication")

    assert browser.post(f"{api}/recommendations/refresh").json()["written"] == 1
    assert ticket["number"] in browser.get(f"{graph}/sim").text  # the note, in the simulated Secure Score
    assert browser.post(f"{graph}/sim/controls/AdminMFAV2/complete").status_code == 200
    assert browser.post(f"{api}/recommendations/refresh").json()["resolved"] == 1
    assert browser.get(f"{api}/tickets/{ticket['id']}").json()["status"] == "resolved"


@pytest.mark.parametrize("busy", NAMES)
def test_a_busy_port_is_named_with_the_settings_that_choose_others_and_nothing_is_written(tmp_path: Path, busy):
    data = tmp_path / "local"
    data.mkdir()
    (data / "secrets.json").write_text('{"servicenow-token": "kept"}')
    ports = tuple(free_port() for _ in NAMES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[NAMES.index(busy)]))
        taken.listen()
        run = MakeRun(data, ports)
        assert run.exit_code() == 1
    port = ports[NAMES.index(busy)]
    assert f"Port {port} ({busy}) is already in use" in run.text, run.text
    assert all(name in run.text for name in NAMES) and "Traceback" not in run.text
    assert sorted(p.name for p in data.iterdir()) == ["secrets.json"]  # no lock, no store, no simulator state
    assert (data / "secrets.json").read_text() == '{"servicenow-token": "kept"}'


def test_a_second_run_on_the_same_data_folder_is_refused_and_the_first_keeps_its_connection(tmp_path: Path):
    data = tmp_path / "local"
    first = MakeRun(data)
    try:
        first.wait_for(STARTED)
        with httpx.Client(timeout=10) as browser:
            assert "Connected to ServiceNow" in press_allow(browser, first.url).text
            tokens = (data / "secrets.json").read_bytes()

            same_ports = MakeRun(data, first.ports)  # the repro: it failed on the busy port after the harm
            assert same_ports.exit_code() == 1 and "is already in use" in same_ports.text
            other_ports = MakeRun(data)
            assert other_ports.exit_code() == 1, other_ports.text
            assert f"(process {first.process.pid}) is using the data folder {data.resolve()}" in other_ports.text
            assert "LOCAL_DATA_DIR=" in other_ports.text and "Traceback" not in other_ports.text
            assert reset(data).exit_code() == 1  # nor can the folder be reset under a running connector

            assert (data / "secrets.json").read_bytes() == tokens
            assert browser.get(f"{first.url}/api/provisioning").json()["state"] == "connected"
    finally:
        first.stop()


def test_a_restart_keeps_the_simulated_instance_and_make_reset_empties_both_together(tmp_path: Path):
    """The simulator's records, number counter, OAuth client and grants survive a restart, so numbers never
    repeat against the store and the stored tokens stay valid; `make reset` then starts both afresh."""
    data = tmp_path / "local"
    first = MakeRun(data)
    try:
        first.wait_for(READ)
        with httpx.Client(timeout=10) as browser:
            press_allow(browser, first.url)
            before = create(browser, first.url, "AdminMFAV2")
    finally:
        first.stop()
    assert (data / "servicenow-simulator.json").stat().st_mode & 0o077 == 0  # it holds a secret and tokens

    second = MakeRun(data, first.ports)
    try:
        assert "(1 records)" in second.wait_for(READ)
        with signed_in(second.url) as browser:
            api = f"{second.url}/api"
            live = browser.get(f"{api}/provisioning", params={"live": "true"}).json()
            assert next(c for c in live["checks"] if c["name"] == "token_valid")["ok"], live  # no reconnect needed
            after = create(browser, second.url, "MFARegistrationV2")
            assert after["number"] != before["number"]
            assert before["number"] in browser.get(before["url"]).text  # the old ticket's record is still there
            assert browser.post(f"{second.url}/admin/functions/status_sync").status_code == 202
            assert browser.get(f"{api}/tickets/{before['id']}").json()["status"] == "new"  # not "missing"
    finally:
        second.stop()

    cleared = reset(data)
    assert cleared.exit_code() == 0 and "servicenow-simulator.json" in cleared.text, cleared.text
    assert not {"secrets.json", "connector.db", "servicenow-simulator.json"} & {p.name for p in data.iterdir()}


def test_the_app_opened_at_127_0_0_1_or_ipv6_loopback_is_the_same_app(tmp_path: Path):
    """A newcomer follows the simulators' 127.0.0.1 links back: the page, the connection (its state cookie) and
    state-changing calls work there as on localhost, and the simulator links back with the host they used."""
    run = MakeRun(tmp_path / "local")
    try:
        run.wait_for(READ)
        alias = f"http://127.0.0.1:{run.port}"
        with httpx.Client(timeout=10, follow_redirects=True) as browser:
            page = browser.get(f"{alias}/api/portal")
            assert page.status_code == 200 and str(page.url) == f"{run.url}/api/portal"
            consent = browser.get(f"{alias}/api/connect")  # sent to localhost first, where the callback returns
            assert "Allow" in consent.text, consent.text
            form = _hidden_inputs(consent.text)
            done = browser.post(str(consent.url).split("?")[0], data={**form, "action": "allow"})
            assert "Connected to ServiceNow" in done.text, done.text
            ticket = create(browser, run.url, "AdminMFAV2", Origin=alias)  # localhost and 127.0.0.1: one site
            record = browser.get(ticket["url"])  # the simulator's page, at 127.0.0.1
            assert (
                f'href="http://127.0.0.1:{run.port}/api/portal#tenant=home"' in record.text
            )  # back, the way they came, to its tenant
        if _ipv6_loopback():
            with httpx.Client(timeout=10) as browser:
                moved = browser.get(f"http://[::1]:{run.port}/api/portal")
                assert moved.status_code == 307 and moved.headers["location"] == f"{run.url}/api/portal"
    finally:
        run.stop()


def _hidden_inputs(page: str) -> dict[str, str]:
    from tests.process.test_local_host import _Form

    form = _Form()
    form.feed(page)
    return form.fields


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_the_simulator_state_file_is_json_a_person_can_read(tmp_path: Path):
    """The state is plain JSON (records, counter, clients), so a puzzled newcomer can look inside."""
    from dev.servicenow import ServiceNowSimulator
    from dev.servicenow.persist import STATE_FILE, keep

    simulator = ServiceNowSimulator()
    kept, found = keep(simulator, tmp_path)
    assert not found
    simulator.register_client("c", "s", ["http://localhost/cb"])
    kept.save()
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["number"] == 10000 and state["clients"][0]["client_id"] == "c"
    restored = ServiceNowSimulator()
    assert keep(restored, tmp_path)[1] and restored.clients["c"].client_secret == "s"


def test_an_unreadable_simulator_state_is_named_with_the_way_out(tmp_path: Path):
    data = tmp_path / "local"
    data.mkdir()
    (data / "servicenow-simulator.json").write_text('{"version": 0}')
    run = MakeRun(data)
    assert run.exit_code() == 1
    assert "cannot be read" in run.text and "`make reset`" in run.text and "Traceback" not in run.text, run.text
