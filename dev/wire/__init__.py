"""What the simulators share at the wire: requests and answers (`SimRequest`, `SimResponse`), injected faults
(`Fault`), the two ways to reach a simulator (`SimulatorTransport` in process, `serve` on a loopback port), the
head of their HTML pages, and redirects kept on this site (`redirects.py`)."""

from dev.wire.faults import Fault, take_fault
from dev.wire.messages import SimRequest, SimResponse
from dev.wire.transport import SimulatorTransport, serve

__all__ = ["Fault", "SimRequest", "SimResponse", "SimulatorTransport", "serve", "take_fault"]
