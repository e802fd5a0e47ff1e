"""An in-memory ServiceNow instance speaking the wire protocol the connector uses.

OAuth (`oauth.py`), the Table API with ServiceNow's value shapes (`table_api.py`, `shapes.py`), fault injection
(`faults.py`) and the instance's own pages (`pages.py`), over the state in `state.py`. Sources for every shape:
docs/design.md#servicenow-facts. `handle()` is transport-neutral: `dev/wire/transport.py` serves it in process
(httpx) and on a loopback port.
"""

from __future__ import annotations

from email.utils import formatdate

from dev.servicenow import pages
from dev.servicenow.faults import FaultAnswers
from dev.servicenow.oauth import OAuthServer
from dev.servicenow.table_api import TableApi
from dev.wire.faults import take_fault
from dev.wire.messages import SimRequest, SimResponse


class ServiceNowSimulator(OAuthServer, TableApi, FaultAnswers):
    """One instance: every request is routed to its endpoint, through the faults a test injected."""

    def handle(self, request: SimRequest) -> SimResponse:
        if self.before_request is not None:
            self.before_request(request)
        with self.lock:
            self.requests.append(request)
            fault = take_fault(self.faults, request)
            if (
                fault is None
                and self.chaos_rate
                and request.path.startswith("/api/now/")
                and self.chaos_random.random() < self.chaos_rate
            ):
                fault = self._chaos_fault()
        response = self._faulted(request, fault)
        # Every HTTP response carries the server's clock (RFC 9110 section 6.6.1): the instance's own time.
        response.headers.setdefault("Date", formatdate(self.clock(), usegmt=True))
        return response

    def _route(self, request: SimRequest) -> SimResponse:
        path = request.path
        if path == "/oauth_auth.do":
            return self._authorize(request)
        if path == "/login.do":
            return self._login(request)
        if path == "/oauth_token.do" and request.method == "POST":
            return self._token(request)
        if path == "/oauth_revoke_token.do":
            return self._revoke(request)
        if path == "/nav_to.do":
            return pages.record_page(self, request)
        if path == "/sim" and request.method == "GET":
            return pages.directory_page(self, request)
        # The unversioned path is the latest version's (Table API docs): v2, which answers an empty query with 200.
        for prefix, latest in (("/api/now/v2/table/", True), ("/api/now/v1/table/", False), ("/api/now/table/", True)):
            if path.startswith(prefix):
                return self._table(request, path[len(prefix) :].split("/"), versioned_v2=latest)
        return SimResponse(404, {"Content-Type": "text/html"}, b"<html><body>Not found</body></html>")
