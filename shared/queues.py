"""The fan-out's Storage queues (docs/architecture.md#fan-out-on-storage-queues): the connector adds one message per
work item; the Functions host runs the queue-triggered function that takes each one, scaled out across instances
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger).

The account is the app's own storage: identity-based in Azure (`AzureWebJobsStorage__queueServiceUri`, with
`AzureWebJobsStorage__clientId` for the user-assigned identity), a connection string locally (Azurite). Messages
are JSON, base64-encoded: host.json's `messageEncoding` defaults to `base64`, so that is what the trigger decodes
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json).
azure-storage-queue is imported on first use, never at cold start.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.problems import StoreUnavailable

SECURE_SCORE_REFRESH = "secure-score-refresh"  # one message per tenant due: {"kind": "refresh", "tenant", "due"}
STATUS_SYNC = "status-sync"  # one message per ServiceNow connection: {"kind": "sync", "connection", "due"}
# One message per tenant of a template's apply: {"kind": "apply", "template", "version", "tenant", "run", "by",
# "overwrite", "due"} (templates/fanout.py).
TEMPLATE_APPLY = "template-apply"
POISON = "{queue}-poison"  # where the Functions host moves a message after maxDequeueCount failed tries
MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount (a test holds the two equal)
PEEK_LIMIT = 32  # the most messages one Peek Messages call returns
# Every call to the queue service has a total deadline: the connect, then the whole answer.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 20
POISON_DEADLINE = 5.0  # seconds for a poison queue's whole read (a page and provisioning wait on it)


MAX_MESSAGE = 1024  # bytes: a work message names one tenant or connection and a time
_DUE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?\+00:00")


def decode_work(body: bytes, kind: str, member: str) -> tuple[str, str] | None:
    """(`member`'s value, `due`) of a work message the connector queued (`{"kind", member, "due"}`, exactly those,
    each a string, `due` a UTC ISO time), or None for anything else, which is never acted on: a message is input
    like any other, checked here once, bounded in size and nesting."""
    if len(body) > MAX_MESSAGE:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: brackets nested past the limit
        return None
    if not isinstance(data, dict) or set(data) != {"kind", member, "due"} or data["kind"] != kind:
        return None
    value, due = data[member], data["due"]
    if not isinstance(value, str) or not isinstance(due, str) or not _DUE.fullmatch(due):
        return None
    try:
        datetime.fromisoformat(due)
    except ValueError:
        return None
    return value, due


def poison_queue(queue: str) -> str:
    return POISON.format(queue=queue)


def has_queue_service(connection_string: str) -> bool:
    """Whether a storage connection string reaches a Queue service. One that names its services' endpoints
    (`TableEndpoint=...`) reaches only those: without `QueueEndpoint` it has no queue, rather than one derived from
    the account name (https://learn.microsoft.com/azure/storage/common/storage-configure-connection-string#create-a-connection-string-for-an-explicit-storage-endpoint).
    Such a string is an emulator's with its Table service alone; the timers then work inline."""
    members = {part.split("=", 1)[0].strip().lower() for part in connection_string.split(";") if "=" in part}
    explicit = {"blobendpoint", "tableendpoint", "fileendpoint", "queueendpoint"} & members
    return not explicit or "queueendpoint" in members


class WorkQueues:
    """The app's queues on one storage account: send work, and read what landed in a poison queue."""

    def __init__(self, service: Any) -> None:
        self._service = service  # azure.storage.queue.QueueServiceClient
        self._created: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str) -> WorkQueues:
        from azure.storage.queue import QueueServiceClient

        return cls(QueueServiceClient.from_connection_string(connection_string, **_options()))

    @classmethod
    def from_endpoint(cls, endpoint: str, client_id: str | None) -> WorkQueues:
        from azure.identity import DefaultAzureCredential
        from azure.storage.queue import QueueServiceClient

        credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return cls(QueueServiceClient(endpoint, credential=credential, **_options()))

    def _queue(self, name: str) -> Any:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

        client = self._service.get_queue_client(
            name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
        )
        with self._lock:
            if name not in self._created:
                with contextlib.suppress(ResourceExistsError):  # another instance made it first
                    client.create_queue()
                self._created.add(name)
        return client

    def send(self, queue: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """Add each message (as JSON) to `queue`, created when missing; how many were added. A storage failure
        is `store_unavailable`: what was added stays (each message's work is idempotent)."""
        from azure.core.exceptions import AzureError

        sent = 0
        try:
            client = self._queue(queue)
            for message in messages:
                client.send_message(json.dumps(message, separators=(",", ":")))
                sent += 1
        except AzureError as exc:
            raise StoreUnavailable(
                f"The storage queue {queue} did not take the work ({type(exc).__name__}) after {sent} message(s)."
            ) from None
        return sent

    def poisoned(self, queue: str, seconds: float = POISON_DEADLINE) -> PoisonPeek:
        """What sits in `queue`'s poison queue: its approximate length and its oldest messages (at most PEEK_LIMIT),
        as they are, within `seconds` in all (a `StoreUnavailable` past it, or when the service fails). Peeking
        changes nothing; a missing poison queue is an empty one (nothing failed yet), and is not created."""
        from shared.deadlines import call_within

        try:
            return call_within(seconds, lambda: self._peek(poison_queue(queue)), "the poison queue read")
        except TimeoutError:
            raise StoreUnavailable(f"The poison queue of {queue} did not answer within {seconds:g} s.") from None

    def _peek(self, name: str) -> PoisonPeek:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        # No decode policy: one message that is not base64 (anyone with access can add one) must not hide the others.
        client = self._service.get_queue_client(name)
        try:
            count = client.get_queue_properties(retry_total=0).approximate_message_count or 0
            peeked = client.peek_messages(max_messages=PEEK_LIMIT, retry_total=0)
        except ResourceNotFoundError:
            return PoisonPeek(0, [])
        except AzureError as exc:
            raise StoreUnavailable(f"The poison queue {name} could not be read ({type(exc).__name__}).") from None
        found = [PoisonMessage(_unbase64(m.content), m.inserted_on.isoformat() if m.inserted_on else None)
                 for m in peeked]  # fmt: skip
        return PoisonPeek(max(count, len(found)), found)

    def close(self) -> None:
        self._service.close()


@dataclass(frozen=True)
class PoisonMessage:
    """One message of a poison queue as it sits there: its body (None: not base64, so never one the connector
    sent) and when it was first queued there."""

    body: bytes | None
    inserted_on: str | None


@dataclass(frozen=True)
class PoisonPeek:
    count: int  # the queue's approximate length (the service's own count: it may lag by a moment)
    messages: list[PoisonMessage]  # the oldest, at most PEEK_LIMIT


def _unbase64(content: Any) -> bytes | None:
    if not isinstance(content, str):
        return None
    try:
        return base64.b64decode(content, validate=True)
    except (ValueError, binascii.Error):
        return None


def _options() -> dict[str, Any]:
    return {"connection_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT}


def open_queues(env: Mapping[str, str] = os.environ) -> WorkQueues | None:
    """The app's queues as its settings name them: the identity-based queue URI first, then the connection string;
    None when neither is set (a deployment that has no queue does its work in the timer itself)."""
    endpoint = (env.get("AzureWebJobsStorage__queueServiceUri") or "").strip()
    if endpoint:
        return WorkQueues.from_endpoint(endpoint, (env.get("AzureWebJobsStorage__clientId") or "").strip() or None)
    connection = (env.get("AzureWebJobsStorage") or "").strip()
    if connection and has_queue_service(connection):
        return WorkQueues.from_connection_string(connection)
    return None
