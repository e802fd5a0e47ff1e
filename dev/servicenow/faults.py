"""How the instance answers an injected fault (`dev.wire.Fault`): before any work, after it (the commit done,
the answer lost, late or slow), as a held transaction that commits after the client gave up, and chaos (a seeded
share of requests meeting the failures real instances produce)."""

from __future__ import annotations

import threading
import time

from dev.servicenow.state import InstanceState
from dev.wire.faults import HOLD_LIMIT, Fault
from dev.wire.messages import SimRequest, SimResponse


class FaultAnswers(InstanceState):
    """The fault a request met, applied around the endpoint that answers it."""

    def _route(self, request: SimRequest) -> SimResponse:
        raise NotImplementedError  # the instance's endpoints (instance.py)

    def _faulted(self, request: SimRequest, fault: Fault | None) -> SimResponse:
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "hold":
            fault.hold()
            fault = None
        if fault is not None and fault.kind == "late_commit":
            return self._late_commit(request, fault)
        if fault is not None and fault.kind == "drop":
            return SimResponse(0, drop=True)
        if fault is not None and fault.kind == "status":
            body = {
                "error": {
                    "message": "Rate limit exceeded" if fault.status == 429 else "Service Unavailable",
                    "detail": "Injected fault",
                },
                "status": "failure",
            }
            return SimResponse.json(fault.status, body, fault.headers)
        if self.ip_denied:
            return SimResponse(403, {"Content-Type": "text/html"}, b"<html><body>Access denied</body></html>")
        if self.hibernating:  # a developer instance asleep answers every URL with its wake-up page
            return SimResponse(200, {"Content-Type": "text/html"}, b"<html><body>Instance hibernating</body></html>")
        response = self._route(request)
        if self.on_change is not None and request.method not in ("GET", "HEAD"):
            self.on_change()
        if fault is not None and fault.kind == "commit_then_hold":
            fault.hold()
        if fault is not None and fault.kind == "commit_then_drop":
            return SimResponse(0, drop=True)
        if fault is not None and fault.kind == "commit_then_status":
            return SimResponse.envelope(fault.status, "Transaction cancelled", "Injected fault after commit")
        if fault is not None and fault.kind == "commit_then_timeout":
            response.stall = fault.seconds or 3600.0
        if fault is not None and fault.kind == "drip":
            response.drip = fault.seconds
        return response

    def _late_commit(self, request: SimRequest, fault: Fault) -> SimResponse:
        """A transaction that outlives the client's wait. An inbound REST Table API transaction runs on its node until
        it ends or its quota rule cancels it (60 s by default: "REST Table API request timeout",
        https://www.servicenow.com/docs/r/yokohama/platform-administration/platform-performance/c_DefaultQuotaRules.html),
        whether or not the client still waits: a client that hangs up is only logged (HTTP 499, "Client Closed the
        Connection", https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB3047080), and the work it
        asked for is done (https://www.esmalliance.com/2019/05/10/investigating-the-root-cause-of-a-scripted-rest-api-
        servicenow-integration-timeout-issue/: every timed-out request had been processed completely). So the
        client gets no answer in time, and the record appears later."""

        def commit() -> None:
            fault.hold()
            self._route(request)
            if self.on_change is not None:
                self.on_change()

        threading.Thread(target=commit, name="late-commit", daemon=True).start()
        # A client that waited this long would have been answered by the quota rule's cancellation (KB0866547).
        late = SimResponse.envelope(500, "Transaction cancelled: maximum execution time exceeded", None)
        late.stall = HOLD_LIMIT
        return late

    def _chaos_fault(self) -> Fault:
        """One of the failures real instances produce, chosen by the seeded generator."""
        pick = self.chaos_random.choice(
            ["429", "429-retry-after", "429-reset", "500", "502", "503", "drop", "commit_then_drop", "commit_then_503"]
        )
        if pick == "429":
            return Fault("status", status=429)
        if pick == "429-retry-after":
            return Fault("status", status=429, headers={"Retry-After": "1"})
        if pick == "429-reset":
            reset = int(self.clock()) + 2
            return Fault("status", status=429, headers={"X-RateLimit-Reset": str(reset), "X-RateLimit-Limit": "100"})
        if pick in ("500", "502", "503"):
            return Fault("status", status=int(pick))
        if pick == "commit_then_503":
            return Fault("commit_then_status", status=503)
        return Fault(pick)
