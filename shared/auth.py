"""Identity: the OAuth `state` and PKCE values the connector mints, and who is calling the API."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.problems import Unauthorized

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


def initiating_principal(headers: Mapping[str, str]) -> str:
    """Who started a flow, for the audit trail: App Service Authentication's principal when present
    (external requests cannot set that header in Azure), else the function key's holder."""
    name = headers.get("x-ms-client-principal-name") or ""
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "function-key"


@dataclass(frozen=True)
class Caller:
    """Who is calling: `principal` scopes Idempotency-Keys; `user` is the initiating user, if known."""

    principal: str
    user: str | None = None


FUNCTION_KEY_CALLER = Caller("function-key")


class EntraAuthenticator:
    """Validates Entra ID access tokens: signature (keys fetched once and cached), expiry, issuer, audience."""

    def __init__(self, tenant_id: str, audience: str, authority: str) -> None:
        self.tenant_id = tenant_id
        self.audience = audience
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
        import jwt

        value = headers.get("authorization") or headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("An Entra ID bearer token is required (Authorization: Bearer <token>).")
        try:
            key = self._signing_keys().get_signing_key_from_jwt(token.strip())
            claims: dict[str, Any] = jwt.decode(
                token.strip(),
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuers,
                leeway=60,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError:
            log.warning("Entra ID signing keys could not be fetched from %s", self.jwks_url)
            raise Unauthorized("The token's signing keys could not be fetched; try again later.") from None
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
        return Caller(f"entra:{principal}", user)
