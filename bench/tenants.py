"""A many-tenant Secure Score refresh (docs/design.md#several-microsoft-tenants): 100 tenants (the home tenant and 99
customers) read in one run.

Over the simulators, in a process of their own (bench/remote.py): Graph answers each request after a real 100 ms,
the Entra ID simulator (over TLS, on loopback) gives each customer tenant's token to azure-identity's
ClientAssertionCredential, the managed-identity endpoint the home tenant's and the assertions. The run is measured;
the limit beside it is modelled: a tenant's critical path
is its profile pages one after the other (each names the next), its scores read beside them, so
ceil(profiles / page) x latency; the tenants go SECURE_SCORE_TENANT_PARALLELISM at a time, so the whole run takes at
least ceil(tenants / parallelism) of those. Token requests are not in the model (the Entra simulator answers at once).
The run measured is a scheduled refresh after the first: the first also reads each tenant's 90-day history (about
1.3 MB a tenant), which later ones keep up to date from the day or two they read; its time is printed beside.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import environment_kept, timed_servicenow
from bench.remote import remote
from dev.entra import READER_APP_ID, ca_bundle
from secure_score import tenants
from secure_score.api import SecureScoreRefresh
from shared.services import Services

TENANTS = 100
LATENCY = 0.100
PARALLELISM = 8
_ENV = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def run(directory: Path, remote: dict[str, Any], ask: Any) -> tuple[int, float, int, float]:
    """(Graph reads, wall seconds, tenants read ok) of a refresh of every tenant after the first, and the first's
    wall seconds."""
    bundle = ca_bundle(Path(remote["ca"]), directory)
    os.environ.update(REQUESTS_CA_BUNDLE=str(bundle), SSL_CERT_FILE=str(bundle))
    os.environ.update(IDENTITY_ENDPOINT=remote["identityEndpoint"], IDENTITY_HEADER=remote["identityHeader"])
    rig = timed_servicenow(directory, READER_APP_CLIENT_ID=READER_APP_ID, ENTRA_AUTHORITY=remote["entra"],
                           GRAPH_URL=remote["graph"], SECURE_SCORE_TENANT_PARALLELISM=str(PARALLELISM))  # fmt: skip
    services = rig.services

    def register(document: dict[str, Any]) -> None:
        for tenant_id in remote["tenants"]:
            document["tenants"][tenant_id] = {"id": tenant_id, "name": tenant_id, "state": "active"}

    tenants.change(services, register)
    started = time.perf_counter()
    SecureScoreRefresh(services).refresh()  # the first: each tenant's 90-day history, read once
    first = time.perf_counter() - started
    services.close()
    # A scheduled refresh comes hours later, when every Graph token has expired: new tokens, the same store.
    services = Services(services.settings, transport=rig.transport, store=services.store, secrets=services.secrets)
    before = ask()
    started = time.perf_counter()
    result = SecureScoreRefresh(services).refresh()  # the one every SECURE_SCORE_SCHEDULE runs from then on
    wall = time.perf_counter() - started
    reads = ask() - before
    ok = sum(1 for t in result.tenants if t["status"] == "ok")
    services.close()
    return reads, wall, ok, first


def main() -> None:
    with remote(TENANTS, LATENCY) as simulators, environment_kept(_ENV), tempfile.TemporaryDirectory() as tmp:
        started = simulators.started
        reads, wall, ok, first = run(Path(tmp), started, simulators.gets)
    profiles, page = started["profiles"], started["page"]
    pages = math.ceil(profiles / page)
    limit = TENANTS * (1 + pages)
    modelled = math.ceil(TENANTS / PARALLELISM) * pages * LATENCY
    print(f"secure score, {TENANTS} tenants ({ok} read ok), {profiles} profiles each in pages of {page}, "
          f"{LATENCY * 1000:.0f} ms per Graph request, {PARALLELISM} tenants at a time (simulators in their own "
          f"process); the first refresh, with each tenant's 90-day history: {first:.2f} s")  # fmt: skip
    print(f"secure score: tenants = {TENANTS}, Graph reads = {reads} (limit {limit}), wall = {wall:.2f} s, "
          f"modeled limit = {modelled:.2f} s, ratio = {wall / modelled:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
