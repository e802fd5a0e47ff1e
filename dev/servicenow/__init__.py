"""The ServiceNow simulator: `ServiceNowSimulator` (instance.py: OAuth, the Table API, faults and its own pages,
each in a module of its own), served in process by `SimulatorTransport` (httpx) or on a loopback port by `serve`."""

from dev.servicenow.instance import ServiceNowSimulator
from dev.servicenow.state import ADMIN_SYS_ID, INTEGRATION_USER_SYS_ID
from dev.wire import Fault, SimulatorTransport, serve

__all__ = ["ADMIN_SYS_ID", "INTEGRATION_USER_SYS_ID", "Fault", "ServiceNowSimulator", "SimulatorTransport", "serve"]
