"""Queue triggers, run the way the Functions host runs them, against a real queue service (Azurite locally).

What the host does, and so what this does (https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger,
"Poison messages", "Polling algorithm", "Concurrency"; host.json `extensions.queues`:
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json):
- it polls each queue, backing off exponentially while the queue is empty, up to `maxPollingInterval`;
- it takes `batchSize` messages at a time and asks for more once the messages in hand fall to `newBatchThreshold`;
- a message taken is hidden while its function runs: the WebJobs SDK receives it for 10 minutes and renews that
  while the function runs, so a host that dies mid-message frees it only when that time is up
  (https://github.com/Azure/azure-webjobs-sdk/issues/1040); `processing_visibility` is that time (tests shorten it);
- a function that returns deletes its message; one that raises makes it visible again after `visibilityTimeout`,
  and once its dequeue count reaches `maxDequeueCount` the message moves to `{queue}-poison` instead; a message
  already past `maxDequeueCount` when taken (its hosts kept dying) moves there without running (the SDK's
  QueueProcessor, BeginProcessingMessageAsync and CompleteProcessingMessageAsync:
  https://github.com/Azure/azure-webjobs-sdk/blob/3f4ec78be9f43bb041937425ced00b341883aa42/src/Microsoft.Azure.WebJobs.Extensions.Storage/Queues/QueueProcessor.cs).
Delivery is therefore at least once: a message can run twice.

Locally the connection is a connection string (the binding's `connection` app setting, Azurite's); identity-based
connections are Azure's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("dev.host.queues")

ROOT = Path(__file__).resolve().parents[2]
RECEIVE_FOR = 600.0  # seconds the WebJobs SDK hides a message it took, renewed while it runs (issue 1040 above)
MIN_POLL = 0.1  # the first wait after an empty poll; it doubles up to maxPollingInterval


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's defaults for what it leaves out."""

    batch_size: int = 16
    new_batch_threshold: int | None = None  # None: batch_size // 2
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0  # seconds a failed message stays hidden before its next try
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @property
    def threshold(self) -> int:
        return self.new_batch_threshold if self.new_batch_threshold is not None else self.batch_size // 2


