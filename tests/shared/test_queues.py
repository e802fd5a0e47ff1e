"""The fan-out's queues (shared/queues.py) against Azurite's Queue service: what the connector sends is what the
Functions host decodes (base64 JSON), and a poison queue's messages are read back for provisioning."""

from __future__ import annotations

import base64
import json
import uuid

from azure.storage.queue import QueueClient

from shared.queues import PoisonPeek, WorkQueues, open_queues, poison_queue


def _name() -> str:
    return f"q{uuid.uuid4().hex[:20]}"


def test_sent_messages_are_base64_json_as_the_queue_trigger_decodes_them(azurite_queues: str) -> None:
    queues = WorkQueues.from_connection_string(azurite_queues)
    name = _name()
    assert queues.send(name, [{"kind": "refresh", "tenant": "a"}, {"kind": "refresh", "tenant": "b"}]) == 2
    raw = QueueClient.from_connection_string(azurite_queues, name)
    bodies = [json.loads(base64.b64decode(m.content)) for m in raw.receive_messages(max_messages=32)]
    assert sorted(b["tenant"] for b in bodies) == ["a", "b"]
    queues.close()


def test_a_poison_queue_is_read_back_as_it_sits_and_a_body_that_is_not_base64_is_none(azurite_queues: str) -> None:
    queues = WorkQueues.from_connection_string(azurite_queues)
    name = _name()
    assert queues.poisoned(name) == PoisonPeek(0, [])  # no poison queue yet: nothing failed (and none is made)
    raw = QueueClient.from_connection_string(azurite_queues, poison_queue(name))
    raw.create_queue()
    raw.send_message(base64.b64encode(b'{"kind":"refresh","tenant":"t1","due":"2026-01-01"}').decode())
    raw.send_message("not base64 %%%")  # one such message never hides the others
    raw.send_message(base64.b64encode(b"not json").decode())
    shown = queues.poisoned(name)
    assert shown.count == 3
    assert [m.body for m in shown.messages] == [b'{"kind":"refresh","tenant":"t1","due":"2026-01-01"}', None,
                                                b"not json"]  # fmt: skip
    assert all(m.inserted_on for m in shown.messages)
    assert len(raw.peek_messages(max_messages=32)) == 3  # peeked, not taken
    queues.close()


def test_the_identity_based_uri_wins_and_no_storage_means_no_queues(azurite_queues: str) -> None:
    assert open_queues({}) is None
    by_string = open_queues({"AzureWebJobsStorage": azurite_queues})
    assert by_string is not None
    by_string.close()
    identity = "https://acct.queue.core.windows.net"
    by_identity = open_queues({"AzureWebJobsStorage": azurite_queues, "AzureWebJobsStorage__queueServiceUri": identity})
    assert by_identity is not None
    assert by_identity._service.url.startswith("https://acct.queue.core.windows.net")
    assert by_identity._service.credential is not None
    by_identity.close()


def test_a_connection_string_naming_other_services_endpoints_but_not_the_queues_has_no_queue(azurite: str) -> None:
    """Azurite's Table service alone (the string names TableEndpoint, no QueueEndpoint): no queue, so the timers work
    inline and the local host starts no listener, instead of polling a queue host derived from the account name."""
    assert open_queues({"AzureWebJobsStorage": azurite}) is None
    with_queue = f"{azurite.rstrip(';')};QueueEndpoint=http://127.0.0.1:1/devstoreaccount1"
    assert open_queues({"AzureWebJobsStorage": with_queue}) is not None
    account = "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=a2V5;EndpointSuffix=core.windows.net"
    assert open_queues({"AzureWebJobsStorage": account}) is not None  # endpoints derived from the account: all four
