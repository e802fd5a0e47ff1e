"""The Microsoft Graph simulator (Secure Score): `GraphSimulator` with its `ManagedIdentity` endpoint, served
in process by `dev.wire.SimulatorTransport` or on a loopback port by `dev.wire.serve`."""

from dev.graph.identity import ManagedIdentity
from dev.graph.simulator import GraphSimulator
from dev.graph.tenant import TenantData

__all__ = ["GraphSimulator", "ManagedIdentity", "TenantData"]
