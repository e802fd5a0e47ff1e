"""What the fan-out tests share (tests/secure_score/test_fanout.py, tests/status_sync/test_fanout.py): a queue on the
session's Azurite, the app with the fan-out's settings, the messages a queue holds, and waiting for what another
thread (the local host's listener) does."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from dev.host.queues import QueueOptions
from shared import services as services_module
from tests.conftest import Harness, build_services

# The local host's listener as host.json has it, but with no wait between tries and a short poll: tests stay fast.
FAST = QueueOptions(batch_size=8, max_dequeue_count=5, visibility_timeout=0.0, max_polling_interval=0.2)


def empty_queue(connection: str, name: str) -> QueueClient:
    """The queue `name` on Azurite, created if missing and emptied of what an earlier test left."""
    client = QueueClient.from_connection_string(connection, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.clear_messages()
    return client


def with_queue(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, connection: str | None, threshold: int | str, **env: str
) -> None:
    """The harness's app again (on its network) with the fan-out's queue (Azurite's, or none) and FANOUT_THRESHOLD."""
    if connection is None:
        monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    else:
        monkeypatch.setenv("AzureWebJobsStorage", connection)
    monkeypatch.delenv("AzureWebJobsStorage__queueServiceUri", raising=False)
    harness.services.close()
    services_module.install(build_services(harness.tmp, harness.transport, harness.clock, harness.sleeps,
                                           harness.graph, **{"FANOUT_THRESHOLD": str(threshold), **env}))  # fmt: skip
    harness.services = services_module.get_services()


def messages(client: QueueClient) -> list[dict[str, Any]]:
    """The messages the queue holds (at most 32, the most one peek returns), decoded as the trigger decodes them."""
    return [json.loads(base64.b64decode(m.content)) for m in client.peek_messages(max_messages=32)]


def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)
