"""Chaos of real processes (issue 26): `make run`'s host killed with SIGKILL in the middle of a burst of creates,
started again on the same data folder, the burst repeated (as a caller does, after each Retry-After) and the status
sync run. Then, counted from the simulator's own state and the connector's tickets: one record per recommendation,
one ticket per record, none pending, none marked duplicate. The same on the Table store (Azurite).

Bounded: every wait has a deadline. It waits out what a killed host leaves (its leases, 90 s, and its creates in
doubt, SERVICENOW_IN_DOUBT_SECONDS), so both stores run side by side to share that wait.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from dev.host.azurite import Azurite, AzuriteUnavailable
from tests.conftest import require_service
from tests.create_ticket.test_exactly_once import body_for
from tests.process.test_local_host import press_allow
from tests.process.test_make_run import READ, MakeRun

BURST = 30
KILL_AFTER = 12  # answers before the kill: the rest are in flight, or not yet sent
DEADLINE = 300.0  # seconds for the repeats to finish every create
QUIET_TIMERS = {"STATUS_SYNC_SCHEDULE": "0 0 0 1 1 *"}  # the test runs the sync itself, when it means to


def _create(browser: httpx.Client, url: str, recommendation_id: str) -> tuple[int, int]:
    """(status, Retry-After); status 0 when the host died under the request."""
    try:
        answer = browser.post(f"{url}/api/tickets", json=body_for(recommendation_id), timeout=90)
    except httpx.TransportError:
        return 0, 1
    return answer.status_code, int(answer.headers.get("Retry-After") or 0)


def _burst(browser: httpx.Client, url: str, ids: list[str], on_answer: Any = None) -> dict[str, tuple[int, int]]:
    def one(recommendation_id: str) -> tuple[int, int]:
        answer = _create(browser, url, recommendation_id)
        if on_answer is not None:
            on_answer()
        return answer

    with ThreadPoolExecutor(10) as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


def _sync(browser: httpx.Client, url: str) -> None:
    assert browser.post(f"{url}/admin/functions/status_sync").status_code == 202


def _counts(tickets: list[dict[str, Any]], records: list[dict[str, Any]], ids: list[str]) -> dict[str, int]:
    per_recommendation = Counter(r["correlation_id"] for r in records)
    per_record = Counter(t["sysId"] for t in tickets if t["sysId"])
    return {
        "records": len(records),
        "recommendations with two or more records": sum(1 for n in per_recommendation.values() if n > 1),
        "recommendations without a record": sum(1 for i in ids if f"m365sec:{i}" not in per_recommendation),
        "tickets": len(tickets),
        "records with two or more tickets": sum(1 for n in per_record.values() if n > 1),
        "records without a ticket": sum(1 for r in records if r["sys_id"] not in per_record),
        "pending": sum(1 for t in tickets if t["status"] == "pending"),
        "marked duplicate": sum(
            1 for t in tickets if t["duplicateOf"] or (t["error"] or {}).get("code") == "duplicate_open_record"
        ),
    }


def kill_mid_burst(data: Path, env: dict[str, str], name: str) -> dict[str, int]:
    """One trial: the counts at the end (printed, for the issue's closing note)."""
    ids = [f"Chaos{i}" for i in range(BURST)]
    first = MakeRun(data, None, env={**QUIET_TIMERS, **env})
    try:
        first.wait_for(READ)
        with httpx.Client(timeout=30) as browser:
            press_allow(browser, first.url)
            answered = []
            lock = threading.Lock()

            def kill_at_the_kth_answer() -> None:
                with lock:
                    answered.append(1)
                    if len(answered) == KILL_AFTER:
                        first.process.kill()  # SIGKILL: no cleanup, mid-burst

            burst = _burst(browser, first.url, ids, kill_at_the_kth_answer)
    finally:
        if first.process.poll() is None:
            first.process.kill()
        first.process.wait(timeout=30)

    lost = sum(1 for status, _ in burst.values() if status == 0)
    assert lost >= 1, f"{name}: the kill did not land in the burst: {burst}"
    second = MakeRun(data, first.ports, env={**QUIET_TIMERS, **env})
    try:
        second.wait_for(READ)
        with httpx.Client(timeout=30) as browser:
            browser.get(f"{second.url}/.auth/login/aad")
            left = browser.get(f"{second.url}/api/tickets", params={"status": "all"}).json()["summary"]["pending"]
            answers = _burst(browser, second.url, ids)
            _sync(browser, second.url)
            ends = time.monotonic() + DEADLINE
            while failed := [i for i, (status, _) in answers.items() if status not in (200, 201)]:
                assert time.monotonic() < ends, f"{name}: still failing after {DEADLINE} s: {answers}"
                time.sleep(min(30, max(1, max(answers[i][1] for i in failed))))  # as Retry-After says
                answers.update(_burst(browser, second.url, failed))
            _sync(browser, second.url)
            tickets = browser.get(f"{second.url}/api/tickets", params={"status": "all"}).json()["tickets"]
    finally:
        second.stop()
    state = json.loads((data / "servicenow-simulator.json").read_text())
    records = [r for r in state["tables"]["incident"].values() if r["correlation_id"].startswith("m365sec:Chaos")]
    counts = _counts([t for t in tickets if t["recommendation"]["id"].startswith("Chaos")], records, ids)
    print(f"chaos on {name}: the kill cut {lost} of {BURST} requests, left {left} pending; at the end {counts}")
    assert "Traceback" not in second.text, second.text
    return counts


EXPECTED = {
    "records": BURST,
    "recommendations with two or more records": 0,
    "recommendations without a record": 0,
    "tickets": BURST,
    "records with two or more tickets": 0,
    "records without a ticket": 0,
    "pending": 0,
    "marked duplicate": 0,
}


def test_a_host_killed_mid_burst_ends_with_one_record_and_one_ticket_per_recommendation(tmp_path: Path):
    (tmp_path / "azurite").mkdir()
    try:
        azurite = Azurite(tmp_path / "azurite")
        azurite.start()
    except AzuriteUnavailable as missing:
        require_service("Azurite", str(missing))
    try:
        tables = {"TICKET_STORE": "tables", "AzureWebJobsStorage": azurite.connection_string}
        with ThreadPoolExecutor(2) as pool:
            sqlite = pool.submit(kill_mid_burst, tmp_path / "sqlite", {}, "SQLite")
            table_store = pool.submit(kill_mid_burst, tmp_path / "tables", tables, "Table Storage (Azurite)")
            results = {"SQLite": sqlite.result(), "Table Storage": table_store.result()}
    finally:
        azurite.stop()
    assert results == {"SQLite": EXPECTED, "Table Storage": EXPECTED}


if __name__ == "__main__":  # pragma: no cover - the counts alone: python -m tests.process.test_chaos
    pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider"])
