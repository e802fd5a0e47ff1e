"""An in-memory Microsoft Graph for Secure Score, speaking the wire protocol the connector uses, as strictly as the
public documentation reads (shapes and sources: ../shared/reference/microsoft-graph-secure-score.md).

- `GET /v1.0/security/secureScores` with `$top` and `$skip` (daily snapshots, newest first, with an
  `@odata.nextLink` that advances, as Graph adds one even to `$top=1`), and `GET .../secureScores/{id}`.
- `GET /v1.0/security/secureScoreControlProfiles` paged (`$top`, or 100 by default) with `@odata.nextLink`,
  `$filter` (`eq` on `id`, `service`, `controlCategory`; anything else is 400), and `GET .../{id}`.
- `PATCH .../secureScoreControlProfiles/{id}`: `vendorInformation` with the documented provider and vendor is
  required; `state` only `Default`, `Ignored`, `ThirdParty` or `Reviewed` (any case); values not in the body do
  not change ("values for existing properties that are not included in the request body will not change":
  each PATCH adds a history entry that keeps the newest entry's other values); 204, or 200 with the profile for
  `Prefer: return=representation`; Defender for Endpoint `scid_*` controls refuse with 400.
- Tokens: the App Service managed-identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, `api-version`,
  `resource`, `client_id` all checked) that `DefaultAzureCredential` really calls, issuing signed JWTs with an
  audience, an expiry and the identity's app roles; Graph refuses a token it did not issue, for another audience,
  past its expiry, and a call its roles do not allow (403).
- Switches: complete or regress a control (`POST /sim/controls/{id}/complete|regress`, or the page at `/sim`);
  a failing provider (206 with `Warning: 199 - "{vendor}/{provider}/{status}/{ms}"`, its controls left out); a
  dripping response; an empty listing; faults (429 with `Retry-After`, 503, latency, drops).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from dev.graph import catalogue
from dev.simulator import pages
from dev.simulator.core import Fault, SimRequest, SimResponse, take_fault

PROFILES = "/v1.0/security/secureScoreControlProfiles"
SCORES = "/v1.0/security/secureScores"
APP_ID = "6b0f6e8a-1c2d-4e3f-9a8b-7c6d5e4f3a2b"  # the user-assigned managed identity's client id
READ_ROLE = "SecurityEvents.Read.All"
WRITE_ROLE = "SecurityEvents.ReadWrite.All"
STATES = {"default", "ignored", "thirdparty", "reviewed"}  # securescorecontrolprofile-update: possible values
VENDOR = {"provider": "SecureScore", "vendor": "Microsoft"}  # "must contain vendorInformation with valid ..."
_FILTER = re.compile(r"^(id|service|controlCategory) eq '([^']{1,100})'$")
MAX_TOP = 250  # profile pages hold up to 250 (Galvnyz/M365-Assess#663)


def _by_rank(profile: dict[str, Any]) -> tuple[int, str]:
    rank = profile.get("rank")
    return (rank if isinstance(rank, int) else 10**6, str(profile.get("id")))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> SimResponse:
    body = {"error": {"code": code, "message": message,
                      "innerError": {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                     "request-id": secrets.token_hex(16)}}}  # fmt: skip
    return SimResponse.json(status, body, headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ManagedIdentity:
    """The App Service managed-identity token endpoint (learn: "How to use managed identities for App Service and
    Azure Functions", REST protocol): `GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01&client_id=...`
    with the `X-IDENTITY-HEADER` secret. Only the user-assigned identity `client_id` exists here (no
    system-assigned one), so a request without it, or for another, is refused as App Service refuses it."""

    def __init__(self, client_id: str = APP_ID, *, lifetime: int = 3600, now: Callable[[], float] = time.time):
        self.header = secrets.token_hex(16)
        self.client_id = client_id
        self.object_id = "9c2b4e1a-5d6f-4a7b-8c9d-0e1f2a3b4c5d"  # its service principal's object id
        self.tenant = catalogue.TENANT
        self.roles: set[str] = {WRITE_ROLE}  # the Graph app roles granted to the identity
        self.lifetime = lifetime
        self.now = now
        self.issued: set[str] = set()  # every token the endpoint handed out (a log scan looks for them)
        self.requests = 0
        self.base_url = ""
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/msi/token"

    def bind(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def issue(self, resource: str, *, lifetime: int | None = None, roles: set[str] | None = None,
              tenant: str | None = None, app_id: str | None = None) -> str:  # fmt: skip
        """A signed token for `resource` (what Graph checks: its signature, `aud`, `exp`, `roles`)."""
        issued = int(self.now())
        claims = {"aud": resource, "iss": f"https://sts.windows.net/{tenant or self.tenant}/", "iat": issued,
                  "nbf": issued, "exp": issued + (self.lifetime if lifetime is None else lifetime),
                  "appid": app_id or self.client_id, "oid": self.object_id, "tid": tenant or self.tenant,
                  "roles": sorted(self.roles if roles is None else roles)}  # fmt: skip
        signing_input = (
            f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
        )
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this endpoint issued, or None (another issuer, or tampered)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64(hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return claims

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path != "/msi/token" or request.headers.get("x-identity-header") != self.header:
            return SimResponse.json(401, {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER"})
        query = request.query
        if query.get("api-version") != "2019-08-01":
            return SimResponse.json(400, {"statusCode": 400, "message": "An invalid api-version was specified."})
        if not query.get("resource"):
            return SimResponse.json(400, {"statusCode": 400, "message": "Required query variable 'resource' is "
                                          "missing."})  # fmt: skip
        if query.get("client_id") != self.client_id:
            return SimResponse.json(400, {"statusCode": 400, "message": "Unable to load the proper Managed "
                                          "Identity.", "correlationId": secrets.token_hex(8)})  # fmt: skip
        token = self.issue(query["resource"])
        with self._lock:
            self.requests += 1
            self.issued.add(token)
        return SimResponse.json(
            200,
            {"access_token": token, "expires_on": str(int(self.now()) + self.lifetime),
             "resource": query["resource"], "token_type": "Bearer", "client_id": self.client_id},
        )  # fmt: skip


class GraphSimulator:
    def __init__(self, identity: ManagedIdentity | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.identity = identity or ManagedIdentity()
        self.clock = clock
        self.base_url = "https://graph.microsoft.com"
        self.lock = threading.RLock()
        self.profiles = {p["id"]: p for p in catalogue.profiles()}
        self.scores = catalogue.initial_scores()  # scored controls only: the others do not apply to the tenant
        self.page_size = 100
        self.faults: list[Fault] = []
        self.requests: list[SimRequest] = []
        self.forbidden = False  # the identity's grant was removed: every call is 403, whatever its token says
        self.read_only = False  # SecurityEvents.Read.All only: PATCH is 403, whatever its token says
        self.failed_providers: dict[tuple[str, str], int] = {}  # (vendor, provider/service) -> status: a 206
        self.drip = 0.0  # seconds between the bytes of every answer's body
        self.empty = False  # the profile listing answers 200 with no profiles
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

    def add_profile(self, profile: dict[str, Any], score: float | None) -> None:
        """Another control (benchmarks: a tenant with more controls than the catalogue); None: not scored."""
        with self.lock:
            self.profiles[profile["id"]] = profile
            if score is not None:
                self.scores[profile["id"]] = score

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    # -- the switches ----------------------------------------------------------------------------

    def complete(self, control_id: str) -> None:
        """What an admin's change does once Secure Score's daily sync sees it: all the control's points."""
        with self.lock:
            self.scores[control_id] = float(self.profiles[control_id]["maxScore"])

    def regress(self, control_id: str) -> None:
        with self.lock:
            self.scores[control_id] = 0.0

    def set_state(
        self, control_id: str, state: str, assigned_to: str | None = None, by: str = "admin@contoso.com"
    ) -> None:
        """What an admin does in the Defender portal: a new history entry with a state and an analyst."""
        with self.lock:
            self.profiles[control_id]["controlStateUpdates"].append(
                {"assignedTo": assigned_to, "comment": None, "state": state, "updatedBy": by,
                 "updatedDateTime": self._now_text()})  # fmt: skip

    def state_of(self, control_id: str) -> dict[str, Any]:
        """The newest controlStateUpdates entry: where a write-back lands."""
        with self.lock:
            return dict(self.profiles[control_id]["controlStateUpdates"][-1])

    def _now_text(self) -> str:
        # Graph writes seven fractional digits (.NET's DateTimeOffset); the docs show six.
        moment = datetime.fromtimestamp(self.clock(), UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"

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
            elif fault is not None and fault.kind == "drip":
                response = self._route(request)
                response.drip = fault.seconds
                return response
            elif fault is not None:
                code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
                return _error(fault.status, code, "Injected fault", fault.headers)
            response = self._route(request)
            response.drip = response.drip or self.drip
            return response
        finally:
            with self.lock:
                self.in_flight -= 1

    def _caller(self, request: SimRequest) -> dict[str, Any] | SimResponse:
        """The token's claims, or Graph's 401 (a token it did not issue, for another audience, or expired)."""
        auth = request.headers.get("authorization", "")
        claims = self.identity.verify(auth[7:]) if auth.startswith("Bearer ") else None
        if claims is None:
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if claims.get("aud") not in (self.base_url, f"{self.base_url}/"):
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if int(claims.get("exp", 0)) <= self.identity.now():
            return _error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        return claims

    def _route(self, request: SimRequest) -> SimResponse:
        claims = self._caller(request)
        if isinstance(claims, SimResponse):
            return claims
        roles = set(claims.get("roles") or [])
        if self.forbidden or not roles & {READ_ROLE, WRITE_ROLE}:
            return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        path = request.path
        if path == SCORES and request.method == "GET":
            return self._scores(request)
        if path.startswith(SCORES + "/") and request.method == "GET":
            return self._score(unquote(path[len(SCORES) + 1 :]))
        if path == PROFILES and request.method == "GET":
            return self._profiles(request)
        if path.startswith(PROFILES + "/"):
            control_id = unquote(path[len(PROFILES) + 1 :])
            if request.method == "GET":
                with self.lock:
                    profile = self.profiles.get(control_id)
                    shown = json.loads(json.dumps(profile)) if profile is not None else None
                if shown is None:
                    return _error(404, "ResourceNotFound", f"Control profile '{control_id}' was not found.")
                return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata", **shown})
            if request.method == "PATCH":
                if self.read_only or WRITE_ROLE not in roles:
                    return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the "
                                  "operation.")  # fmt: skip
                return self._patch(control_id, request, str(claims.get("appid") or ""))
        return _error(400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.")

    # -- reads -----------------------------------------------------------------------------------

    def _all_scores(self) -> list[dict[str, Any]]:
        with self.lock:
            today = catalogue.snapshot(
                datetime.fromisoformat(self._history_base[0]["createdDateTime"].replace("Z", "+00:00")),
                sorted(self.profiles.values(), key=_by_rank),
                self.scores,
            )
        return [today, *self._history_base[1:]]

    def _scores(self, request: SimRequest) -> SimResponse:
        query = request.query
        try:
            top = int(query.get("$top", "90"))
            skip = int(query.get("$skiptoken") or query.get("$skip") or "0")
        except ValueError:
            return _error(400, "BadRequest", "Invalid $top or $skip value.")
        every = self._all_scores()
        value = every[max(skip, 0) : max(skip, 0) + max(top, 0)]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/v1.0/$metadata#security/secureScores",
                                "value": value}  # fmt: skip
        if skip + top < len(every):
            body["@odata.nextLink"] = f"{self.base_url}{SCORES}?{urlencode({'$top': top, '$skiptoken': skip + top})}"
        return self._partial(SimResponse.json(200, body))

    def _score(self, score_id: str) -> SimResponse:
        found = next((s for s in self._all_scores() if s["id"] == score_id), None)
        if found is None:
            return _error(404, "ResourceNotFound", f"Secure score '{score_id}' was not found.")
        return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata", **found})

    def _profiles(self, request: SimRequest) -> SimResponse:
        query = request.query
        token = query.get("$skiptoken", "0")
        offset = int(token) if token.isascii() and token.isdigit() else 0
        raw_top = query.get("$top")
        if raw_top is not None and not (raw_top.isascii() and raw_top.isdigit() and 0 < int(raw_top) <= MAX_TOP):
            return _error(400, "BadRequest", f"Invalid $top value: it must be between 1 and {MAX_TOP}.")
        top = int(raw_top) if raw_top else self.page_size
        raw_filter = query.get("$filter")
        match = _FILTER.fullmatch(raw_filter.strip()) if raw_filter is not None else None
        if raw_filter is not None and match is None:
            return _error(400, "BadRequest", "Invalid filter clause.")
        failed = {provider for (_, provider) in self.failed_providers}
        with self.lock:
            ordered = [
                p
                for p in sorted(self.profiles.values(), key=_by_rank)
                if p.get("service") not in failed and (match is None or p.get(match[1]) == match[2])
            ]
            page = [json.loads(json.dumps(p)) for p in ordered[offset : offset + top]]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#security/secureScoreControlProfiles",
            "value": [] if self.empty else page,
        }
        if offset + top < len(ordered) and not self.empty:
            base = self.next_link_base or self.base_url
            params = {k: v for k, v in (("$top", raw_top), ("$filter", raw_filter)) if v is not None}
            body["@odata.nextLink"] = f"{base}{PROFILES}?{urlencode({**params, '$skiptoken': offset + top})}"
        return self._partial(SimResponse.json(200, body))

    def _partial(self, response: SimResponse) -> SimResponse:
        """A provider behind the security API failed: 206 with one `Warning` per failed provider, the body holding
        what the others returned (learn `concepts/security-error-codes`)."""
        if not self.failed_providers:
            return response
        response.status = 206
        response.headers["Warning"] = ", ".join(
            f'199 - "{vendor}/{provider}/{status}/10000"'
            for (vendor, provider), status in self.failed_providers.items()
        )
        return response

    # -- the update ------------------------------------------------------------------------------

    def _patch(self, control_id: str, request: SimRequest, app_id: str) -> SimResponse:
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
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "The request body must be a JSON object.")
        vendor = body.get("vendorInformation")
        if not isinstance(vendor, dict) or any(vendor.get(k) != v for k, v in VENDOR.items()):
            return _error(400, "BadRequest", "vendorInformation with valid provider and vendor is required.")
        state = body.get("state")
        if "state" in body and not (isinstance(state, str) and state.lower() in STATES):
            return _error(400, "BadRequest", f"Invalid value for state: '{state}'.")
        for name in ("assignedTo", "comment"):
            if name in body and body[name] is not None and not isinstance(body[name], str):
                return _error(400, "BadRequest", f"Invalid value for {name}.")
        with self.lock:
            current = (profile.get("controlStateUpdates") or [{}])[-1]
            entry = {name: body.get(name, current.get(name)) for name in ("assignedTo", "comment", "state")}
            entry.update(state=entry["state"] or "Default", updatedBy=app_id, updatedDateTime=self._now_text())
            profile["controlStateUpdates"].append(entry)
            shown = json.loads(json.dumps(profile))
        if "return=representation" in request.headers.get("prefer", ""):
            return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata", **shown})
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
                if cid not in self.scores:
                    continue  # not scored for this tenant: nothing to complete
                score, max_score = self.scores[cid], profile.get("maxScore") or 0.0
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
