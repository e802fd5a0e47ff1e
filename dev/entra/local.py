"""`make run`'s Entra ID simulator: the reader app registered with its federated credential naming the simulated
managed identity, the Graph simulator trusting its tokens, the CA the app process trusts, the connector's settings,
and what to tell the person at the terminal about adding the two simulated customer tenants.

As in Entra ID, a new consent reaches tokens only after a while (`CONSENT_DELAY`, about 20 s here; minutes in real
tenants), so a newcomer sees the tenant `confirming` and then `active`. `ENTRA_SIMULATOR_CONSENT_DELAY` sets it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dev.entra import persist
from dev.entra.directory import READER_APP_ID
from dev.entra.simulator import EntraSimulator
from dev.entra.tenants import CUSTOMERS, FABRIKAM, TAILSPIN
from dev.entra.tls import ca_bundle, write_ca

if TYPE_CHECKING:
    from dev.graph.simulator import GraphSimulator


CONSENT_DELAY = 20.0


class StateUnreadable(Exception):
    """The saved state cannot be read; the message names the file."""


def start(
    entra: EntraSimulator, url: str, graph: GraphSimulator, ca_pem: bytes, data_dir: Path, port: int, auth: str = ""
) -> list[str]:
    """Point the connector at the simulator (settings and trust), and the lines that say how to use it (`auth`: the
    curl option that signs a terminal's request in, as `make run` prints it)."""
    try:
        found = persist.keep(entra, data_dir)
    except (ValueError, KeyError, TypeError) as exc:
        raise StateUnreadable(f"{data_dir / persist.STATE_FILE} ({type(exc).__name__}: {str(exc)[:200]})") from None
    app_url = f"http://localhost:{port}"
    entra.register_app(READER_APP_ID, [f"{app_url}/api/tenants/consent"], resource=graph.base_url)
    entra.trust_identity(READER_APP_ID, graph.identity)
    entra.consent_delay = float(os.environ.get("ENTRA_SIMULATOR_CONSENT_DELAY") or CONSENT_DELAY)
    graph.trust(entra)
    for tenant in CUSTOMERS:
        graph.tenant(tenant.id, tenant.name)  # listed on the Graph simulator's page from the start
    ca = write_ca(ca_pem, data_dir)
    bundle = ca_bundle(ca, data_dir)
    # azure-identity's requests transport reads REQUESTS_CA_BUNDLE, httpx reads SSL_CERT_FILE (tls.py).
    os.environ.update(READER_APP_CLIENT_ID=READER_APP_ID, ENTRA_AUTHORITY=url, APP_URL=app_url,
                      REQUESTS_CA_BUNDLE=str(bundle), SSL_CERT_FILE=str(bundle))  # fmt: skip
    consented = [t.name for t in entra.tenants.values() if entra.consent_of(t.id, READER_APP_ID)]
    example = '{"tenant": "' + FABRIKAM.domain + '", "name": "' + FABRIKAM.name + '"}'
    customers = ", ".join(f"{t.name} ({t.domain})" for t in CUSTOMERS)
    lines = [
        f"Other Microsoft tenants: the Entra ID simulator at {url} (tenants and consent: {url}/sim), its "
        f"certificate from the project's own local CA {ca} (a browser warns once on the consent page).",
        f'  Two simulated customer tenants can be added, {customers}: on the page\'s "Add a tenant", or',
        f"  curl -X POST {app_url}/api/tenants -H 'Content-Type: application/json' -d '{example}'{auth}",
        "  then open the consentUrl it answers and press Accept (as a Global Administrator of that tenant): the "
        f"tenant is confirming for about {entra.consent_delay:g} s (Microsoft applies a consent to tokens after a "
        "while), then active.",
        f"  {TAILSPIN.name} ({TAILSPIN.domain}) is in another cloud: adding it says why this deployment cannot "
        "read it.",
    ]
    if found and consented:
        lines.append(f"  Consented already (kept in {data_dir / persist.STATE_FILE}): {', '.join(consented)}.")
    return lines
