"""An in-memory Microsoft Graph for Secure Score, speaking the wire protocol the connector uses, as strictly as the
public documentation reads (shapes and their sources: docs/design.md#microsoft-graph-facts).

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
- Several tenants: Graph also accepts tokens from issuers it is told to trust (`trust`: the Entra simulator's
  app-only tokens for another tenant) and answers each token with the data of the tenant its `tid` names: the home
  tenant as always (`catalogue.initial_scores`), any other with its own scores and history
  (`catalogue.customer_scores`). Requests and requests in flight are counted per tenant too (`tenant(id)`).
- Switches: complete or regress a control (`POST /sim/controls/{id}/complete|regress`, or the page at `/sim`), a
  person's state change (`POST /sim/controls/{id}/state`, form-encoded: `dev/graph/pages.py`);
  a failing provider (206 with `Warning: 199 - "{vendor}/{provider}/{status}/{ms}"`, its controls left out); a
  dripping response; an empty listing; faults (429 with `Retry-After`, 503, latency, drops, and `commit_then_drop`:
  the work done, the answer lost).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from dev.graph import catalogue
from dev.graph.identity import READ_ROLE, WRITE_ROLE, ManagedIdentity, TokenIssuer
from dev.graph.pages import controls_page, state_form, tenant_query
from dev.graph.tenant import TenantData
from dev.wire.faults import Fault, take_fault
from dev.wire.messages import SimRequest, SimResponse

PROFILES = "/v1.0/security/secureScoreControlProfiles"
SCORES = "/v1.0/security/secureScores"
STATES = {"default", "ignored", "thirdparty", "reviewed"}  # securescorecontrolprofile-update: possible values
VENDOR = {"provider": "SecureScore", "vendor": "Microsoft"}  # "must contain vendorInformation with valid ..."
_FILTER = re.compile(r"^(id|service|controlCategory) eq '([^']{1,100})'$")
MAX_TOP = 250  # profile pages hold up to 250 (Galvnyz/M365-Assess#663)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> SimResponse:
    body = {"error": {"code": code, "message": message,
                      "innerError": {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                     "request-id": secrets.token_hex(16)}}}  # fmt: skip
    return SimResponse.json(status, body, headers)


class GraphSimulator:
    def __init__(self, identity: ManagedIdentity | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.identity = identity or ManagedIdentity()
        self.clock = clock
        self.base_url = "https://graph.microsoft.com"
        self.lock = threading.RLock()
        self.home = TenantData(catalogue.TENANT, "Contoso (home)", catalogue.initial_scores(), clock, self.lock)
        self._tenants: dict[str, TenantData] = {self.home.id: self.home}
        self.trusted: list[TokenIssuer] = []  # issuers besides the managed identity (the Entra simulator)
        self.page_size = 100
        self.faults: list[Fault] = []
        self.requests: list[SimRequest] = []
        self.drip = 0.0  # seconds between the bytes of every answer's body
        self.latency = 0.0
        self.next_link_base: str | None = None  # a test's hostile Graph: next links to another host
        self.in_flight = 0  # across all tenants
        self.max_in_flight = 0
        self.while_in_flight: Callable[[SimRequest], None] | None = None  # a test holds requests in flight here

    def bind(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.identity.bind(base_url)

    def trust(self, issuer: TokenIssuer) -> None:
        """Accept the tokens `issuer` signs (each still checked for audience, expiry and roles)."""
        with self.lock:
            self.trusted.append(issuer)

    def tenant(self, tenant_id: str, name: str | None = None) -> TenantData:
        """A tenant's data: the home tenant's, or another's, made on first use (deterministic per tenant id)."""
        with self.lock:
            found = self._tenants.get(tenant_id.lower())
            if found is None:
                found = TenantData(tenant_id.lower(), name or tenant_id, catalogue.customer_scores(tenant_id),
                                   self.clock, self.lock)  # fmt: skip
                self._tenants[found.id] = found
            elif name:
                found.name = name
            return found

    def tenants(self) -> list[TenantData]:
        with self.lock:
            return list(self._tenants.values())

    # The home tenant's data and switches, as before there were several tenants.
    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.home.profiles

    @property
    def scores(self) -> dict[str, float]:
        return self.home.scores

    @property
    def failed_providers(self) -> dict[tuple[str, str], int]:  # (vendor, provider/service) -> status: a 206
        return self.home.failed_providers

    @property
    def forbidden(self) -> bool:  # the identity's grant was removed: every call is 403, whatever its token says
        return self.home.forbidden

    @forbidden.setter
    def forbidden(self, value: bool) -> None:
        self.home.forbidden = value

    @property
    def read_only(self) -> bool:  # SecurityEvents.Read.All only: PATCH is 403, whatever its token says
        return self.home.read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self.home.read_only = value

    @property
    def empty(self) -> bool:  # the profile listing answers 200 with no profiles
        return self.home.empty

    @empty.setter
    def empty(self, value: bool) -> None:
        self.home.empty = value

    def add_profile(self, profile: dict[str, Any], score: float | None) -> None:
        """Another control (benchmarks: a tenant with more controls than the catalogue); None: not scored."""
        self.home.add_profile(profile, score)

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    # -- the switches (the home tenant's; `tenant(id).complete(...)` for another) ------------------------

    def complete(self, control_id: str) -> None:
        """What an admin's change does once Secure Score's daily sync sees it: all the control's points."""
        self.home.complete(control_id)

    def regress(self, control_id: str) -> None:
        self.home.regress(control_id)

    def set_state(
        self, control_id: str, state: str, assigned_to: str | None = None, by: str = "admin@contoso.com"
    ) -> None:
        """What an admin does in the Defender portal: a new history entry with a state and an analyst."""
        self.home.set_state(control_id, state, assigned_to, by)

    def state_of(self, control_id: str) -> dict[str, Any]:
        """The newest controlStateUpdates entry: where a write-back lands."""
        return self.home.state_of(control_id)

    # -- dispatch --------------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path == "/msi/token":
            return self.identity.handle(request)
        if request.path.startswith("/sim"):
            return self._switch(request)
        arrived = time.monotonic()
        caller = self._caller(request)
        tenant = self.tenant(caller["tid"]) if isinstance(caller, dict) else None
        with self.lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if tenant is not None:
                tenant.requests.append(request)
                tenant.in_flight += 1
                tenant.max_in_flight = max(tenant.max_in_flight, tenant.in_flight)
            fault = take_fault(self.faults, request)
        try:
            if self.while_in_flight is not None:
                self.while_in_flight(request)
            held = fault.seconds if fault is not None and fault.kind == "latency" else 0.0  # on top of `latency`
            time.sleep(held)
            if fault is not None and fault.kind == "drop":
                response = SimResponse(0, drop=True)
            elif fault is not None and fault.kind == "commit_then_drop":
                # The work is done and the answer is lost on the way back: a PATCH is not idempotent (RFC 5789,
                # section 2), and each one adds an entry to the control's history (securescorecontrolprofile-update).
                self._route(request, caller, tenant)
                response = SimResponse(0, drop=True)
            elif fault is not None and fault.kind == "drip":
                response = self._route(request, caller, tenant)
                response.drip = fault.seconds
            elif fault is not None and fault.kind != "latency":
                code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
                response = _error(fault.status, code, "Injected fault", fault.headers)
            else:
                response = self._route(request, caller, tenant)
                response.drip = response.drip or self.drip
            # `latency` is how long Graph takes to answer, the simulator's own work included: a remote service's
            # CPU is not the connector's, so only what is left of it is slept (the benchmarks model it so).
            time.sleep(max(0.0, self.latency - (time.monotonic() - arrived - held)))
            return response
        finally:
            with self.lock:
                self.in_flight -= 1
                if tenant is not None:
                    tenant.in_flight -= 1

    def _caller(self, request: SimRequest) -> dict[str, Any] | SimResponse:
        """The token's claims, or Graph's 401 (a token no trusted issuer signed, for another audience, or expired)."""
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        claims = None
        for issuer in [self.identity, *self.trusted] if token and token.isascii() else []:
            claims = issuer.verify(token)
            if claims is not None:
                break
        if claims is None or not isinstance(claims.get("tid"), str):
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if claims.get("aud") not in (self.base_url, f"{self.base_url}/"):
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if int(claims.get("exp", 0)) <= self.identity.now():
            return _error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        return claims

    def _route(
        self, request: SimRequest, claims: dict[str, Any] | SimResponse, tenant: TenantData | None
    ) -> SimResponse:
        if isinstance(claims, SimResponse):
            return claims
        assert tenant is not None  # a valid token always names its tenant
        roles = set(claims.get("roles") or [])
        if tenant.forbidden or not roles & {READ_ROLE, WRITE_ROLE}:
            return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        path = request.path
        if path == SCORES and request.method == "GET":
            return self._scores(request, tenant)
        if path.startswith(SCORES + "/") and request.method == "GET":
            return self._score(tenant, unquote(path[len(SCORES) + 1 :]))
        if path == PROFILES and request.method == "GET":
            return self._profiles(request, tenant)
        if path.startswith(PROFILES + "/"):
            control_id = unquote(path[len(PROFILES) + 1 :])
            if request.method == "GET":
                with self.lock:
                    profile = tenant.profiles.get(control_id)
                    shown = json.loads(json.dumps(profile)) if profile is not None else None
                if shown is None:
                    return _error(404, "ResourceNotFound", f"Control profile '{control_id}' was not found.")
                return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata", **shown})
            if request.method == "PATCH":
                if tenant.read_only or WRITE_ROLE not in roles:
                    return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the "
                                  "operation.")  # fmt: skip
                return self._patch(tenant, control_id, request, str(claims.get("appid") or ""))
        return _error(400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.")

    # -- reads -----------------------------------------------------------------------------------

    def _scores(self, request: SimRequest, tenant: TenantData) -> SimResponse:
        query = request.query
        try:
            top = int(query.get("$top", "90"))
            skip = int(query.get("$skiptoken") or query.get("$skip") or "0")
        except ValueError:
            return _error(400, "BadRequest", "Invalid $top or $skip value.")
        every = tenant.all_scores()
        value = every[max(skip, 0) : max(skip, 0) + max(top, 0)]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/v1.0/$metadata#security/secureScores",
                                "value": value}  # fmt: skip
        if skip + top < len(every):
            body["@odata.nextLink"] = f"{self.base_url}{SCORES}?{urlencode({'$top': top, '$skiptoken': skip + top})}"
        return self._partial(SimResponse.json(200, body), tenant)

    def _score(self, tenant: TenantData, score_id: str) -> SimResponse:
        found = next((s for s in tenant.all_scores() if s["id"] == score_id), None)
        if found is None:
            return _error(404, "ResourceNotFound", f"Secure score '{score_id}' was not found.")
        return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata", **found})

    def _profiles(self, request: SimRequest, tenant: TenantData) -> SimResponse:
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
        failed = {provider for (_, provider) in tenant.failed_providers}
        with self.lock:
            ordered = [
                p
                for p in tenant.ranked()
                if p.get("service") not in failed and (match is None or p.get(match[1]) == match[2])
            ]
            page = [json.loads(json.dumps(p)) for p in ordered[offset : offset + top]]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#security/secureScoreControlProfiles",
            "value": [] if tenant.empty else page,
        }
        if offset + top < len(ordered) and not tenant.empty:
            base = self.next_link_base or self.base_url
            params = {k: v for k, v in (("$top", raw_top), ("$filter", raw_filter)) if v is not None}
            body["@odata.nextLink"] = f"{base}{PROFILES}?{urlencode({**params, '$skiptoken': offset + top})}"
        return self._partial(SimResponse.json(200, body), tenant)

    def _partial(self, response: SimResponse, tenant: TenantData) -> SimResponse:
        """A provider behind the security API failed: 206 with one `Warning` per failed provider, the body holding
        what the others returned (learn `concepts/security-error-codes`)."""
        if not tenant.failed_providers:
            return response
        response.status = 206
        response.headers["Warning"] = ", ".join(
            f'199 - "{vendor}/{provider}/{status}/10000"'
            for (vendor, provider), status in tenant.failed_providers.items()
        )
        return response

    # -- the update ------------------------------------------------------------------------------

    def _patch(self, tenant: TenantData, control_id: str, request: SimRequest, app_id: str) -> SimResponse:
        with self.lock:
            profile = tenant.profiles.get(control_id)
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
            entry.update(state=entry["state"] or "Default", updatedBy=app_id, updatedDateTime=tenant.now_text())
            profile["controlStateUpdates"].append(entry)
            shown = json.loads(json.dumps(profile))
        if "return=representation" in request.headers.get("prefer", ""):
            return SimResponse.json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata", **shown})
        return SimResponse(204)

    # -- the switch, over HTTP -------------------------------------------------------------------

    portal_port: int | None = None  # make run: the page links back to the connector's portal on this port

    def _switch(self, request: SimRequest) -> SimResponse:
        parts = request.path.strip("/").split("/")
        query = dict(parse_qsl(urlsplit(request.url).query))
        tenant = self.tenant(query["tenant"]) if query.get("tenant") else self.home
        if (
            request.method == "POST"
            and len(parts) == 4
            and parts[1] == "controls"
            and parts[3] in ("complete", "regress")
        ):
            control_id = unquote(parts[2])
            if control_id not in tenant.profiles:
                return _error(404, "ResourceNotFound", control_id)
            (tenant.complete if parts[3] == "complete" else tenant.regress)(control_id)
            if query.get("back") == "page":
                return SimResponse(303, {"Location": "/sim" + tenant_query(tenant, self.home)})
            return SimResponse.json(200, {"id": control_id, "score": tenant.scores[control_id]})
        if request.method == "POST" and len(parts) == 4 and parts[1] == "controls" and parts[3] == "state":
            return state_form(request, tenant, unquote(parts[2]), self.home)
        if request.method == "GET" and parts == ["sim"]:
            with self.lock:
                return controls_page(request, tenant, self.home, list(self._tenants.values()), self.portal_port)
        return _error(404, "NotFound", request.path)
