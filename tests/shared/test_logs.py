"""No token, secret, code or authorization header in any log line of the connection flow."""

from __future__ import annotations

import json
import logging
import re

import pytest

from dev.servicenow import Fault
from shared.secrets import WEBHOOK_SECRET
from status_sync.events import sign
from status_sync.sync import StatusSync
from tests.conftest import CLIENT_SECRET, Harness
from tests.create_ticket.test_tickets import post

WEBHOOK_KEY = "c2VjcmV0LXdlYmhvb2sta2V5LWZvci10aGUtbG9nLXNjYW4="


def _secrets_seen(harness: Harness) -> set[str]:
    sim = harness.simulator
    values = {CLIENT_SECRET, *sim.access_tokens, *sim.refresh_tokens}
    for request in sim.requests:
        form = request.form() if request.method == "POST" else {}
        values.update(v for k, v in form.items() if k in ("code", "code_verifier", "token", "refresh_token"))
    return {v for v in values if v}


def test_no_secret_appears_in_any_log_line(harness, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    assert harness.connect().status_code == 200
    harness.call("provisioning", params={"live": "true"})
    harness.clock.advance(minutes=31)
    harness.call("provisioning", params={"live": "true"})  # a refresh
    harness.simulator.inject(Fault("status", status=401))
    harness.call("provisioning", params={"live": "true"})  # a 401, a renewal and a retry
    harness.simulator.clients[next(iter(harness.simulator.clients))].client_secret = "changed"
    harness.connect()  # a refused exchange
    harness.call("disconnect", "POST", "/disconnect", params={"force": "true"})
    harness.call("oauth_callback", params={"code": "leaked-code-value", "state": "bogus"})
    # Tickets, the sync and a push notice, with faults on the way.
    assert harness.connect().status_code != 200  # the client secret was changed above
    harness.simulator.clients[next(iter(harness.simulator.clients))].client_secret = CLIENT_SECRET
    assert harness.connect().status_code == 200
    # Reconnecting replaces the tokens: the old ones are revoked, and a refused revocation is logged by its code.
    harness.simulator.inject(Fault("status", status=400, path_prefix="/oauth_revoke_token.do"))
    assert harness.connect().status_code == 200
    harness.simulator.inject(Fault("commit_then_drop", method="POST"))
    harness.simulator.inject(Fault("status", status=429, headers={"Retry-After": "1"}))
    status, ticket = post(harness)
    assert status == 201
    harness.simulator.update("incident", ticket["sysId"], state="2")
    StatusSync(harness.services).run()
    harness.services.secrets.set(WEBHOOK_SECRET, WEBHOOK_KEY)
    body = json.dumps({"sys_id": ticket["sysId"], "state": "6", "sys_updated_on": "2030-01-01 00:00:00"}).encode()
    stamp = str(int(harness.clock.epoch()))
    for signature in (sign(WEBHOOK_KEY, stamp, body), "forged"):
        harness.call("servicenow_events", "POST", body=body,
                     headers={"X-ServiceNow-Timestamp": stamp, "X-ServiceNow-Signature": signature})  # fmt: skip
    # Secure Score: Graph tokens from the managed identity, a refresh with a 429, write-back, a refused control,
    # a forbidden identity.
    harness.graph.inject(Fault("status", status=429, headers={"Retry-After": "1"}, path_prefix="/v1.0/"))
    harness.call("refresh_recommendations", "POST", "/recommendations/refresh")
    post(harness, {"recommendation": {"id": "scid_2016"}})
    post(harness, {"recommendation": {"id": "MFARegistrationV2"}})
    harness.call("refresh_recommendations", "POST", "/recommendations/refresh")
    harness.graph.forbidden = True
    harness.call("refresh_recommendations", "POST", "/recommendations/refresh")

    graph_tokens = set(harness.graph.identity.issued)
    assert graph_tokens
    secrets = _secrets_seen(harness) | {"leaked-code-value", WEBHOOK_KEY} | graph_tokens
    assert len(secrets) >= 6
    lines = [f"{r.name} {r.getMessage()}" for r in caplog.records]
    assert len(lines) > 10  # the flow did log: the scan below is not vacuous
    assert any("replaced tokens could not be revoked" in line for line in lines)
    for line in lines:
        for secret in secrets:
            assert secret not in line, f"a secret leaked into the log: {line[:80]}"
        assert not re.search(r"authorization\s*[:=]|bearer\s+\S", line, re.IGNORECASE), line
