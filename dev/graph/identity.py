"""The App Service managed-identity endpoint the Graph simulator trusts first: it issues signed tokens with an
audience, an expiry and the identity's Graph app roles, as `DefaultAzureCredential` receives them in Azure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from dev.graph import catalogue
from dev.wire.messages import SimRequest, SimResponse

APP_ID = "6b0f6e8a-1c2d-4e3f-9a8b-7c6d5e4f3a2b"  # the user-assigned managed identity's client id
READ_ROLE = "SecurityEvents.Read.All"
WRITE_ROLE = "SecurityEvents.ReadWrite.All"
TOKEN_EXCHANGE = "api://AzureADTokenExchange"  # and its sovereign variants (...USGov, ...China)


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
        tid = tenant or self.tenant
        # A token for the token exchange is a v2.0 token: its issuer is what a federated identity credential names
        # (learn `entra/workload-id/workload-identity-federation-config-app-trust-managed-identity`).
        issuer = (f"https://login.microsoftonline.com/{tid}/v2.0" if resource.startswith(TOKEN_EXCHANGE)
                  else f"https://sts.windows.net/{tid}/")  # fmt: skip
        claims = {"aud": resource, "iss": issuer, "iat": issued,
                  "nbf": issued, "exp": issued + (self.lifetime if lifetime is None else lifetime),
                  "appid": app_id or self.client_id, "oid": self.object_id, "sub": self.object_id, "tid": tid,
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


class TokenIssuer(Protocol):
    """Something whose tokens Graph accepts: `verify` gives the claims of a token it signed, else None."""

    def verify(self, token: str) -> dict[str, Any] | None: ...
