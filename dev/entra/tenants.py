"""The Microsoft Entra tenants the simulators know: the deployment's own (home) tenant, two customers of a
managed service provider, and a customer in another cloud (US Government), each with a fixed id, its verified
domains, a display name and its cloud.

A tenant is named in a URL by its id (a GUID) or by one of its domains (learn `entra/identity-platform/
v2-admin-consent`: "Can be provided in GUID or friendly name format"); every answer names it by its id. The public
cloud's discovery also answers for a tenant of another cloud, with 200 and that cloud's endpoints and
`cloud_instance_name` (smallstep/certificates#1309: a China tenant's document, asked at login.microsoftonline.com,
names login.partner.microsoftonline.cn), so a tenant id alone never says which cloud it is in.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from dev.graph.catalogue import TENANT as HOME_ID

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# A DNS name: labels of letters, digits and hyphens, at least two of them (what a verified domain can be).
DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))+$")


PUBLIC_CLOUD = "microsoftonline.com"
# A cloud's `cloud_instance_name` -> its login host and Microsoft Graph host (learn `entra/identity-platform/
# authentication-national-cloud`; `graph/deployments`).
CLOUDS = {PUBLIC_CLOUD: ("login.microsoftonline.com", "graph.microsoft.com"),
          "microsoftonline.us": ("login.microsoftonline.us", "graph.microsoft.us")}  # fmt: skip


@dataclass(frozen=True)
class Tenant:
    id: str
    domain: str  # the primary (verified, custom) domain
    name: str  # the organisation's display name
    other_domains: tuple[str, ...] = field(default=())  # e.g. the initial {name}.onmicrosoft.com
    cloud: str = PUBLIC_CLOUD  # discovery's cloud_instance_name

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
# A customer whose tenant is in Azure Government (GCC High): the public discovery finds it, nothing else can use it.
TAILSPIN = Tenant("e5a7c9d1-6f80-4b2c-9d3e-4f5a6b7c8d9e", "tailspin-gov.example", "Tailspin Toys (US Government)",
                  ("tailspintoys.onmicrosoft.us",), cloud="microsoftonline.us")  # fmt: skip
BUILT_IN = (HOME, *CUSTOMERS, TAILSPIN)


def well_formed(identifier: str) -> bool:
    """A GUID or a DNS name: what Entra accepts as a tenant in a URL before it looks it up."""
    return bool(GUID.fullmatch(identifier) or DOMAIN.fullmatch(identifier))


def new_tenant(domain: str, name: str, tenant_id: str | None = None) -> Tenant:
    """Another tenant (a test's, or one added on the simulator's page): a fresh id unless one is given."""
    return Tenant(tenant_id or str(uuid.uuid4()), domain, name)
