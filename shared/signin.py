"""Who is calling (docs/design.md#portal-and-sign-in): a client's Entra bearer token, or App Service Authentication's
principal.

The principal header (`X-MS-CLIENT-PRINCIPAL`) names the caller only when something trustworthy put it there:

- in Azure with the platform's sign-in on (`WEBSITE_AUTH_ENABLED=True`): App Service Authentication strips these
  headers from outside requests and sets them itself, so the principal is enough. An ID token, present only where
  its token store works, is validated and must name the same object id; its absence is not an error.
- anywhere, the local host's emulation of App Service Authentication (dev/host/easyauth.py): outside Azure nothing
  strips a client's header, so the emulation vouches for the principal it set with `LOCAL_PROOF_HEADER`.

The proof cannot be forged by a remote caller: its value is 256 random bits minted in this process on first use
(`local_host_proof`), held only in memory, never logged, never in a response, never sent anywhere. The emulation
runs in the same process as the app (the local host calls the functions directly), so the value reaches the app
without ever leaving the process; the emulation strips any copy a client sends, and without the emulation no copy
exists to guess (nothing is minted until the emulation asks, and a guess is compared in constant time).
Any other principal header is ignored, as if the request carried none.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Mapping

from shared.auth import ID_TOKEN_HEADER, LOCAL_CALLER, PRINCIPAL_HEADER, Caller, EntraAuthenticator, parse_principal
from shared.config import Settings
from shared.edge import header
from shared.problems import NotConfigured, Unauthorized

log = logging.getLogger(__name__)

LOCAL_PROOF_HEADER = "X-Connector-Local-Sign-In"  # set only by the local host's emulation, with the proof
_proof: str | None = None
_proof_lock = threading.Lock()


def local_host_proof() -> str:
    """This process's proof that a principal header came from the local host's emulation (dev/host/easyauth.py)."""
    global _proof
    with _proof_lock:
        if _proof is None:
            _proof = secrets.token_urlsafe(32)
        return _proof


def _set_by_local_host(headers: Mapping[str, str]) -> bool:
    presented = header(headers, LOCAL_PROOF_HEADER)
    expected = _proof
    if not presented or expected is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode("ascii"))


def identify(settings: Settings, entra: EntraAuthenticator | None, headers: Mapping[str, str]) -> Caller:
    """The caller, or `unauthorized` / `not_configured`. In Azure with no sign-in configured nothing is open;
    outside Azure with none, the caller is a local user with every role."""
    bearer = (header(headers, "Authorization") or "").lower().startswith("bearer ")
    if bearer and entra is not None:
        return entra.authenticate(headers)
    principal = header(headers, PRINCIPAL_HEADER)
    if principal:
        if (settings.in_azure and settings.app_service_auth) or _set_by_local_host(headers):
            return _signed_in(principal, headers, entra)
        log.warning("A principal header that neither the platform nor the local host set was ignored")
    if settings.app_service_auth:
        raise Unauthorized("Sign in first: this request carries no signed-in user.")
    if entra is not None:
        raise Unauthorized("An Entra ID bearer token is required (Authorization: Bearer <token>).")
    if settings.in_azure:
        raise NotConfigured(
            "Sign-in is not configured, so the connector refuses every request.",
            remediation="Deploy with App Service Authentication (the Bicep sets it up) or set ENTRA_TENANT_ID "
            "and ENTRA_AUDIENCE; see the admin guide.",
        )
    return LOCAL_CALLER


def _signed_in(principal: str, headers: Mapping[str, str], entra: EntraAuthenticator | None) -> Caller:
    object_id, user, roles = parse_principal(principal)
    if not object_id and not user:
        raise Unauthorized("The sign-in principal names no user.")
    token = header(headers, ID_TOKEN_HEADER)
    if not token:  # the token store is off (the Bicep leaves it off): the principal is enough
        return Caller(f"entra:{object_id}" if object_id else f"user:{user}", user, roles)
    if entra is None:
        raise NotConfigured(
            "App Service Authentication passed an ID token, but ENTRA_TENANT_ID and ENTRA_AUDIENCE are not set, so "
            "the connector cannot check it.",
            remediation="Set ENTRA_TENANT_ID and ENTRA_AUDIENCE (the deployment does) and restart the app.",
        )
    validated = entra.validate(token)
    if not object_id or validated.principal != f"entra:{object_id}":
        raise Unauthorized("The sign-in's principal and its ID token name different users.")
    return Caller(validated.principal, validated.user or user, validated.roles)
