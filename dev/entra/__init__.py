"""The Microsoft Entra ID simulator: tenants found by domain or id (OpenID discovery), the admin consent endpoint,
and the token endpoint for a multi-tenant app proven by a managed identity's token. Served over TLS:
`server, url = dev.wire.serve(EntraSimulator(identity), tls=make_certs(folder)[0])`."""

from dev.entra.apps import App, ServicePrincipal
from dev.entra.directory import (
    CONSENTING_ROLES,
    GRAPH,
    READER_APP_ID,
    ROLES,
    SECURITY_EVENTS_READWRITE_ALL,
    TOKEN_EXCHANGE,
)
from dev.entra.simulator import EntraSimulator
from dev.entra.tenants import CUSTOMERS, FABRIKAM, HOME, NORTHWIND, Tenant
from dev.entra.tls import ca_bundle, make_certs

__all__ = [
    "CONSENTING_ROLES",
    "CUSTOMERS",
    "FABRIKAM",
    "GRAPH",
    "HOME",
    "NORTHWIND",
    "READER_APP_ID",
    "ROLES",
    "SECURITY_EVENTS_READWRITE_ALL",
    "TOKEN_EXCHANGE",
    "App",
    "EntraSimulator",
    "ServicePrincipal",
    "Tenant",
    "ca_bundle",
    "make_certs",
]
