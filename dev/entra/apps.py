"""What the simulated directory holds for an app: its registration in the home tenant (redirect URIs, the
application permissions it requires, its federated identity credentials) and, in each tenant whose admin consented,
its service principal (learn `entra/identity-platform/app-objects-and-service-principals`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dev.entra.tenants import HOME


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audiences: tuple[str, ...]


@dataclass
class App:
    """An app registration in the home tenant: its redirect URIs, and the application permissions (app roles of
    `resource`, Microsoft Graph's identifier) it requires."""

    client_id: str
    name: str
    redirect_uris: list[str]
    roles: tuple[str, ...]
    resource: str
    multi_tenant: bool = True
    home: str = HOME.id
    federated: list[FederatedCredential] = field(default_factory=list)


@dataclass
class ServicePrincipal:
    """The app in a tenant whose admin consented: its object id, its app role assignments, whether it is enabled."""

    object_id: str
    roles: tuple[str, ...]
    granted_by: str
    granted_at: float
    enabled: bool = True
