"""A refresh queued per tenant, on the page (docs/admin-guide.md, 10.5a), in Chromium: the local host runs the queue
trigger against Azurite's Queue service (as the Functions host does), FANOUT_THRESHOLD=2, the Graph and Entra ID
simulators. The admin presses Refresh, the 202 leads to "Refreshing: X of Y tenants" in a live region that the page
reads again while it runs, and a tenant's message in the poison queue shows on its row. Screenshots go to
tests/artifacts/."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient
from playwright.sync_api import expect

from dev.entra import FABRIKAM
from dev.graph import ManagedIdentity
from dev.host.queues import QueueOptions
from dev.wire.messages import SimRequest
from secure_score.fanout import QUEUE, RefreshMessage
from shared.queues import poison_queue
from tests.browser.test_portal import Portal, axe_violations, browser, open_portal, served_portal, shoot
from tests.browser.test_portal_tenants import Tenants, several, tenant_row, tenants
from tests.secure_score.test_fanout import _queue

__all__ = ["browser", "tenants"]  # fixtures, used by name

FAST = QueueOptions(batch_size=8, max_dequeue_count=5, visibility_timeout=0.0, max_polling_interval=0.2)
OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@contextmanager
def queued_portal(
    indexed_functions: Any, identity: ManagedIdentity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    azurite_queues: str, queue: str,
) -> Iterator[Portal]:  # fmt: skip
    """The page's portal on Azurite's queues (`queue` and its poison queue emptied), fanning out from two."""
    for name in (queue, poison_queue(queue)):
        _queue(azurite_queues, name)
    monkeypatch.delenv("AzureWebJobsStorage__queueServiceUri", raising=False)
    env = {"AzureWebJobsStorage": azurite_queues, "FANOUT_THRESHOLD": "2"}
    with served_portal(indexed_functions, identity, tmp_path, monkeypatch, env, queue_options=FAST) as served:
        yield served


@pytest.fixture
def portal(
    indexed_functions: Any,
    identity: ManagedIdentity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    azurite_queues: str,
) -> Iterator[Portal]:
    """The page's portal on Azurite's queues, fanning out from two tenants due (the tenants fixture builds on it)."""
    with queued_portal(indexed_functions, identity, tmp_path, monkeypatch, azurite_queues, QUEUE) as served:
        yield served


def _tenant_of(request: SimRequest) -> str | None:
    """The tenant a Graph request's token is for (its `tid`)."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    try:
        payload = token.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["tid"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


@pytest.mark.parametrize("width", [1280, 390])
def test_a_queued_refresh_shows_its_progress_until_each_tenant_is_read(
    browser, tenants: Tenants, azurite_queues: str, width: int
):
    setup = several(browser, tenants)  # this organization and Fabrikam are read; Northwind waits for consent
    first = {t["id"]: t for t in setup.request.get(f"{tenants.url}/api/tenants").json()["tenants"]}
    before = first[FABRIKAM.id]["lastRefresh"]["at"]
    released = threading.Event()

    def hold_fabrikam(request: SimRequest) -> None:
        if _tenant_of(request) == FABRIKAM.id:
            released.wait(60)

    tenants.portal.graph.while_in_flight = hold_fabrikam
    page = open_portal(browser, tenants.portal, width=width, bypass_csp=True)  # only so axe can be injected
    page.wait_for_selector("body[data-view=overview]")
    progress = page.locator("#refresh-progress")
    assert progress.get_attribute("role") == "status" and progress.get_attribute("aria-live") == "polite"
    try:
        page.click("#refresh-all")
        expect(page.locator("#notice")).to_contain_text("Secure Score refresh queued for 2 tenants")
        # This organization's refresh lands; Fabrikam's is held in Graph: the page reads the tenants again meanwhile.
        expect(progress).to_contain_text("Refreshing: 1 of 2 tenants", timeout=30_000)
        found = axe_violations(page)
        assert found == [], found
        assert page.evaluate(OVERFLOW) <= 0
        shoot(page, f"portal-refreshing-{width}")
    finally:
        released.set()
    expect(progress).to_contain_text("The queued refresh is done", timeout=30_000)
    expect(progress).not_to_contain_text("Refreshing")
    # Fabrikam's row says when it was read now (it said "Read" since the set-up: the time is what changed)
    read = {t["id"]: t for t in page.request.get(f"{tenants.url}/api/tenants").json()["tenants"]}
    at = read[FABRIKAM.id]["lastRefresh"]["at"]
    assert at > before, (at, before)
    shown = page.evaluate("a => new Date(a).toLocaleString()", at)  # as the page's when() says it
    expect(tenant_row(page, FABRIKAM.id)).to_contain_text(f"Read {shown}")

    # A message the host moved to the poison queue (its tries never ended): the tenant's row says so, and what to do.
    queued = json.dumps(RefreshMessage(FABRIKAM.id, datetime.now(UTC).isoformat()).to_json()).encode()
    QueueClient.from_connection_string(azurite_queues, poison_queue(QUEUE)).send_message(
        base64.b64encode(queued).decode()
    )
    page.reload()
    page.wait_for_selector("body[data-ready=true][data-view=overview]")
    row = tenant_row(page, FABRIKAM.id)
    expect(row).to_contain_text("Queued refresh failed: 1 message in secure-score-refresh-poison")
    expect(row).to_contain_text("the next refresh queues the tenant again")
    assert axe_violations(page) == []
    shoot(page, f"portal-poisoned-{width}")
