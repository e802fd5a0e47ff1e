"""The Graph and Entra ID simulators in a process of their own, as remote services are: their work (JSON, TLS, token
signing) never competes with the connector's for one interpreter, so the connector's time is its own.

`python -m bench.remote TENANTS LATENCY` prints one JSON line (the URLs, the managed identity, the CA, the customer
tenants), then answers `count` on stdin with the Graph GETs and PATCHes so far, and stops at end of input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev.entra import READER_APP_ID, EntraSimulator, make_certs
from dev.graph import GraphSimulator, ManagedIdentity
from dev.servicenow import serve


def main() -> None:
    tenants, latency = int(sys.argv[1]), float(sys.argv[2])
    folder = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    identity = ManagedIdentity()
    graph = GraphSimulator(identity)
    graph_server, graph_url = serve(graph)  # its managed-identity endpoint too, at {graph_url}/msi/token
    context, ca = make_certs(folder)
    entra = EntraSimulator(identity)
    entra.register_app(READER_APP_ID, ["https://bench.example/api/tenants/consent"], resource=graph.base_url)
    entra.trust_identity(READER_APP_ID, identity)
    graph.trust(entra)
    customers = [entra.add_tenant(f"customer{i:03d}.example", f"Customer {i:03d}") for i in range(tenants - 1)]
    for customer in customers:
        entra.grant(customer.id, READER_APP_ID)
        graph.tenant(customer.id, customer.name)  # its data made now, not while the run is measured
    entra_server, entra_url = serve(entra, tls=context)
    graph.latency = latency
    print(json.dumps({"graph": graph_url, "entra": entra_url, "ca": str(ca), "identityEndpoint": identity.endpoint,
                      "identityHeader": identity.header, "tenants": [c.id for c in customers],
                      "profiles": len(graph.profiles), "page": graph.page_size}), flush=True)  # fmt: skip
    for line in sys.stdin:
        if line.strip() == "count":
            gets = sum(1 for r in graph.requests if r.method == "GET")
            patches = sum(1 for r in graph.requests if r.method == "PATCH")
            print(json.dumps({"gets": gets, "patches": patches}), flush=True)
    graph_server.shutdown()
    entra_server.shutdown()


@dataclass
class Remote:
    """The simulators' process as a benchmark sees it: what it printed at start, and its Graph GETs so far."""

    started: dict[str, Any]
    process: subprocess.Popen[str]

    def gets(self) -> int:
        return self.counts()["gets"]

    def patches(self) -> int:
        return self.counts()["patches"]

    def counts(self) -> dict[str, int]:
        """The Graph GETs and PATCHes so far."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return {name: int(n) for name, n in json.loads(self.process.stdout.readline()).items()}


@contextmanager
def remote(tenants: int, latency: float) -> Iterator[Remote]:
    """`python -m bench.remote` for `tenants` tenants (the home tenant and the customers) at `latency` seconds per
    Graph request; stopped on exit."""
    command = [sys.executable, "-m", "bench.remote", str(tenants), str(latency)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            yield Remote(json.loads(process.stdout.readline()), process)
        finally:
            process.stdin.close()


if __name__ == "__main__":
    main()
