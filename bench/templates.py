"""A posture template applied to many tenants (docs/templates.md): 10 controls in 100 tenants (the home tenant and 99
customers), each control at `Default`, so every one is a change: one PATCH each, 1,000 in all, and none when the same
template is applied again.

Over the simulators in a process of their own (bench/remote.py), Graph answering each request after a real 100 ms.
The limit beside the run is modelled: a tenant's critical path is its profile pages one after the other, then its
PATCHes 4 at a time (Graph's limit per app per tenant), so (pages + ceil(controls / 4)) x latency; the tenants go
`TENANTS_AT_ONCE` at a time. Token requests are not in the model (the Entra simulator answers at once).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import environment_kept, timed_servicenow
from bench.remote import Remote, remote
from dev.entra import READER_APP_ID, ca_bundle
from secure_score import tenants
from shared.graph import MAX_CONCURRENT
from templates.applying import TENANTS_AT_ONCE, apply
from templates.saving import save, version_of

TENANTS = 100
CONTROLS = ["DLPEnabled", "InformationProtectionPolicies", "mip_DLP_policies", "mdo_atpprotection", "mdo_zapspam",
            "mdo_zapphish", "mdo_safeattachments", "exo_mailboxaudit", "exo_outlookaddins",
            "AuditLogSearch"]  # fmt: skip
LATENCY = 0.100
_ENV = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def run(directory: Path, simulators: Remote) -> tuple[int, float, int, int]:
    """(PATCHes, wall seconds, controls applied) of the first apply, and the PATCHes of a second one."""
    started = simulators.started
    bundle = ca_bundle(Path(started["ca"]), directory)
    os.environ.update(REQUESTS_CA_BUNDLE=str(bundle), SSL_CERT_FILE=str(bundle))
    os.environ.update(IDENTITY_ENDPOINT=started["identityEndpoint"], IDENTITY_HEADER=started["identityHeader"])
    services = timed_servicenow(directory, READER_APP_CLIENT_ID=READER_APP_ID, ENTRA_AUTHORITY=started["entra"],
                                GRAPH_URL=started["graph"]).services  # fmt: skip

    def register(document: dict[str, Any]) -> None:
        for tenant_id in started["tenants"]:
            document["tenants"][tenant_id] = {"id": tenant_id, "name": tenant_id, "state": "active"}

    tenants.change(services, register)
    template = save(services, {"name": "Mail filter", "controls": CONTROLS, "state": "ThirdParty",
                               "comment": "Covered by the mail filter", "tenants": "all"}, "bench")  # fmt: skip
    before = simulators.patches()
    began = time.perf_counter()
    outcome = apply(services, template, version_of(template), "bench", False)
    wall = time.perf_counter() - began
    writes = simulators.patches() - before
    again = apply(services, template, version_of(template), "bench", False)
    services.close()
    assert not outcome.failed and not again.failed, (outcome.failed[:3], again.failed[:3])
    return writes, wall, outcome.applied, simulators.patches() - before - writes


def main() -> None:
    with remote(TENANTS, LATENCY) as simulators, environment_kept(_ENV), tempfile.TemporaryDirectory() as tmp:
        writes, wall, applied, second = run(Path(tmp), simulators)
    pages = math.ceil(simulators.started["profiles"] / simulators.started["page"])
    limit = TENANTS * len(CONTROLS)
    modelled = math.ceil(TENANTS / TENANTS_AT_ONCE) * (pages + math.ceil(len(CONTROLS) / MAX_CONCURRENT)) * LATENCY
    print(f"templates, {len(CONTROLS)} controls in {TENANTS} tenants, {LATENCY * 1000:.0f} ms per Graph request, "
          f"{TENANTS_AT_ONCE} tenants at a time, {MAX_CONCURRENT} requests in flight per tenant; applied again: "
          f"{second} writes ({applied} applied the first time)")  # fmt: skip
    print(f"templates: apply {len(CONTROLS)} controls to {TENANTS} tenants, Graph writes = {writes} (limit {limit}), "
          f"wall = {wall:.2f} s, modeled limit = {modelled:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
