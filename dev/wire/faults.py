"""Injected failures: what a test asks a simulator (ServiceNow, Graph) to do to the requests it matches."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from dev.wire.messages import SimRequest

HOLD_LIMIT = 60.0  # seconds a 'hold' fault keeps a request at most


@dataclass
class Fault:
    """One injected failure. `kind`: 'status' (answer `status` with `headers`, before any commit),
    'drop' (reset before doing anything), 'commit_then_drop' (do the work, then reset),
    'commit_then_status' (do the work, then answer `status`), 'commit_then_timeout' (do the work, then answer
    nothing until the client's deadline has passed: `seconds`), 'latency' (wait `seconds`, then answer),
    'drip' (answer, but send the body one byte every `seconds`), 'hold' (set `arrived`, wait for `release`, then
    answer: a test starts a second request only once the first is inside ServiceNow, and lets the first go on only
    after the second has answered, by events instead of guessed sleeps; ServiceNow simulator only),
    'commit_then_hold' (do the work, set `arrived`, wait for `release`, then answer: a late answer),
    'late_commit' (the client waits in vain, past its deadline; the work is done afterwards, when `release` is set
    or `seconds` have passed: a held transaction that commits after the client gave up)."""

    kind: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None
    path_prefix: str = "/api/now/"
    times: int = 1
    seconds: float = 0.0
    after: int = 0  # matching requests let through before the fault fires
    arrived: threading.Event = field(default_factory=threading.Event)  # 'hold': the request reached the instance
    release: threading.Event = field(default_factory=threading.Event)  # 'hold': the request may go on

    def applies(self, request: SimRequest) -> bool:
        return (self.method is None or self.method == request.method) and request.path.startswith(self.path_prefix)

    def hold(self) -> None:
        """'hold': say the request arrived, then wait for `release`; bounded (`seconds`, or HOLD_LIMIT), so a test
        that never releases it fails on its own timeout instead of hanging the run."""
        self.arrived.set()
        self.release.wait(self.seconds or HOLD_LIMIT)


def take_fault(faults: list[Fault], request: SimRequest) -> Fault | None:
    """The fault this request meets, if any, used up as it fires. Call under the simulator's lock."""
    fault = next((f for f in faults if f.applies(request)), None)
    if fault is None:
        return None
    if fault.after > 0:  # let this many matching requests through first
        fault.after -= 1
        return None
    fault.times -= 1
    if fault.times <= 0:
        faults.remove(fault)
    return fault
