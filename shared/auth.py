"""Identity: the OAuth `state` and PKCE values the connector mints, and who is calling the API."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.edge import header
from shared.problems import Forbidden, Unauthorized

log = logging.getLogger(__name__)
EMAIL_OR_USER = re.compile(r"^(?:[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+|[A-Za-z0-9._-]{1,100})$")

STATE_BYTES = 32  # 256 random bits; RFC 9700 asks for at least 128
VERIFIER_BYTES = 64  # 86 base64url characters, within RFC 7636's 43-128


def new_state() -> str:
    return secrets.token_urlsafe(STATE_BYTES)


def new_code_verifier() -> str:
    return secrets.token_urlsafe(VERIFIER_BYTES)


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


ROLE_ADMIN = "Connector.Admin"  # connect, disconnect, live provisioning checks, Secure Score refresh
ROLE_CREATE = "Tickets.Create"  # create tickets
ROLES = frozenset({ROLE_ADMIN, ROLE_CREATE})
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
ID_TOKEN_HEADER = "X-MS-TOKEN-AAD-ID-TOKEN"  # noqa: S105 - a header name, not a secret
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
MAX_PRINCIPAL = 16 * 1024


@dataclass(frozen=True)
class Caller:
    """Who is calling: `principal` scopes Idempotency-Keys; `user` is the initiating user, if known; `roles`
    are the app roles (Connector.Admin, Tickets.Create) that decide what the caller may do."""

    principal: str
    user: str | None = None
    roles: frozenset[str] = frozenset()

    def require(self, role: str) -> None:
        if role not in self.roles:
            raise Forbidden(
                f"This needs the app role '{role}', which {self.user or 'the caller'} does not have.",
                remediation=(
                    f"An Entra ID admin assigns '{role}' to the user or client under Enterprise applications > "
                    "the connector's app > Users and groups (admin guide: roles)."
                ),
            )


LOCAL_CALLER = Caller("local", None, ROLES)  # outside Azure with no sign-in configured: every role, as before
SYSTEM_CALLER = Caller("system", None, ROLES)  # the connector's own work (Secure Score regressions)


def parse_principal(value: str) -> tuple[str, str | None, frozenset[str]]:
    """App Service Authentication's principal header: base64 JSON `{auth_typ, name_typ, role_typ, claims:
    [{typ, val}]}`. Returns (object id, user, roles); a malformed header is `unauthorized`."""
    if len(value) > MAX_PRINCIPAL:
        raise Unauthorized("The sign-in principal is too large.")
    try:
        data = json.loads(base64.b64decode(value, validate=False))
        claims = [c for c in data.get("claims") or [] if isinstance(c, dict)][:500]
        name_typ = str(data.get("name_typ") or "")
        role_typ = str(data.get("role_typ") or "roles")
    except (ValueError, TypeError, AttributeError, binascii.Error):
        raise Unauthorized("The sign-in principal is not valid.") from None

    def first(*types: str) -> str | None:
        return next((str(c.get("val")) for t in types for c in claims if c.get("typ") == t and c.get("val")), None)

    roles = frozenset(str(c.get("val")) for c in claims if c.get("typ") in ("roles", role_typ)) & ROLES
    user = first("preferred_username", name_typ)
    object_id = first(OBJECT_ID_CLAIM, "oid") or ""
    if user is not None and not EMAIL_OR_USER.fullmatch(user):
        user = None
    return object_id[:64], user, roles


class EntraAuthenticator:
    """Validates Entra ID tokens (a client's access token, or App Service Authentication's ID token):
    signature (keys fetched once and cached), expiry, issuer, audience (the app's id in both its forms)."""

    def __init__(self, tenant_id: str, audience: str, authority: str) -> None:
        self.tenant_id = tenant_id
        self.audience = audience
        bare = audience.removeprefix("api://")
        self.audiences = list(dict.fromkeys([audience, bare, f"api://{bare}"]))
        self.jwks_url = f"{authority}/{tenant_id}/discovery/v2.0/keys"
        self.issuers = [f"{authority}/{tenant_id}/v2.0", f"https://sts.windows.net/{tenant_id}/"]
        self._keys: Any = None
        self._lock = threading.Lock()

    def _signing_keys(self) -> Any:
        if self._keys is None:
            with self._lock:
                if self._keys is None:
                    import jwt  # lazy: only routes that need a caller pay for it

                    self._keys = jwt.PyJWKClient(self.jwks_url, cache_jwk_set=True, lifespan=3600, timeout=10)
        return self._keys

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        value = header(headers, "Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("An Entra ID bearer token is required (Authorization: Bearer <token>).")
        return self.validate(token.strip())

    def validate(self, token: str) -> Caller:
        import jwt

        try:
            key = self._signing_keys().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audiences,
                issuer=self.issuers,
                leeway=60,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError:
            log.warning("Entra ID signing keys could not be fetched from %s", self.jwks_url)
            raise Unauthorized("The token's signing keys could not be fetched; try again later.") from None
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The sign-in has expired.", extra={"reason": "token_expired"}) from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The bearer token is not valid ({type(exc).__name__}).") from None
        if claims.get("tid") not in (None, self.tenant_id):
            raise Unauthorized("The bearer token was issued for another tenant.")
        principal = str(claims.get("oid") or claims.get("sub") or "")
        user = next(
            (
                str(claims[name])
                for name in ("preferred_username", "upn", "email", "unique_name")
                if isinstance(claims.get(name), str) and EMAIL_OR_USER.fullmatch(str(claims[name]))
            ),
            None,
        )
        roles = claims.get("roles")
        granted = frozenset(r for r in roles if isinstance(r, str)) & ROLES if isinstance(roles, list) else frozenset()
        return Caller(f"entra:{principal}", user, granted)
