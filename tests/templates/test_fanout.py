"""A template's apply fanned out on a Storage queue (templates/fanout.py, queued.py), against Azurite's Queue service,
the local host's queue listener and the Graph simulator: from FANOUT_THRESHOLD tenants the apply answers 202 with
one message per tenant; each tenant is applied once however often its message comes; an edit after queueing is
never written; a queue that refuses part of the work leaves the rest to the request, never a tenant twice; a
message failing every try shows on the run's progress and in provisioning with its fix."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dev.entra import FABRIKAM, READER_APP_ID
from dev.host.server import LocalHost
from shared.queues import poison_queue
from templates.fanout import QUEUE, ApplyMessage, short_by
from templates.queued import ApplyFailed, apply_queued
from tests.conftest import Harness, concurrently, free_port
from tests.queue_support import FAST, empty_queue, messages, until, with_queue
from tests.secure_score.test_tenants import added, entra, msp  # noqa: F401 (fixtures)
from tests.templates_support import DLP, body, created, delete, patches, put, states, template

QUIET = {"STATUS_SYNC_SCHEDULE": "0 0 0 1 1 *", "SECURE_SCORE_SCHEDULE": "0 0 0 1 1 *"}  # the timers stay quiet


def _apply(harness: Harness, template_id: str) -> Any:
    return harness.call("apply_template", "POST", f"/templates/{template_id}/apply", body=b"",
                        route_params={"id": template_id})  # fmt: skip


def _progress(harness: Harness, template_id: str, run: str) -> Any:
    return harness.call("template_apply_progress", path=f"/templates/{template_id}/applies/{run}",
                        route_params={"id": template_id, "run": run})  # fmt: skip


def _with_reader(harness: Harness, entra_url: str) -> dict[str, str]:
    return {"READER_APP_CLIENT_ID": READER_APP_ID, "ENTRA_AUTHORITY": entra_url,
            "APP_URL": "https://connector.example.net"}  # fmt: skip


def _run_host(monkeypatch: pytest.MonkeyPatch, indexed_functions: dict[str, Any], done: Any) -> None:
    for name, schedule in QUIET.items():
        monkeypatch.setenv(name, schedule)
    host = LocalHost(indexed_functions.values(), "127.0.0.1", free_port(), queue_options=FAST)
    host.start()
    try:
        until(done)
    finally:
        host.stop()


def test_below_the_threshold_the_apply_runs_inline_and_queues_nothing(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = empty_queue(azurite_queues, QUEUE)
    with_queue(harness, monkeypatch, azurite_queues, 2)  # one tenant: below 2
    saved = created(harness, template())
    response = _apply(harness, saved["id"])
    assert response.status_code == 200 and body(response)["applied"] == 3
    assert messages(client) == []


def test_from_the_threshold_each_tenant_is_queued_and_applied_once_by_the_queue_function(
    msp: Harness, entra: Any, azurite_queues: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    indexed_functions: dict[str, Any],
) -> None:  # fmt: skip
    added(msp, entra, FABRIKAM)
    client = empty_queue(azurite_queues, QUEUE)
    with_queue(msp, monkeypatch, azurite_queues, 2, **_with_reader(msp, entra.url))
    saved = created(msp, template(tenants=["home", FABRIKAM.id]))
    response = _apply(msp, saved["id"])
    answer = body(response)
    assert response.status_code == 202 and answer["status"] == "queued" and answer["queued"] == 2
    progress = f"/api/templates/{saved['id']}/applies/{answer['run']}"
    assert answer["progress"] == response.headers["Location"] == progress
    queued = messages(client)
    assert sorted(m["tenant"] for m in queued) == sorted(["home", FABRIKAM.id])
    assert {(m["kind"], m["template"], m["version"], m["run"], m["overwrite"]) for m in queued} == {
        ("apply", saved["id"], saved["version"], answer["run"], False)}  # fmt: skip
    assert patches(msp) == []  # nothing written yet: the queue does it
    first = body(_progress(msp, saved["id"], answer["run"]))
    assert (first["queued"], first["done"], first["finished"]) == (2, 0, False)
    _run_host(monkeypatch, indexed_functions, lambda: body(_progress(msp, saved["id"], answer["run"]))["finished"])
    done = body(_progress(msp, saved["id"], answer["run"]))
    assert (done["done"], done["applied"], done["unchanged"], done["failed"]) == (2, 6, 0, [])
    assert len(patches(msp, FABRIKAM.id)) == 3 and len(patches(msp)) == 6
    assert states(msp, DLP, FABRIKAM.id) == dict.fromkeys(DLP, "ThirdParty")


def test_a_repeated_message_writes_nothing_again(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = empty_queue(azurite_queues, QUEUE)
    with_queue(harness, monkeypatch, azurite_queues, 1)
    saved = created(harness, template())
    run = body(_apply(harness, saved["id"]))["run"]
    [message] = messages(client)
    raw = json.dumps(message).encode()
    assert apply_queued(harness.services, raw, 1) == "applied" and len(patches(harness)) == 3
    assert apply_queued(harness.services, raw, 2) == "done"  # delivered again (at least once): a no-op
    assert len(patches(harness)) == 3
    shown = body(_progress(harness, saved["id"], run))
    assert (shown["applied"], shown["done"], shown["finished"]) == (3, 1, True)
    assert delete(harness, saved["id"]).status_code == 204  # its runs go with it
    assert harness.services.store.list_documents(f"template-run:{saved['id']}:") == {}
    assert apply_queued(harness.services, raw, 3) == "gone" and len(patches(harness)) == 3


def test_a_template_edited_after_queueing_is_not_written(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = empty_queue(azurite_queues, QUEUE)
    with_queue(harness, monkeypatch, azurite_queues, 1)
    saved = created(harness, template())
    run = body(_apply(harness, saved["id"]))["run"]
    [message] = messages(client)
    edited = put(harness, saved["id"], template(comment="Covered by the new mail filter"))
    assert edited.status_code == 200, edited.get_body()
    assert apply_queued(harness.services, json.dumps(message).encode(), 1) == "template_changed"
    assert patches(harness) == []
    shown = body(_progress(harness, saved["id"], run))
    assert [(f["tenant"], f["code"]) for f in shown["failed"]] == [("home", "template_changed")]
    assert (shown["applied"], shown["finished"]) == (0, True)


class _Refusing(BaseHTTPRequestHandler):
    """Azurite's Queue service behind a door that takes `allow` messages, then answers 403 as Azure Storage does
    for a request it refuses (https://learn.microsoft.com/rest/api/storageservices/queue-service-error-codes)."""

    protocol_version = "HTTP/1.1"  # the SDK keeps its connection open between requests (each answer has a length)
    target: tuple[str, int] = ("127.0.0.1", 0)
    allow = 1
    lock = threading.Lock()

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        if self.command == "POST" and self.path.split("?")[0].endswith("/messages"):
            with self.lock:
                refused = type(self).allow <= 0
                type(self).allow -= 1
            if refused:
                error = (
                    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationFailure</Code><Message>'
                    b"This request is not authorized to perform this operation.</Message></Error>"
                )
                self.send_response(403)
                self.send_header("x-ms-error-code", "AuthorizationFailure")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
        upstream = http.client.HTTPConnection(*self.target, timeout=10)
        upstream.request(self.command, self.path, data, {k: v for k, v in self.headers.items() if k != "Host"})
        answer = upstream.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing(azurite_queues: str) -> Iterator[str]:
    """Azurite's connection string with its queue endpoint behind `_Refusing`."""
    parts = dict(p.split("=", 1) for p in azurite_queues.split(";") if "=" in p)
    queue = urlsplit(parts["QueueEndpoint"])
    _Refusing.target, _Refusing.allow = (queue.hostname or "127.0.0.1", queue.port or 0), 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    parts["QueueEndpoint"] = f"http://127.0.0.1:{server.server_address[1]}{queue.path}"
    try:
        yield ";".join(f"{k}={v}" for k, v in parts.items()) + ";"
    finally:
        server.shutdown()
        server.server_close()


def test_a_queue_refusing_part_of_the_work_leaves_the_rest_to_the_request_and_no_tenant_twice(
    msp: Harness, entra: Any, azurite_queues: str, refusing: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:  # fmt: skip
    added(msp, entra, FABRIKAM)
    client = empty_queue(azurite_queues, QUEUE)
    with_queue(msp, monkeypatch, refusing, 2, **_with_reader(msp, entra.url))
    saved = created(msp, template(tenants=["home", FABRIKAM.id]))
    response = _apply(msp, saved["id"])
    answer = body(response)
    assert response.status_code == 202 and (answer["queued"], answer["inline"]) == (1, 1)
    [message] = messages(client)  # the home tenant's went out; Fabrikam's was refused and applied by the request
    assert message["tenant"] == "home" and patches(msp, FABRIKAM.id) != [] and len(patches(msp)) == 3
    shown = body(_progress(msp, saved["id"], answer["run"]))
    assert (shown["queued"], shown["done"], shown["applied"], shown["finished"]) == (2, 1, 3, False)
    assert apply_queued(msp.services, json.dumps(message).encode(), 1) == "applied"
    assert len(patches(msp)) == 6 and len(patches(msp, FABRIKAM.id)) == 3  # each tenant written once
    shown = body(_progress(msp, saved["id"], answer["run"]))
    assert (shown["done"], shown["applied"], shown["finished"]) == (2, 6, True)


def test_a_message_failing_every_try_shows_on_the_progress_and_in_provisioning_with_its_fix(
    connected: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch, indexed_functions: dict[str, Any]
) -> None:
    harness = connected  # provisioning lists the app's checks once ServiceNow is connected
    client, poison = empty_queue(azurite_queues, QUEUE), empty_queue(azurite_queues, poison_queue(QUEUE))
    with_queue(harness, monkeypatch, azurite_queues, 1)
    saved = created(harness, template())
    harness.graph.forbidden = True
    run = body(_apply(harness, saved["id"]))["run"]
    [message] = messages(client)
    with pytest.raises(ApplyFailed):  # not the last try: nothing recorded, the host tries again
        apply_queued(harness.services, json.dumps(message).encode(), 1)
    assert body(_progress(harness, saved["id"], run))["done"] == 0
    _run_host(monkeypatch, indexed_functions, lambda: messages(poison) != [])
    assert messages(poison) == [message] and messages(client) == []
    shown = body(_progress(harness, saved["id"], run))
    [failed] = shown["failed"]
    assert failed["code"] == "secure_score_forbidden" and failed["poisoned"]["queue"] == "template-apply-poison"
    assert shown["finished"] and patches(harness) == []
    checks = body(harness.call("provisioning", path="/provisioning"))["checks"]
    [check] = [c for c in checks if c["name"] == "template_apply_queue"]
    assert not check["ok"] and check["code"] == "template_apply_poisoned"
    assert f"/api/templates/{saved['id']}/applies/{run}" in check["remediation"]
    assert "template-apply-poison" in check["remediation"]


@pytest.mark.parametrize(
    "change",
    [{"kind": "refresh"}, {"template": "../x"}, {"version": "v1"}, {"tenant": "contoso"}, {"run": "1"},
     {"by": 1}, {"by": "x" * 300}, {"overwrite": "yes"}, {"due": "yesterday"}, {"more": 1}],
)  # fmt: skip
def test_a_message_the_connector_did_not_queue_is_dropped_without_reading(
    harness: Harness, change: dict[str, Any]
) -> None:
    good = {"kind": "apply", "template": "a" * 12, "version": "0" * 20, "tenant": "home", "run": "0" * 32,
            "by": "admin@contoso.com", "overwrite": False, "due": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    for raw in (json.dumps({**good, **change}).encode(), b"[" * 1000, b"\xff", b"x" * 2000):
        assert apply_queued(harness.services, raw, 1) == "ignored"
    assert harness.graph.requests == []


def test_an_unknown_run_is_not_found(harness: Harness) -> None:
    saved = created(harness, template())
    for run in ("0" * 32, "../x", "A" * 32):
        response = _progress(harness, saved["id"], run)
        assert response.status_code == 404 and body(response)["code"] == "not_found"


@pytest.mark.parametrize("by", ["admin@contoso.com", "é" * 300, "\U0001f600" * 300, "\u2028" * 100, None])
def test_an_admin_name_of_any_length_or_script_still_makes_a_message_the_function_takes(by: str | None) -> None:
    message = ApplyMessage("a" * 12, "0" * 20, "5f1c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f", "0" * 32, short_by(by), True,
                           "2026-01-01T00:00:00.123456+00:00")  # fmt: skip
    raw = json.dumps(message.to_json(), separators=(",", ":")).encode()  # as shared/queues.py sends it
    assert ApplyMessage.parse(raw) == message


_GOOD = {"kind": "apply", "template": "a" * 12, "version": "0" * 20, "tenant": "home", "run": "0" * 32, "by": None,
         "overwrite": False, "due": "2026-01-01T00:00:00+00:00"}  # fmt: skip
_VALUES = st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.lists(st.integers(), max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100) | st.dictionaries(st.sampled_from([*_GOOD, "more"]), _VALUES).map(
    lambda changed: json.dumps({**_GOOD, **changed}).encode()))  # fmt: skip
def test_any_body_parses_to_a_message_the_connector_would_queue_or_none(raw: bytes) -> None:
    message = ApplyMessage.parse(raw)
    if message is not None:  # only ever what to_json makes: the same message again
        assert json.loads(raw) == message.to_json() and ApplyMessage.parse(raw) == message


def test_a_message_whose_tries_all_stopped_midway_shows_on_the_progress_from_the_poison_queue(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance that died on every try noted nothing: the Functions host moved the message all the same."""
    client, poison = empty_queue(azurite_queues, QUEUE), empty_queue(azurite_queues, poison_queue(QUEUE))
    with_queue(harness, monkeypatch, azurite_queues, 1)
    saved = created(harness, template())
    run = body(_apply(harness, saved["id"]))["run"]
    [message] = client.receive_messages()
    poison.send_message(message.content)  # as the host moves it, base64 and all
    client.delete_message(message)
    shown = body(_progress(harness, saved["id"], run))
    assert [(f["tenant"], f["code"]) for f in shown["failed"]] == [("home", "apply_poisoned")]
    assert shown["failed"][0]["poisoned"]["queue"] == "template-apply-poison" and shown["finished"]


def test_two_copies_of_a_message_at_once_write_each_control_once(
    harness: Harness, azurite_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = empty_queue(azurite_queues, QUEUE)
    with_queue(harness, monkeypatch, azurite_queues, 1)
    saved = created(harness, template())
    run = body(_apply(harness, saved["id"]))["run"]
    raw = json.dumps(messages(client)[0]).encode()
    harness.graph.latency = 0.3  # the first copy is still writing when the second takes the tenant

    def copy(_: int) -> str:
        try:
            return apply_queued(harness.services, raw, 1)
        except ApplyFailed:  # the tenant's lease is held: the host tries this copy again later
            return "again"

    assert sorted(concurrently(2, copy)) == ["again", "applied"]
    assert len(patches(harness)) == 3
    assert apply_queued(harness.services, raw, 2) == "done" and len(patches(harness)) == 3
    assert body(_progress(harness, saved["id"], run))["applied"] == 3


def test_without_a_queue_or_when_the_queue_takes_nothing_the_apply_runs_inline(
    harness: Harness, azurite_queues: str, refusing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = created(harness, template())
    with_queue(harness, monkeypatch, None, 1)
    response = _apply(harness, saved["id"])
    assert response.status_code == 200 and body(response)["applied"] == 3
    client = empty_queue(azurite_queues, QUEUE)
    with_queue(harness, monkeypatch, refusing, 1)
    _Refusing.allow = 0  # the queue refuses the first message: nothing queued, the request applies it all
    response = _apply(harness, saved["id"])
    assert response.status_code == 200 and body(response)["unchanged"] == 3
    assert messages(client) == [] and harness.services.store.list_documents("template-run:") == {}
