"""OAuth `state` and PKCE values the connector mints itself (caller identity joins this module later)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping

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
