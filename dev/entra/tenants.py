"""The Microsoft Entra tenants the simulators know: the deployment's own (home) tenant and two customers of a
managed service provider, each with a fixed id, its verified domains and a display name.

A tenant is named in a URL by its id (a GUID) or by one of its domains (learn `entra/identity-platform/
v2-admin-consent`: "Can be provided in GUID or friendly name format"); every answer names it by its id.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from dev.graph.catalogue import TENANT as HOME_ID

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# A DNS name: labels of letters, digits and hyphens, at least two of them (what a verified domain can be).
DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))+$")


@dataclass(frozen=True)
class Tenant:
    id: str
    domain: str  # the primary (verified, custom) domain
    name: str  # the organisation's display name
    other_domains: tuple[str, ...] = field(default=())  # e.g. the initial {name}.onmicrosoft.com

    @property
    def domains(self) -> tuple[str, ...]:
        return (self.domain, *self.other_domains)

    def named_by(self, identifier: str) -> bool:
        """Ids compare case-insensitively, and so do domains (DNS names are case-insensitive, RFC 4343)."""
        wanted = identifier.lower()
        return wanted == self.id.lower() or wanted in (d.lower() for d in self.domains)


HOME = Tenant(HOME_ID, "contoso.example", "Contoso", ("contoso.onmicrosoft.com",))
FABRIKAM = Tenant("b2e4f6a8-3c5d-4e7f-8a9b-0c1d2e3f4a5b", "fabrikam.example", "Fabrikam",
                  ("fabrikam.onmicrosoft.com",))  # fmt: skip
NORTHWIND = Tenant("c3f5a7b9-4d6e-4f80-9b1c-2d3e4f5a6b7c", "northwind.example", "Northwind Traders",
                   ("northwindtraders.onmicrosoft.com",))  # fmt: skip
CUSTOMERS = (FABRIKAM, NORTHWIND)


def well_formed(identifier: str) -> bool:
    """A GUID or a DNS name: what Entra accepts as a tenant in a URL before it looks it up."""
    return bool(GUID.fullmatch(identifier) or DOMAIN.fullmatch(identifier))


def new_tenant(domain: str, name: str, tenant_id: str | None = None) -> Tenant:
    """Another tenant (a test's, or one added on the simulator's page): a fresh id unless one is given."""
    return Tenant(tenant_id or str(uuid.uuid4()), domain, name)
