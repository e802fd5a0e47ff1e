"""App Service Authentication ("Easy Auth"), as the local host emulates it for `LOCAL_USER` / `LOCAL_USER_ROLES`.

Like the platform: a session cookie from `/.auth/login/aad`; for requests carrying it, the principal headers
(`X-MS-CLIENT-PRINCIPAL`, base64 JSON with the user's claims and app roles, plus `-NAME` and `-ID`) are set,
and whatever a client sent under those names is stripped first; without it, a browser page is redirected to
sign in and an API call (`X-Requested-With: XMLHttpRequest`, or not a GET) answers 401; the OAuth callback and
the push endpoint are excluded paths. `/.auth/me`, `/.auth/refresh` and `/.auth/logout` answer as the platform's.

A terminal (curl) signs in as a machine client does in Azure, with a bearer token (docs/admin-guide.md, 1a): the
local API token `make run` keeps in its data folder (`api_token`), which signs the request in as the first user.
It is no weaker against another site than the session: a page elsewhere cannot send an `Authorization` header
without a CORS preflight, which nothing here ever allows, and cannot read the token (a file, mode 0600).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

from dev.wire.redirects import local_target
from shared.signin import LOCAL_PROOF_HEADER, local_host_proof

SESSION_COOKIE = "AppServiceAuthSession"
EXCLUDED_PATHS = ("/api/oauth/callback", "/api/servicenow/events", "/api/tenants/consent")
_PLATFORM_HEADERS = ("x-ms-client-principal", "x-ms-token-", LOCAL_PROOF_HEADER.lower())


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class LocalUser:
    name: str
    roles: tuple[str, ...]
    object_id: str = ""

    def __post_init__(self) -> None:
        self.object_id = self.object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-user:{self.name}"))

    @classmethod
    def parse(cls, name: str, roles: str) -> LocalUser:
        return cls(name, tuple(r for r in roles.replace(",", " ").split() if r))

    def claims(self) -> list[dict[str, str]]:
        return [
            {"typ": "preferred_username", "val": self.name},
            {"typ": "name", "val": self.name},
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": self.object_id},
            *({"typ": "roles", "val": role} for role in self.roles),
        ]

    def principal(self) -> str:
        data = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": self.claims()}
        return base64.b64encode(json.dumps(data).encode()).decode()


@dataclass
class EasyAuth:
    """`users[0]` signs in by default; `/.auth/login/aad?login_hint=<name>` signs in as another of them."""

    users: list[LocalUser]
    sessions: dict[str, LocalUser] = field(default_factory=dict)
    api_token: str | None = None  # `Authorization: Bearer <it>` signs a request in as users[0] (make run)

    def _session(self, headers: Mapping[str, str]) -> str | None:
        cookie = next((v for k, v in headers.items() if k.lower() == "cookie"), "") or ""
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and value in self.sessions:
                return value
        return None

    def auth_route(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> Answer | None:
        """The platform's own `/.auth/*` endpoints; None for any other path."""
        if not path.startswith("/.auth/"):
            return None
        params = dict(parse_qsl(query))
        if path.startswith("/.auth/login/"):
            token = secrets.token_urlsafe(32)
            hint = params.get("login_hint")
            self.sessions[token] = next((u for u in self.users if u.name == hint), self.users[0])
            target = local_target(params.get("post_login_redirect_uri"), "/api/portal")  # never an open redirector
            cookie = f"{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
            return Answer(302, {"Location": target, "Set-Cookie": cookie})
        if path == "/.auth/logout":
            self.sessions.pop(self._session(headers) or "", None)
            return Answer(302, {"Location": "/", "Set-Cookie": f"{SESSION_COOKIE}=; Path=/; Max-Age=0"})
        session = self._session(headers)
        if session is None:
            return Answer(401, {"Content-Type": "application/json"}, b'{"code":401,"message":"Not signed in"}')
        user = self.sessions[session]
        if path == "/.auth/me":
            me = [{"provider_name": "aad", "user_id": user.name,
                   "user_claims": user.claims(), "expires_on": "2099-01-01T00:00:00Z"}]  # fmt: skip
            return Answer(200, {"Content-Type": "application/json"}, json.dumps(me).encode())
        if path == "/.auth/refresh":
            return Answer(200, {"Content-Type": "application/json"}, b"{}")
        return Answer(404, {"Content-Type": "application/json"}, b'{"code":404}')

    def gate(self, method: str, path: str, target: str, headers: dict[str, str]) -> Answer | None:
        """Strip what only the platform may set; add the principal for a signed-in session; else refuse or send
        the browser to sign in. None lets the request through (with `headers` changed in place)."""
        for name in [k for k in headers if k.lower().startswith(_PLATFORM_HEADERS)]:
            del headers[name]
        if path.startswith(EXCLUDED_PATHS):
            return None
        session = self._session(headers)
        if session is not None:
            self._sign_in(self.sessions[session], headers)
            return None
        if self._token_presented(headers):
            for name in [k for k in headers if k.lower() == "authorization"]:
                del headers[name]  # consumed here, as the platform consumes what it validated
            self._sign_in(self.users[0], headers)
            return None
        ajax = any(k.lower() == "x-requested-with" and v == "XMLHttpRequest" for k, v in headers.items())
        if method == "GET" and not ajax:
            return Answer(302, {"Location": f"/.auth/login/aad?post_login_redirect_uri={quote(target, safe='')}"})
        detail = "App Service Authentication: sign in at /.auth/login/aad."
        if self.api_token:
            detail += " From a terminal, send the local API token: Authorization: Bearer <it> (make run prints how)."
        body = {"status": 401, "code": "unauthorized", "title": "Sign in first", "detail": detail}
        return Answer(401, {"Content-Type": "application/problem+json", "WWW-Authenticate": 'Bearer realm="local"'},
                      json.dumps(body).encode())  # fmt: skip

    def _token_presented(self, headers: Mapping[str, str]) -> bool:
        if not self.api_token:
            return False
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "") or ""
        scheme, _, token = value.partition(" ")
        presented = token.strip().encode("utf-8", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented, self.api_token.encode("ascii"))

    @staticmethod
    def _sign_in(user: LocalUser, headers: dict[str, str]) -> None:
        headers["X-MS-CLIENT-PRINCIPAL"] = user.principal()
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = user.name
        headers["X-MS-CLIENT-PRINCIPAL-ID"] = user.object_id
        headers["X-MS-CLIENT-PRINCIPAL-IDP"] = "aad"
        headers[LOCAL_PROOF_HEADER] = local_host_proof()  # outside Azure, the app trusts only a vouched principal
