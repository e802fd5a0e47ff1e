"""An in-memory ServiceNow instance speaking the wire protocol the connector uses.

OAuth (`oauth_auth.do` with a consent page, `oauth_token.do`, `oauth_revoke_token.do`) and the Table API
with ServiceNow's value shapes (all strings, reference objects), `Link` and `X-Total-Count` headers and
error envelopes, plus fault injection. Sources for every shape: docs/design.md#servicenow-facts.
`handle()` is transport-neutral: `transport.py` serves it in process (httpx) and on a loopback port.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from dev.host.redirects import local_target
from dev.servicenow import directory
from dev.servicenow import query as encoded_query

ADMIN_SYS_ID = "6816f79cc0a8016401c5a33be04be441"
INTEGRATION_USER_SYS_ID = "5137153cc611227c000bbd1bd8cd2007"
UNAUTHENTICATED = {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}
TOKEN_DENIED = {"error_description": "access_denied", "error": "server_error"}
INCIDENT_FIELDS = {
    "sys_id",
    "number",
    "short_description",
    "description",
    "state",
    "impact",
    "urgency",
    "priority",
    "due_date",
    "caller_id",
    "opened_by",
    "correlation_id",
    "correlation_display",
    "active",
    "category",
    "subcategory",
    "assigned_to",
    "assignment_group",
    "company",
    "close_code",
    "close_notes",
    "work_notes",
    "comments",
    "opened_at",
    "sys_created_on",
    "sys_updated_on",
    "sys_created_by",
    "sys_updated_by",
    "sys_mod_count",
    "incident_state",
    "resolved_at",
    "closed_at",
    "hold_reason",
}
USER_FIELDS = {"sys_id", "user_name", "name", "email", "active", "sys_created_on", "sys_updated_on"}
# sys_audit_delete: one row per deleted record (documentkey = its sys_id, tablename = its table).
AUDIT_DELETE_FIELDS = {"sys_id", "tablename", "documentkey", "display_value", "sys_created_on", "sys_created_by"}
REFERENCES = {"caller_id": "sys_user", "opened_by": "sys_user", "assigned_to": "sys_user",
              "assignment_group": "sys_user_group", "company": "core_company"}  # fmt: skip
# Choice labels, for sysparm_display_value (the base system's incident choices).
CHOICES = {
    "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "incident_state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "priority": {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"},
    "active": {"true": "true", "false": "false"},
}
PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("1", "3"): "3",
    ("2", "1"): "2",
    ("2", "2"): "3",
    ("2", "3"): "4",
    ("3", "1"): "3",
    ("3", "2"): "4",
    ("3", "3"): "5",
}


@dataclass
class SimRequest:
    method: str
    url: str  # absolute
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclass
class SimResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # close the connection without answering (after any commit)
    stall: float = 0.0  # seconds to wait before answering at all (a time-out after the commit)
    drip: float = 0.0  # seconds between the body's bytes, after the headers went out

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> SimResponse:
        return cls(
            status, {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}, json.dumps(payload).encode()
        )

    @classmethod
    def envelope(cls, status: int, message: str, detail: str | None) -> SimResponse:
        return cls.json(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


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


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    access_ttl: int = 1800
    refresh_ttl: int = 8_640_000
    name: str = "Microsoft 365 security connector"


@dataclass
class Grant:
    user_sys_id: str
    client_id: str
    expires: float
    revoked: bool = False


def _now_text(clock: float) -> str:
    return datetime.fromtimestamp(clock, UTC).strftime("%Y-%m-%d %H:%M:%S")


class ServiceNowSimulator:
    def __init__(self, instance_url: str = "https://sim.service-now.com", *, clock: Callable[[], float] = time.time):
        self.instance_url = instance_url.rstrip("/")
        self.clock = clock
        self.lock = threading.RLock()
        self.clients: dict[str, OAuthClient] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.current_access: dict[str, str] = {}  # refresh token -> the access token it last gave
        self.tables: dict[str, dict[str, dict[str, Any]]] = {"incident": {}, "sys_user": {}, "sys_audit_delete": {},
                                                             **directory.records(_now_text(clock()))}  # fmt: skip
        self.fields: dict[str, set[str]] = {"incident": set(INCIDENT_FIELDS), "sys_user": set(USER_FIELDS),
                                            "sys_audit_delete": set(AUDIT_DELETE_FIELDS),
                                            "sys_user_group": set(directory.GROUP_FIELDS),
                                            "core_company": set(directory.COMPANY_FIELDS)}  # fmt: skip
        self.faults: list[Fault] = []
        self.requests: list[SimRequest] = []
        self.auto_approve = False
        self.reuse_refresh_token = False  # a new code grant returns the user's current refresh token
        self.ip_denied = False
        # table -> {"read", "insert", "update", "delete", "cross_scope"}. sys_audit_delete needs an admin-granted
        # role on real instances, so an integration user is refused it unless a test grants it.
        self.deny: dict[str, set[str]] = {"sys_audit_delete": {"read"}}
        self.mandatory: dict[str, dict[str, str]] = {}  # table -> {field: label}: a data policy on insert
        self.mandatory_on_resolve: dict[str, dict[str, str]] = {}  # table -> {field: label} when resolving
        self.signed_in_user = INTEGRATION_USER_SYS_ID
        self.chaos_rate = 0.0  # share of Table API requests that get a random fault
        self.chaos_random = random.Random(0)
        self.latency = 0.0  # seconds added to every request (benchmarks)
        self.hibernating = False
        self.hidden: set[str] = set()  # sys_ids an ACL hides from the integration user
        self.journal: list[tuple[str, str, str]] = []  # (sys_id, work_notes|comments, text): read back as ""
        self.before_request: Callable[[SimRequest], None] | None = None  # lets a test change data mid-scan
        self.on_change: Callable[[], None] | None = None  # make run keeps the state (dev/servicenow/persist.py)
        self._number = 10000
        self.add_user(ADMIN_SYS_ID, "admin", "System Administrator", "admin@example.com")
        self.add_user(INTEGRATION_USER_SYS_ID, "m365.integration", "M365 Integration", "m365.integration@example.com")

    # -- setup --------------------------------------------------------------------------------------

    def bind(self, base_url: str) -> None:
        self.instance_url = base_url.rstrip("/")

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str], **kw: Any) -> OAuthClient:
        client = OAuthClient(client_id, client_secret, list(redirect_uris), **kw)
        self.clients[client_id] = client
        return client

    def add_user(self, sys_id: str, user_name: str, name: str, email: str) -> dict[str, Any]:
        stamp = _now_text(self.clock())
        record = {
            "sys_id": sys_id,
            "user_name": user_name,
            "name": name,
            "email": email,
            "active": "true",
            "sys_created_on": stamp,
            "sys_updated_on": stamp,
        }
        self.tables["sys_user"][sys_id] = record
        return record

    def add_table(self, table: str, fields: set[str]) -> None:
        self.tables.setdefault(table, {})
        self.fields[table] = set(fields) | {"sys_id", "sys_created_on", "sys_updated_on", "sys_mod_count", "number"}

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def records(self, table: str = "incident") -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.tables.get(table, {}).values()]

    # -- dispatch -----------------------------------------------------------------------------------

    def update(self, table: str, sys_id: str, **fields: str) -> dict[str, Any]:
        """What an agent does in the UI: change fields, which bumps sys_updated_on and sys_mod_count."""
        with self.lock:
            record = self.tables[table][sys_id]
            if self._apply(table, record, fields):
                record["sys_updated_on"] = _now_text(self.clock())
                record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
            return dict(record)

    def delete(self, table: str, sys_id: str) -> None:
        """What an agent's delete does: the record goes, and sys_audit_delete remembers it."""
        with self.lock:
            record = self.tables[table].pop(sys_id, None)
            if record is not None:
                self._audit_delete(table, record, "admin")

    def _audit_delete(self, table: str, record: dict[str, Any], user: str) -> None:
        audit_id = uuid.uuid4().hex
        self.tables["sys_audit_delete"][audit_id] = {
            "sys_id": audit_id, "tablename": table, "documentkey": str(record.get("sys_id")),
            "display_value": str(record.get("number") or ""), "sys_created_on": _now_text(self.clock()),
            "sys_created_by": user,
        }  # fmt: skip

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
            return self._record_page(request)
        if path == "/sim" and request.method == "GET":
            from dev.servicenow.record_page import directory_page

            return directory_page(self, request)
        # The unversioned path is the latest version's (Table API docs): v2, which answers an empty query with 200.
        for prefix, latest in (("/api/now/v2/table/", True), ("/api/now/v1/table/", False), ("/api/now/table/", True)):
            if path.startswith(prefix):
                return self._table(request, path[len(prefix) :].split("/"), versioned_v2=latest)
        return SimResponse(404, {"Content-Type": "text/html"}, b"<html><body>Not found</body></html>")

    # -- OAuth ---------------------------------------------------------------------------------------

    def _authorize(self, request: SimRequest) -> SimResponse:
        params = request.query if request.method == "GET" else request.form()
        client = self.clients.get(params.get("client_id", ""))
        if params.get("response_type") != "code" or client is None:
            return _page(400, "Invalid request", "Unknown client_id or unsupported response_type.")
        if not params.get("state"):
            return _page(400, "Error", "Missing State parameter in request")
        redirect = params.get("redirect_uri", "")
        if redirect not in client.redirect_uris:
            redirect = client.redirect_uris[0]  # ServiceNow falls back to the first registered URL
        if request.method == "POST":
            if params.get("action") != "allow":
                return _redirect(
                    redirect,
                    {"error": "access_denied", "error_description": "User denied access", "state": params["state"]},
                )
            return self._issue_code(client, redirect, params)
        if self.auto_approve:
            return self._issue_code(client, redirect, params)
        user = self.tables["sys_user"][self.signed_in_user]
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        not_you = "/login.do?" + urlencode({"next": "/oauth_auth.do?" + urlencode(params)})
        body = (
            f"<!doctype html><html><head><title>Authorize {html.escape(client.name)}</title></head><body>"
            f"<p>Signed in as <b>{html.escape(user['name'])}</b> ({html.escape(user['user_name'])}) "
            f'<a id="not-you" href="{html.escape(not_you)}">Not you?</a></p>'
            f"<h1>{html.escape(client.name)} would like to connect to your ServiceNow account</h1>"
            f'<form method="post" action="/oauth_auth.do">{hidden}'
            f'<button name="action" value="allow" id="allow">Allow</button> '
            f'<button name="action" value="deny" id="deny">Deny</button></form></body></html>'
        )
        return SimResponse(200, {"Content-Type": "text/html;charset=UTF-8"}, body.encode())

    def _login(self, request: SimRequest) -> SimResponse:
        """Sign in as another user (the 'Not you?' link): pick a user, then back to where the link came from."""
        params = request.query if request.method == "GET" else request.form()
        target = local_target(params.get("next"), "/")  # never an open redirector
        if request.method == "POST" and params.get("user") in self.tables["sys_user"]:
            self.signed_in_user = params["user"]
            return SimResponse(302, {"Location": target})
        options = "".join(
            f'<option value="{html.escape(u["sys_id"])}">{html.escape(u["name"])} ({html.escape(u["user_name"])})'
            "</option>"
            for u in self.tables["sys_user"].values()
        )
        body = (
            "<!doctype html><html><head><title>Log in</title></head><body><h1>ServiceNow sign-in</h1>"
            f'<form method="post" action="/login.do"><input type="hidden" name="next" value="{html.escape(target)}">'
            f'<select name="user">{options}</select> <button id="login">Log in</button></form></body></html>'
        )
        return SimResponse(200, {"Content-Type": "text/html;charset=UTF-8"}, body.encode())

    def _issue_code(self, client: OAuthClient, redirect: str, params: dict[str, str]) -> SimResponse:
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {
                "client_id": client.client_id,
                "redirect_uri": redirect,
                "challenge": params.get("code_challenge"),
                "method": params.get("code_challenge_method"),
                "user": self.signed_in_user,
                "expires": self.clock() + 60,
            }
        return _redirect(redirect, {"code": code, "state": params["state"]})

    def _token(self, request: SimRequest) -> SimResponse:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return SimResponse.json(400, {"error": "server_error", "error_description": "invalid content type"})
        form = request.form()
        client = self.clients.get(form.get("client_id", ""))
        if client is None or form.get("client_secret") != client.client_secret:
            return SimResponse.json(401, TOKEN_DENIED)
        grant_type = form.get("grant_type")
        with self.lock:
            if grant_type == "authorization_code":
                entry = self.codes.pop(form.get("code", ""), None)
                if (
                    entry is None
                    or entry["client_id"] != client.client_id
                    or entry["expires"] < self.clock()
                    or entry["redirect_uri"] != form.get("redirect_uri")
                    or not _pkce_ok(entry, form.get("code_verifier"))
                ):
                    return SimResponse.json(401, TOKEN_DENIED)
                current = [
                    token
                    for token, grant in self.refresh_tokens.items()
                    if grant.user_sys_id == entry["user"] and grant.client_id == client.client_id and not grant.revoked
                ]
                if self.reuse_refresh_token and current:
                    return self._access(client, entry["user"], current[-1], reuse=True)
                refresh = secrets.token_urlsafe(48)
                self.refresh_tokens[refresh] = Grant(entry["user"], client.client_id, self.clock() + client.refresh_ttl)
                return self._access(client, entry["user"], refresh)
            if grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                grant = self.refresh_tokens.get(refresh)
                if (
                    grant is None
                    or grant.revoked
                    or grant.client_id != client.client_id
                    or grant.expires < self.clock()
                ):
                    return SimResponse.json(401, TOKEN_DENIED)
                # The same refresh token comes back; so does the current access token while it is valid
                # ("access requests made within the expiration time ... return the current access token").
                return self._access(client, grant.user_sys_id, refresh, reuse=True)
        return SimResponse.json(401, TOKEN_DENIED)

    def _access(self, client: OAuthClient, user: str, refresh: str, *, reuse: bool = False) -> SimResponse:
        now = self.clock()
        current = self.current_access.get(refresh) if reuse else None
        grant = self.access_tokens.get(current or "")
        if current is None or grant is None or grant.revoked or grant.expires <= now:
            current = secrets.token_urlsafe(48)
            grant = Grant(user, client.client_id, now + client.access_ttl)
            self.access_tokens[current] = grant
            self.current_access[refresh] = current
        return SimResponse.json(
            200,
            {
                "access_token": current,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": max(int(grant.expires - now) - 1, 0),
            },
        )

    def _revoke(self, request: SimRequest) -> SimResponse:
        # Only the documented form: "append the access or refresh token" as `?token=` (t_RevokeOAuthToken). A token
        # in a form body is not documented, so it revokes nothing here (the stricter reading).
        token = request.query.get("token", "")
        with self.lock:
            for store in (self.access_tokens, self.refresh_tokens):
                if token in store:
                    store[token].revoked = True
        return SimResponse(200, {"Content-Type": "text/plain"}, b"")

    def revoke_all(self) -> None:
        """What an admin deleting the oauth_credential rows does."""
        with self.lock:
            for grant in [*self.access_tokens.values(), *self.refresh_tokens.values()]:
                grant.revoked = True

    # -- the simulator's own pages: a record an agent works in (what a ticket's `url` opens), the directory ------

    portal_port: int | None = None  # make run: the pages link back to the connector's portal on this port

    def _record_page(self, request: SimRequest) -> SimResponse:
        from dev.servicenow.record_page import record_page

        return record_page(self, request)

    # -- Table API -----------------------------------------------------------------------------------

    def _caller(self, request: SimRequest) -> str | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        grant = self.access_tokens.get(auth[7:])
        if grant is None or grant.revoked or grant.expires < self.clock():
            return None
        return grant.user_sys_id

    def _table(self, request: SimRequest, parts: list[str], *, versioned_v2: bool) -> SimResponse:
        user = self._caller(request)
        if user is None:
            return SimResponse.envelope(401, UNAUTHENTICATED["message"], UNAUTHENTICATED["detail"])
        table = parts[0]
        sys_id = parts[1] if len(parts) > 1 else None
        if table not in self.tables:
            return SimResponse.envelope(400, f"Invalid table {table}", None)
        denied = self.deny.get(table, set())
        operation = {"GET": "read", "POST": "insert", "PATCH": "update", "PUT": "update", "DELETE": "delete"}.get(
            request.method, ""
        )
        if "cross_scope" in denied:
            verb = {"read": "Read", "insert": "Create", "update": "Write"}.get(operation, "Read")
            return SimResponse.envelope(
                403,
                f"{verb} operation against '{table}' from scope 'x_m365_connector' has been refused due to "
                "the table's cross-scope access policy",
                None,
            )
        if operation in denied:
            if operation == "read":
                return SimResponse.envelope(
                    403,
                    "Insufficient rights to query records",
                    "Field(s) present in the query do not have permission to be read",
                )
            verb = {"insert": "Insert", "delete": "Delete"}.get(operation, "Update")
            return SimResponse.envelope(
                403, "Operation Failed", f"ACL Exception {verb} Failed due to security constraints"
            )
        with self.lock:
            if request.method == "GET" and sys_id is None:
                return self._list(request, table, user, versioned_v2)
            if request.method == "GET":
                record = self.tables[table].get(sys_id or "")
                if record is None or record["sys_id"] in self.hidden:
                    return _no_record()
                return SimResponse.json(200, {"result": self._shape(table, record, request.query)})
            if request.method == "POST" and sys_id is None:
                return self._insert(request, table, user)
            if request.method in ("PATCH", "PUT") and sys_id:
                return self._update(request, table, sys_id, user)
            if request.method == "DELETE" and sys_id:
                record = self.tables[table].get(sys_id)
                if record is None or sys_id in self.hidden:
                    return _no_record()
                self.tables[table].pop(sys_id)
                self._audit_delete(table, record, user)
                return SimResponse(204)  # "DELETE returns 204 with no body" (Table API docs)
        return SimResponse.envelope(405, "Method not Supported", f"{request.method} is not supported here")

    def _shape(self, table: str, record: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        """A record as the Table API returns it: every value a string, references as `{link, value}` (or the plain
        sys_id with `sysparm_exclude_reference_link=true`); with `sysparm_display_value=true` display values
        (a reference's display name, a choice's label), with `all` `{display_value, value}` pairs plus the
        reference link (Table API docs, GET parameters)."""
        wanted = [f for f in params.get("sysparm_fields", "").split(",") if f]
        exclude = params.get("sysparm_exclude_reference_link") == "true"
        display = params.get("sysparm_display_value", "false").lower()
        shaped: dict[str, Any] = {}
        for name in wanted or sorted(record):
            if "." in name:  # dot-walking a reference: assigned_to.email
                value = self._dot_walk(record, name)
                shaped[name] = {"display_value": value, "value": value} if display == "all" else value
                continue
            if name not in self.fields[table]:
                continue
            shaped[name] = self._field_value(name, record.get(name, ""), display, exclude)
        return shaped

    def _field_value(self, name: str, value: Any, display: str, exclude: bool) -> Any:
        reference = value if isinstance(value, dict) else None
        raw = str(reference["value"]) if reference else ("" if value is None else str(value))
        if display == "false":
            return raw if reference is None or exclude else dict(reference)
        shown = self._display(name, raw)
        if display == "true":
            if reference is None or exclude:
                return shown
            return {"display_value": shown, "link": reference["link"]}
        pair: dict[str, Any] = {"display_value": shown, "value": raw}
        if reference is not None and not exclude:
            pair["link"] = reference["link"]
        return pair

    def _display(self, name: str, raw: str) -> str:
        if not raw:
            return ""
        if name in REFERENCES:
            referenced = self.tables.get(REFERENCES[name], {}).get(raw)
            return str((referenced or {}).get("name") or (referenced or {}).get("number") or "")
        return CHOICES.get(name, {}).get(raw, raw)

    def _dot_walk(self, record: dict[str, Any], name: str) -> str:
        reference, _, target = name.partition(".")
        value = record.get(reference)
        sys_id = value.get("value") if isinstance(value, dict) else None
        referenced = self.tables.get(REFERENCES.get(reference, "sys_user"), {}).get(sys_id or "")
        return str(referenced.get(target, "")) if referenced else ""

    def _list(self, request: SimRequest, table: str, user: str, v2: bool) -> SimResponse:
        """A page as ServiceNow makes it: query, order, `sysparm_offset` and `sysparm_limit` first, and only then
        the ACL filter, so a page can come back short or empty while more rows follow, and `X-Total-Count` counts
        rows before ACLs ("sysparm_limit ... applied before ACL filtering", Table API docs)."""
        params = request.query
        parsed = encoded_query.parse(params.get("sysparm_query", ""), lambda js: self._javascript(js, user))
        wanted = encoded_query.candidate_ids(parsed)
        every = self.tables[table]
        pool = every.values() if wanted is None else [every[s] for s in wanted if s in every]
        rows = [r for r in pool if encoded_query.matches(parsed, r, self.fields[table])]
        rows = encoded_query.sort(parsed, rows)
        try:
            limit = int(params.get("sysparm_limit", "10000"))
            offset = int(params.get("sysparm_offset", "0"))
        except ValueError:
            return SimResponse.envelope(400, "Invalid parameter", "sysparm_limit and sysparm_offset are numbers")
        offset, limit = max(offset, 0), max(limit, 1)
        window = rows[offset : offset + limit]
        page = [r for r in window if r["sys_id"] not in self.hidden]
        if not page and not v2 and not rows:
            return _no_record()
        counted = params.get("sysparm_no_count") != "true"
        headers = {"X-Total-Count": str(len(rows))} if counted else {}
        if params.get("sysparm_suppress_pagination_header") != "true":
            more = offset + limit < len(rows) if counted else len(window) == limit
            link = _links(request, offset, limit, len(rows) if counted else None, more)
            if link:
                headers["Link"] = link
        return SimResponse.json(200, {"result": [self._shape(table, r, params) for r in page]}, headers)

    def _javascript(self, script: str, user: str) -> str:
        if script == "javascript:gs.getUserID()":
            return user
        return ""

    def _body(self, request: SimRequest) -> dict[str, Any] | SimResponse:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return SimResponse.envelope(415, "Unsupported Media Type", "Content-Type must be application/json")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return SimResponse.envelope(400, "Exception while reading request", "The payload is not valid JSON")
        if isinstance(body, list):
            body = body[0] if body else {}
        return body if isinstance(body, dict) else {}

    def _insert(self, request: SimRequest, table: str, user: str) -> SimResponse:
        body = self._body(request)
        if isinstance(body, SimResponse):
            return body
        missing = [label for name, label in self.mandatory.get(table, {}).items() if not body.get(name)]
        if missing:
            detail = "Data Policy Exception: \n\tThe following fields are mandatory: " + ", ".join(missing)
            return SimResponse.envelope(403, "Operation Failed", detail)
        stamp = _now_text(self.clock())
        sys_id = uuid.uuid4().hex
        self._number += 1
        record: dict[str, Any] = {name: "" for name in self.fields[table]}
        record.update(
            sys_id=sys_id,
            sys_created_on=stamp,
            sys_updated_on=stamp,
            sys_mod_count="0",
            number=f"INC{self._number:07d}",
        )
        # Who made it, by user name, as a recorded POST shows (swimlane/techpubs-knowledgecenter,
        # docs/Connectors/ServiceNow/Actions/create_incident.md: opened_by the admin's sys_id, sys_created_by "admin").
        author = str(self.tables["sys_user"].get(user, {}).get("user_name") or "")
        if "sys_created_by" in self.fields[table]:
            record.update(sys_created_by=author, sys_updated_by=author)
        if table == "incident":
            record.update(
                state="1",
                incident_state="1",
                impact="3",
                urgency="3",
                active="true",
                category="inquiry",
                opened_at=stamp,
                opened_by=self._reference("sys_user", user),
            )
        self._apply(table, record, body, display_input=_display_input(request))
        self.tables[table][sys_id] = record
        location = f"{self.instance_url}/api/now/table/{table}/{sys_id}"
        return SimResponse.json(201, {"result": self._shape(table, record, request.query)}, {"Location": location})

    def _update(self, request: SimRequest, table: str, sys_id: str, user: str) -> SimResponse:
        record = self.tables[table].get(sys_id)
        if record is None:
            return _no_record()
        body = self._body(request)
        if isinstance(body, SimResponse):
            return body
        resolving = str(body.get("state")) in ("6", "7") and record.get("state") not in ("6", "7")
        policy = self.mandatory_on_resolve.get(table, {}) if resolving else {}
        missing = [label for name, label in policy.items() if not (body.get(name) or record.get(name))]
        if missing:
            detail = "Data Policy Exception: \n\tThe following fields are mandatory: " + ", ".join(missing)
            return SimResponse.envelope(403, "Operation Failed", detail)
        if self._apply(table, record, body, display_input=_display_input(request)):
            record["sys_updated_on"] = _now_text(self.clock())
            record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
            if "sys_updated_by" in self.fields[table]:
                record["sys_updated_by"] = str(self.tables["sys_user"].get(user, {}).get("user_name") or "")
        return SimResponse.json(200, {"result": self._shape(table, record, request.query)})

    def _apply(self, table: str, record: dict[str, Any], body: dict[str, Any], *, display_input: bool = False) -> bool:
        changed = False
        for name, value in body.items():
            if name not in self.fields[table] or name in ("sys_id", "number", "sys_created_on"):
                continue  # ServiceNow ignores unknown fields
            text = "" if value is None else str(value)
            if name in ("work_notes", "comments"):  # journal fields: kept in sys_journal_field, read back as ""
                if text:
                    self.journal.append((str(record.get("sys_id")), name, text))
                    changed = True
                continue
            if name in REFERENCES and display_input:
                text = self._by_display_value(REFERENCES[name], text)
            if name in REFERENCES and text:
                new: Any = self._reference(REFERENCES[name], text)
            else:
                new = text
            if record.get(name) != new:
                record[name] = new
                changed = True
        if table == "incident":
            record["priority"] = PRIORITY.get((str(record.get("impact")), str(record.get("urgency"))), "5")
            record["incident_state"] = record.get("state", "1")
        return changed

    def _by_display_value(self, table: str, text: str) -> str:
        """A reference given by display value (`sysparm_input_display_value=true`: "Treats input values as display
        values and they are manipulated so they can be stored properly in the database", Table API docs, POST and
        PATCH parameters): the sys_id of the one record whose display field (`name`) is `text`, or `text` itself when
        it is the sys_id of a record. The docs say nothing of a name that matches no record or several; the
        simulator then leaves the reference empty and still writes the record, the harder of the plausible
        answers for a client that relied on a name (nothing tells it the name was not taken)."""
        rows = self.tables.get(table, {})
        named = [sys_id for sys_id, row in rows.items() if row.get("name") == text]
        if len(named) == 1:
            return named[0]
        return text if not named and text in rows else ""

    def _reference(self, table: str, sys_id: str) -> dict[str, str]:
        return {"link": f"{self.instance_url}/api/now/table/{table}/{sys_id}", "value": sys_id}


def _display_input(request: SimRequest) -> bool:
    return request.query.get("sysparm_input_display_value", "false").lower() == "true"


def _no_record() -> SimResponse:
    return SimResponse.envelope(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


def _pkce_ok(entry: dict[str, Any], verifier: str | None) -> bool:
    if not entry.get("challenge"):
        return True
    if entry.get("method") != "S256" or not verifier:
        return False
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return secrets.compare_digest(digest, entry["challenge"])


def _redirect(target: str, params: dict[str, str]) -> SimResponse:
    separator = "&" if "?" in target else "?"
    return SimResponse(302, {"Location": target + separator + urlencode(params)})


def _page(status: int, title: str, message: str) -> SimResponse:
    body = f"<html><head><title>{html.escape(title)}</title></head><body><p>{html.escape(message)}</p></body></html>"
    return SimResponse(status, {"Content-Type": "text/html;charset=UTF-8"}, body.encode())


def _links(request: SimRequest, offset: int, limit: int, total: int | None, more: bool) -> str:
    """The `Link` header a real instance sends: first, prev (not on the first page), next (while more follow)
    and last (when the total is counted); none at all when everything fits one page
    (https://github.com/ServiceNowITOM/ansible-sn-inventory/issues/15)."""
    if offset == 0 and not more:
        return ""
    parts = urlsplit(request.url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    params = request.query

    def link(rel: str, at: int) -> str:
        return f'<{base}?{urlencode({**params, "sysparm_limit": limit, "sysparm_offset": at})}>;rel="{rel}"'

    links = [link("first", 0)]
    if offset > 0:
        links.append(link("prev", max(offset - limit, 0)))
    if more:
        links.append(link("next", offset + limit))
    if total is not None:
        links.append(link("last", max((total - 1) // limit * limit, 0)))
    return ",".join(links)
