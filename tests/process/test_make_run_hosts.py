"""`make run HOSTS=2` (dev/host/run.py): two local hosts of one app, each a process of its own, on one Azurite
started by the project's own files: both serve the same store, the timer (on the first host only) queues the Secure
Score refresh and a host takes it from the queue; Ctrl-C stops the other host and Azurite too. A busy port for the
second host, or a HOSTS that is not a count, stops the run before anything is written."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from dev.host.azurite import ALL_SERVICES
from tests.conftest import free_port, require_service
from tests.process.test_make_run import NAMES, READ, STARTED, MakeRun


@pytest.fixture(autouse=True)
def _azurite_installed() -> None:
    if not ALL_SERVICES.exists():
        require_service("Azurite", f"{ALL_SERVICES} is missing (npm ci --prefix tools)")


def _home_refreshed_at(client: httpx.Client, url: str) -> str:
    answer = client.get(f"{url}/api/tenants")
    assert answer.status_code == 200, answer.text
    home = next(t for t in answer.json()["tenants"] if t.get("home"))
    return str((home.get("lastRefresh") or {}).get("at") or "")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_two_hosts_serve_one_store_and_share_the_queued_refresh(tmp_path: Path) -> None:
    more = free_port()
    data = tmp_path / "local"
    run = MakeRun(data, env={"HOSTS": "2", "MORE_HOSTS_PORT": str(more)})
    try:
        banner = run.wait_for(STARTED)
        assert f"Host 2 of 2 running at http://localhost:{more}/api/" in banner, banner
        assert "whichever host polls first" in banner
        run.wait_for(READ)  # the first refresh, on the first host, into the store on Azurite
        token = (data / "local-api-token").read_text().strip()
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
            second = f"http://localhost:{more}"
            first_read = _home_refreshed_at(client, run.url)
            assert first_read and _home_refreshed_at(client, second) == first_read  # one store
            fired = client.post(f"{run.url}/admin/functions/secure_score_sync")
            assert fired.status_code == 202
            deadline = time.monotonic() + 30
            while _home_refreshed_at(client, second) <= first_read:
                assert time.monotonic() < deadline, run.text
                time.sleep(0.2)
        run.wait_for("Secure Score refresh queued for 1 tenants on secure-score-refresh", 10)
    finally:
        run.stop()
    assert run.process.returncode == 0 and "Traceback" not in run.text
    second_log = (data / "host-2.log").read_text()
    refreshes = run.text.count("refresh of the home tenant ok") + second_log.count("refresh of the home tenant ok")
    assert refreshes == 2, (run.text, second_log)  # the first; then the queued one, by one host or the other
    assert "Traceback" not in second_log
    assert not _listening(more)  # the second host stopped with the first
    assert (data / "azurite").is_dir()  # the store is kept for the next run; `make reset` empties it
    reset = MakeRun(data, None, "--reset")
    assert reset.exit_code() == 0 and "azurite/" in reset.text and "host-2.log" in reset.text
    assert not (data / "azurite").exists()


def test_a_busy_port_for_the_second_host_stops_the_run_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "local"
    ports = tuple(free_port() for _ in NAMES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        more = taken.getsockname()[1]
        run = MakeRun(data, ports, env={"HOSTS": "2", "MORE_HOSTS_PORT": str(more)})
        assert run.exit_code() == 1
    assert f"Port {more} (host 2 of HOSTS=2" in run.text and "MORE_HOSTS_PORT=" in run.text, run.text
    assert "Traceback" not in run.text and not data.exists()


@pytest.mark.parametrize("hosts", ["0", "9", "two", "-1"])
def test_a_hosts_that_is_not_a_count_is_named(tmp_path: Path, hosts: str) -> None:
    run = MakeRun(tmp_path / "local", env={"HOSTS": hosts})
    assert run.exit_code() == 1
    assert f"HOSTS={hosts} is not a number of local hosts (1-8)." in run.text and "Traceback" not in run.text
    assert not (tmp_path / "local").exists()


def test_a_host_without_timers_runs_them_only_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other hosts (`run_timers=False`): a timer runs on one instance of an app at a time, so only the first
    host's schedules fire; a call (`POST /admin/functions/{name}`) still runs one there."""
    import azure.functions as func

    from dev.host.server import LocalHost

    fired: list[bool] = []
    waits: list[float] = []
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="%TEST_SCHEDULE%", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        fired.append(timer.past_due)

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False  # every second's occurrence comes at once

    monkeypatch.setenv("TEST_SCHEDULE", "*/1 * * * * *")
    host = LocalHost(app.get_functions(), "127.0.0.1", free_port(), wait=wait, run_timers=False)
    host.start()
    try:
        time.sleep(0.5)
        assert (waits, fired) == ([], [])
        assert httpx.post(f"http://127.0.0.1:{host.port}/admin/functions/tick", timeout=10).status_code == 202
        assert fired == [False]
    finally:
        host.stop()
