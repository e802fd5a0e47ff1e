"""The ServiceNow simulator: `ServiceNowSimulator` (state and protocol), served in process by
`SimulatorTransport` (httpx) or on a loopback port by `serve`."""

from dev.servicenow.core import ADMIN_SYS_ID, INTEGRATION_USER_SYS_ID, Fault, ServiceNowSimulator
from dev.servicenow.transport import SimulatorTransport, serve

__all__ = ["ADMIN_SYS_ID", "INTEGRATION_USER_SYS_ID", "Fault", "ServiceNowSimulator", "SimulatorTransport", "serve"]