def _timespan(value: Any, name: str) -> float:
    """A host.json TimeSpan ("00:00:30", "1.00:00:00") in seconds; maxPollingInterval may also be milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", str(value))
    if match is None:
        raise ValueError(f"host.json extensions.queues.{name} is not a TimeSpan (hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def load_options(host_json: Path = ROOT / "host.json") -> QueueOptions:
    """The queue options host.json gives (missing ones at the host's defaults)."""
    queues = json.loads(host_json.read_text(encoding="utf-8")).get("extensions", {}).get("queues", {})
    defaults = QueueOptions()
    batch = int(queues.get("batchSize", defaults.batch_size))
    if not 1 <= batch <= 32:
        raise ValueError("host.json extensions.queues.batchSize must be from 1 to 32")
    return QueueOptions(
        batch_size=batch,
        new_batch_threshold=int(queues["newBatchThreshold"]) if "newBatchThreshold" in queues else None,
        max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
        visibility_timeout=_timespan(queues.get("visibilityTimeout", "00:00:00"), "visibilityTimeout"),
        max_polling_interval=_timespan(queues.get("maxPollingInterval", "00:01:00"), "maxPollingInterval"),
        message_encoding=str(queues.get("messageEncoding", defaults.message_encoding)).lower(),
    )


class QueueListener:
    """One queue-triggered function's listener: polls its queue and runs the function for each message."""

    def __init__(
        self,
        name: str,
        queue: str,
        connection: str,
        call: Callable[..., Any],
        options: QueueOptions,
        *,
        processing_visibility: float = RECEIVE_FOR,
        stop: threading.Event | None = None,
    ) -> None:
        from azure.storage.queue import QueueClient

        self.name = name
        self.options = options
        self.processing_visibility = processing_visibility
        self._call = call
        # No retries inside a poll: the loop polls again itself, and a stop never waits out a retried call.
        bounded: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 20, "retry_total": 0}
        self._client = QueueClient.from_connection_string(connection, queue, **bounded)
        self._poison = QueueClient.from_connection_string(connection, f"{queue}-poison", **bounded)
        self._stop = stop or threading.Event()
        self._in_hand = threading.Semaphore(0)
        self._running = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(options.batch_size + options.threshold, thread_name_prefix=f"queue-{name}")
        self._thread: threading.Thread | None = None
        self.failing = False  # the queue service cannot be reached (said once, not at every poll)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name=f"queue-listener-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()
        self._poison.close()

    def _poll(self) -> None:
        wait = MIN_POLL
        while not self._stop.is_set():
            with self._lock:
                room = self._running <= self.options.threshold
            taken = self._take() if room else 0
            if taken:
                wait = MIN_POLL
                continue
            if room:  # empty: back off, as the host does, up to maxPollingInterval
                wait = min(wait * 2, self.options.max_polling_interval)
            self._stop.wait(wait if room else MIN_POLL)

    def _take(self) -> int:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            messages = list(self._client.receive_messages(
                messages_per_page=self.options.batch_size, max_messages=self.options.batch_size,
                visibility_timeout=max(1, round(self.processing_visibility))))  # fmt: skip
        except ResourceNotFoundError:
            return 0  # no queue yet: nothing was ever added
        except AzureError as exc:
            if not self.failing:
                log.error("Queue %s cannot be read (%s); the listener keeps trying", self._client.queue_name,
                          type(exc).__name__)  # fmt: skip
            self.failing = True
            return 0
        self.failing = False
        for message in messages:
            with self._lock:
                self._running += 1
            self._pool.submit(self._run, message)
        return len(messages)

    def _run(self, message: Any) -> None:
        try:
            self._process(message)
        except Exception as exc:  # the queue service failed us: the message comes back when its hiding ends
            log.error("Queue message %s of %s was left to its visibility timeout (%s)", message.id, self.name,
                      type(exc).__name__)  # fmt: skip
        finally:
            with self._lock:
                self._running -= 1

    def _process(self, message: Any) -> None:
        if message.dequeue_count > self.options.max_dequeue_count:
            self._to_poison(message)
            return
        renewal = _Renewal(self._client, message, self.processing_visibility)
        renewal.start()
        try:
            self._call(self._function_message(message))
            succeeded = True
        except Exception as exc:
            succeeded = False
            log.warning("Function %s failed on message %s (dequeue count %d): %s", self.name, message.id,
                        message.dequeue_count, type(exc).__name__)  # fmt: skip
        finally:
            receipt = renewal.finish()
        if succeeded:
            self._client.delete_message(message.id, receipt)
        elif message.dequeue_count >= self.options.max_dequeue_count:
            self._to_poison(message, receipt)
        else:
            self._client.update_message(message.id, receipt, visibility_timeout=round(self.options.visibility_timeout))

    def _to_poison(self, message: Any, receipt: str | None = None) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):  # made by an earlier poison message
            self._poison.create_queue()
        self._poison.send_message(message.content)  # as it came: still encoded as the queue holds it
        self._client.delete_message(message.id, receipt or message.pop_receipt)
        log.error("Message %s of %s moved to %s after %d tries", message.id, self.name, self._poison.queue_name,
                  message.dequeue_count)  # fmt: skip

    def _function_message(self, message: Any) -> Any:
        from azure.functions.queue import QueueMessage

        content = message.content or ""
        body = base64.b64decode(content) if self.options.message_encoding == "base64" else content.encode()
        return QueueMessage(  # type: ignore[no-untyped-call]  # azure-functions' own type is untyped
            id=message.id, body=body, dequeue_count=message.dequeue_count, expiration_time=message.expires_on,
            insertion_time=message.inserted_on, time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )  # fmt: skip


class _Renewal:
    """Keeps a message hidden while its function runs, renewing at half the hiding time, as the SDK does; the
    newest pop receipt is what deletes or releases the message afterwards."""

    def __init__(self, client: Any, message: Any, hide_for: float) -> None:
        self._client = client
        self._id = message.id
        self.receipt: str = message.pop_receipt
        self._hide_for = hide_for
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._renew, name=f"renew-{message.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _renew(self) -> None:
        from azure.core.exceptions import AzureError

        while not self._done.wait(self._hide_for / 2):
            with self._lock:
                if self._done.is_set():
                    return
                try:
                    updated = self._client.update_message(self._id, self.receipt,
                                                          visibility_timeout=max(1, round(self._hide_for)))  # fmt: skip
                except AzureError:
                    continue  # the next renewal tries again; the message may show before then
                self.receipt = updated.pop_receipt

    def finish(self) -> str:
        with self._lock:
            self._done.set()
        self._thread.join(timeout=30)
        return self.receipt


def connection_string(setting: str) -> str | None:
    """The binding's `connection` app setting as a connection string (None: unset, identity-based only, or a
    string that reaches no Queue service, e.g. Azurite's Table service alone)."""
    from shared.queues import has_queue_service

    value = (os.environ.get(setting) or "").strip()
    return value if value and has_queue_service(value) else None
