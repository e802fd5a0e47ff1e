"""An in-memory Microsoft Graph for Secure Score, speaking the wire protocol the connector uses.

`GET /v1.0/security/secureScores?$top=N` (daily snapshots, newest first, with the `@odata.nextLink` Graph
adds even to `$top=1`), `GET /v1.0/security/secureScoreControlProfiles` paged at 25 with `@odata.nextLink`,
`GET|PATCH .../secureScoreControlProfiles/{id}` (PATCH needs `vendorInformation`; Defender for Endpoint
`scid_*` controls refuse with 400), Graph's error envelope, 401 without a token it issued, 403 without the
permission, faults (429 with `Retry-After`, 503, latency), and the App Service managed-identity endpoint
(`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) that `DefaultAzureCredential` really calls. A switch completes or
regresses a control (`POST /sim/controls/{id}/complete|regress`, or the page at `/sim`), so the whole loop
can be seen locally. Shapes: ../shared/reference/microsoft-graph-secure-score.md.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from dev.graph import catalogue
from dev.simulator import pages
from dev.simulator.core import Fault, SimRequest, SimResponse, take_fault

PROFILES = "/v1.0/security/secureScoreControlProfiles"
SCORES = "/v1.0/security/secureScores"
APP_ID = "6b0f6e8a-1c2d-4e3f-9a8b-7c6d5e4f3a2b"  # the managed identity's client id, as `updatedBy` shows it


def _by_rank(profile: dict[str, Any]) -> tuple[int, str]:
    rank = profile.get("rank")
    return (rank if isinstance(rank, int) else 10**6, str(profile.get("id")))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> SimResponse:
    body = {"error": {"code": code, "message": message,
                      "innerError": {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                     "request-id": secrets.token_hex(16)}}}  # fmt: skip
    return SimResponse.json(status, body, headers)


class ManagedIdentity:
    """The App Service managed-identity token endpoint: tokens for any resource, checked by the simulator."""

    def __init__(self) -> None:
        self.header = secrets.token_hex(16)
        self.issued: set[str] = set()
        self.requests = 0
        self.base_url = ""
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/msi/token"

    def bind(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path != "/msi/token" or request.headers.get("x-identity-header") != self.header:
            return SimResponse.json(401, {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER"})
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.issued.add(token)
            self.requests += 1
        return SimResponse.json(
            200,
            {"access_token": token, "expires_on": str(int(time.time()) + 3600),
             "resource": request.query.get("resource", ""), "token_type": "Bearer", "client_id": APP_ID},
        )  # fmt: skip


class GraphSimulator:
    def __init__(self, identity: ManagedIdentity | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.identity = identity or ManagedIdentity()
        self.clock = clock
        self.base_url = "https://graph.microsoft.com"
        self.lock = threading.RLock()
        self.profiles = {p["id"]: p for p in catalogue.profiles()}
        self.scores = catalogue.initial_scores()
        self.page_size = 25
        self.faults: list[Fault] = []
        self.requests: list[SimRequest] = []
        self.forbidden = False  # no SecurityEvents.* permission at all: every call is 403
        self.read_only = False  # SecurityEvents.Read.All only: PATCH is 403
        self.latency = 0.0
        self.next_link_base: str | None = None  # a test's hostile Graph: next links to another host
        self.in_flight = 0
        self.max_in_flight = 0
        self._history_base = catalogue.history(
            datetime.fromtimestamp(self.clock(), UTC), list(self.profiles.values()), self.scores
        )

    def bind(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.identity.bind(base_url)

    def add_profile(self, profile: dict[str, Any], score: float) -> None:
        """Another control (benchmarks: a tenant with more controls than the catalogue)."""
        with self.lock:
            self.profiles[profile["id"]] = profile
            self.scores[profile["id"]] = score

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    # -- the switch ------------------------------------------------------------------------------

    def complete(self, control_id: str) -> None:
        """What an admin's change does once Secure Score's daily sync sees it: all the control's points."""
        with self.lock:
            self.scores[control_id] = float(self.profiles[control_id]["maxScore"])

    def regress(self, control_id: str) -> None:
        with self.lock:
            self.scores[control_id] = 0.0

    def state_of(self, control_id: str) -> dict[str, Any]:
        """The newest controlStateUpdates entry: where a write-back lands."""
        with self.lock:
            return dict(self.profiles[control_id]["controlStateUpdates"][-1])

    # -- dispatch --------------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path == "/msi/token":
            return self.identity.handle(request)
        if request.path.startswith("/sim"):
            return self._switch(request)
        with self.lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = take_fault(self.faults, request)
        try:
            if self.latency:
                time.sleep(self.latency)
            if fault is not None and fault.kind == "latency":
                time.sleep(fault.seconds)
            elif fault is not None and fault.kind == "drop":
                return SimResponse(0, drop=True)
            elif fault is not None:
                code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
                return _error(fault.status, code, "Injected fault", fault.headers)
            return self._route(request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _route(self, request: SimRequest) -> SimResponse:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.identity.issued:
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if self.forbidden:
            return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        path = request.path
        if path == SCORES and request.method == "GET":
            return self._scores(request)
        if path == PROFILES and request.method == "GET":
            return self._profiles(request)
        if path.startswith(PROFILES + "/"):
            control_id = unquote(path[len(PROFILES) + 1 :])
            if request.method == "GET":
                with self.lock:
                    profile = self.profiles.get(control_id)
                if profile is None:
                    return _error(404, "ResourceNotFound", f"Control profile '{control_id}' was not found.")
                return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata", **profile})
            if request.method == "PATCH":
                return self._patch(control_id, request)
        return _error(400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.")

    def _scores(self, request: SimRequest) -> SimResponse:
        try:
            top = int(request.query.get("$top", "90"))
        except ValueError:
            return _error(400, "BadRequest", "Invalid $top value.")
        with self.lock:
            today = catalogue.snapshot(
                datetime.fromisoformat(self._history_base[0]["createdDateTime"].replace("Z", "+00:00")),
                sorted(self.profiles.values(), key=_by_rank),
                self.scores,
            )
        value = [today, *self._history_base[1:]][: max(top, 0)]
        link = f"{self.base_url}{SCORES}?$top={top}&$skiptoken={secrets.token_hex(8)}"
        return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#security/secureScores",
                                      "@odata.nextLink": link, "value": value})  # fmt: skip

    def _profiles(self, request: SimRequest) -> SimResponse:
        token = request.query.get("$skiptoken", "0")
        offset = int(token) if token.isascii() and token.isdigit() else 0
        with self.lock:
            ordered = sorted(self.profiles.values(), key=_by_rank)
            page = [json.loads(json.dumps(p)) for p in ordered[offset : offset + self.page_size]]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#security/secureScoreControlProfiles",
            "value": page,
        }
        if offset + self.page_size < len(ordered):
            base = self.next_link_base or self.base_url
            body["@odata.nextLink"] = f"{base}{PROFILES}?$skiptoken={offset + self.page_size}"
        return SimResponse.json(200, body)

    def _patch(self, control_id: str, request: SimRequest) -> SimResponse:
        if self.read_only:
            return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        with self.lock:
            profile = self.profiles.get(control_id)
        if profile is None:
            return _error(404, "ResourceNotFound", f"Control profile '{control_id}' was not found.")
        if control_id.startswith("scid_"):
            return _error(400, "BadRequest", "Updating this control is not supported through this API; "
                                             "use the Microsoft Defender portal.")  # fmt: skip
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _error(400, "BadRequest", "Unable to read JSON request payload.")
        vendor = body.get("vendorInformation") if isinstance(body, dict) else None
        if not isinstance(vendor, dict) or not vendor.get("provider") or not vendor.get("vendor"):
            return _error(400, "BadRequest", "vendorInformation with provider and vendor is required.")
        entry = {
            "assignedTo": body.get("assignedTo"),
            "comment": body.get("comment"),
            "state": body.get("state") or "Default",
            "updatedBy": APP_ID,
            "updatedDateTime": datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        with self.lock:
            profile["controlStateUpdates"].append(entry)
        return SimResponse(204)

    # -- the switch, over HTTP -------------------------------------------------------------------

    def _switch(self, request: SimRequest) -> SimResponse:
        parts = request.path.strip("/").split("/")
        if (
            request.method == "POST"
            and len(parts) == 4
            and parts[1] == "controls"
            and parts[3] in ("complete", "regress")
        ):
            control_id = unquote(parts[2])
            if control_id not in self.profiles:
                return _error(404, "ResourceNotFound", control_id)
            (self.complete if parts[3] == "complete" else self.regress)(control_id)
            back = dict(parse_qsl(urlsplit(request.url).query)).get("back")
            if back == "page":
                return SimResponse(303, {"Location": "/sim"})
            return SimResponse.json(200, {"id": control_id, "score": self.scores[control_id]})
        if request.method == "GET" and parts == ["sim"]:
            return self._page(request)
        return _error(404, "NotFound", request.path)

    portal_port: int | None = None  # make run: the page links back to the connector's portal on this port

    def _page(self, request: SimRequest | None = None) -> SimResponse:
        """Every control with its score and its newest note, and the switch; long notes and ids wrap, so the page
        fits a 1280 px window."""
        rows = []
        with self.lock:
            for profile in sorted(self.profiles.values(), key=_by_rank):
                cid = profile["id"]
                score, max_score = self.scores.get(cid, 0.0), profile.get("maxScore") or 0.0
                note = ((profile.get("controlStateUpdates") or [{}])[-1] or {}).get("comment") or ""
                action = "regress" if score >= max_score else "complete"
                rows.append(
                    f"<tr><td>{html.escape(cid)}</td><td>{html.escape(str(profile.get('title')))}</td>"
                    f'<td class="score">{score:g} / {max_score:g}</td><td class="multi">{html.escape(note)}</td><td>'
                    f'<form method="post" action="/sim/controls/{quote(cid, safe="")}/{action}?back=page">'
                    f"<button>{'Regress' if action == 'regress' else 'Complete'}</button></form></td></tr>"
                )
        back = pages.back_to_portal(request.url if request else "", self.portal_port)
        page = (
            "<!doctype html><html lang=en>"
            + pages.head("Graph simulator: Secure Score", ".score{white-space:nowrap}th:nth-child(4){width:40%}")
            + f"<body><main>{back}<h1>Microsoft Graph simulator: Secure Score controls</h1>"
            "<p>Complete or regress a control, then refresh Secure Score in the connector "
            "(<code>POST /api/recommendations/refresh</code> or the portal).</p>"
            '<table><tr><th scope="col">Control</th><th scope="col">Title</th><th scope="col">Score</th>'
            '<th scope="col">Note (write-back)</th><th scope="col">Switch</th></tr>'
            + "".join(rows)
            + "</table></main></body></html>"
        )
        return SimResponse(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode())
