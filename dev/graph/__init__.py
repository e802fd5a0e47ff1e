"""The Microsoft Graph simulator (Secure Score): `GraphSimulator` with its `ManagedIdentity` endpoint, served
in process by `dev.servicenow.SimulatorTransport` or on a loopback port by `dev.servicenow.serve`."""

from dev.graph.simulator import GraphSimulator, ManagedIdentity
from dev.graph.tenant import TenantData

__all__ = ["GraphSimulator", "ManagedIdentity", "TenantData"]
