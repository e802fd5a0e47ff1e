"""The local host runs queue triggers as the Functions host does (dev/host/queues.py), against Azurite's Queue
service: a message's function gets its JSON and dequeue count, success deletes it, a failure hides it for
visibilityTimeout and tries again, the maxDequeueCount-th failure moves it to `{queue}-poison` as it came, and a
message stays hidden while its function runs longer than the time it was taken for."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from dev.host.queues import QueueOptions, load_options
from dev.host.server import LocalHost
from shared.queues import MAX_DEQUEUE_COUNT, WorkQueues, poison_queue
from tests.conftest import free_port

SETTING = "QUEUE_TEST_STORAGE"
FAST = QueueOptions(batch_size=4, max_dequeue_count=3, visibility_timeout=0.0, max_polling_interval=0.2)


def _app(queue: str, handle: Callable[[func.QueueMessage], None]) -> Any:
    bp = func.Blueprint()

    @bp.queue_trigger(arg_name="msg", queue_name=queue, connection=SETTING)
    def take(msg: func.QueueMessage) -> None:
        handle(msg)

    app = func.FunctionApp()
    app.register_functions(bp)
    return app.get_functions()


@pytest.fixture
def queue(azurite_queues: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(SETTING, azurite_queues)
    yield f"q{uuid.uuid4().hex[:20]}"


def _host(functions: Any, options: QueueOptions = FAST, **kwargs: Any) -> LocalHost:
    host = LocalHost(functions, "127.0.0.1", free_port(), queue_options=options, **kwargs)
    host.start()
    return host


def _until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def _count(connection: str, queue: str) -> int:
    props = QueueClient.from_connection_string(connection, queue).get_queue_properties()
    return int(props.approximate_message_count or 0)


def test_host_json_gives_the_queue_options_the_design_names() -> None:
    options = load_options(Path(__file__).resolve().parents[2] / "host.json")
    assert (options.batch_size, options.max_dequeue_count, options.visibility_timeout) == (8, 5, 30.0)
    assert options.max_polling_interval == 2.0  # not the host's minute: docs/benchmarks.md#secure-score-fan-out
    assert options.max_dequeue_count == MAX_DEQUEUE_COUNT  # what the app says of poison messages holds


def test_a_message_runs_once_with_its_json_and_is_deleted(queue: str, azurite_queues: str) -> None:
    seen: list[tuple[Any, int | None]] = []
    host = _host(_app(queue, lambda m: seen.append((m.get_json(), m.dequeue_count))))
    try:
        WorkQueues.from_connection_string(azurite_queues).send(queue, [{"kind": "refresh", "tenant": "t"}])
        _until(lambda: len(seen) == 1)
        time.sleep(0.5)
        assert seen == [({"kind": "refresh", "tenant": "t"}, 1)]
        _until(lambda: _count(azurite_queues, queue) == 0)
    finally:
        host.stop()


def test_a_failing_message_is_tried_max_dequeue_count_times_then_moves_to_poison_as_it_came(
    queue: str, azurite_queues: str
) -> None:
    tries: list[int | None] = []

    def fail(msg: func.QueueMessage) -> None:
        tries.append(msg.dequeue_count)
        raise RuntimeError("this message always fails")

    host = _host(_app(queue, fail))
    try:
        WorkQueues.from_connection_string(azurite_queues).send(queue, [{"kind": "refresh", "tenant": "bad"}])
        poison = QueueClient.from_connection_string(azurite_queues, poison_queue(queue))
        _until(lambda: bool(list(poison.peek_messages(max_messages=32))) if _exists(poison) else False)
        time.sleep(0.5)
        assert tries == [1, 2, 3]
        [moved] = list(poison.peek_messages(max_messages=32))
        assert json.loads(base64.b64decode(moved.content)) == {"kind": "refresh", "tenant": "bad"}
        assert _count(azurite_queues, queue) == 0
    finally:
        host.stop()


def test_a_failed_message_waits_out_the_visibility_timeout_before_its_next_try(queue: str, azurite_queues: str) -> None:
    at: list[float] = []

    def fail_once(msg: func.QueueMessage) -> None:
        at.append(time.monotonic())
        if msg.dequeue_count == 1:
            raise RuntimeError("first try fails")

    options = QueueOptions(batch_size=4, max_dequeue_count=3, visibility_timeout=2.0, max_polling_interval=0.2)
    host = _host(_app(queue, fail_once), options)
    try:
        WorkQueues.from_connection_string(azurite_queues).send(queue, [{"kind": "refresh", "tenant": "t"}])
        _until(lambda: len(at) == 2)
        assert at[1] - at[0] >= 1.9
    finally:
        host.stop()


def test_a_message_stays_hidden_while_its_function_outlasts_the_time_it_was_taken_for(
    queue: str, azurite_queues: str
) -> None:
    runs: list[int | None] = []
    release = threading.Event()

    def slow(msg: func.QueueMessage) -> None:
        runs.append(msg.dequeue_count)
        release.wait(5)

    host = _host(_app(queue, slow), processing_visibility=1.0)  # renewed every half second
    try:
        WorkQueues.from_connection_string(azurite_queues).send(queue, [{"kind": "refresh", "tenant": "t"}])
        _until(lambda: len(runs) == 1)
        time.sleep(3)  # three times the hiding: without renewal a second run would have started
        assert runs == [1]
        release.set()
        _until(lambda: _count(azurite_queues, queue) == 0)
        assert runs == [1]
    finally:
        release.set()
        host.stop()


def _exists(client: QueueClient) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True
