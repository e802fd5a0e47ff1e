"""No token, secret, code or authorization header in any log line of the connection flow."""

from __future__ import annotations

import logging
import re

import pytest

from dev.simulator import Fault
from tests.conftest import CLIENT_SECRET, Harness


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

    secrets = _secrets_seen(harness) | {"leaked-code-value"}
    assert len(secrets) >= 6
    lines = [f"{r.name} {r.getMessage()}" for r in caplog.records]
    assert len(lines) > 10  # the flow did log: the scan below is not vacuous
    for line in lines:
        for secret in secrets:
            assert secret not in line, f"a secret leaked into the log: {line[:80]}"
        assert not re.search(r"authorization\s*[:=]|bearer\s+\S", line, re.IGNORECASE), line
