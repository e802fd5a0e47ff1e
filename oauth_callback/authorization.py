"""Connecting to ServiceNow: the authorization-code flow with PKCE, and disconnecting.

A denied consent, a missing, unknown, expired or replayed `state`, or a failed exchange never stores
anything and never reaches the token endpoint more than the one exchange the flow allows.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import urlsplit

from shared.auth import Caller, code_challenge, new_code_verifier, new_state
from shared.connections import DEFAULT, connection_id
from shared.problems import ConnectorError, NotConfigured, ServiceNowUnavailable
from shared.servicenow import TokenRequestRefused
from shared.services import Services
from shared.store import OAuthState
from shared.tokens import TokenBundle

log = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)


@dataclass(frozen=True)
class CallbackOutcome:
    """What the callback page tells the person in the browser."""

    ok: bool
    status: int
    title: str
    message: str
    advice: str = ""
    instance: str | None = None
    user: str | None = None
    consumed: bool = False  # this browser's flow was found and used up: its cookie has done its work


class _StaticToken:
    """The just-issued access token, for the one identity lookup after the exchange."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token

    def renew_after_rejection(self, rejected: str) -> str:
        return self._token


@dataclass(frozen=True)
class ConnectStart:
    """Where to send the browser, and the cookie that binds the flow to it."""

    location: str
    cookie: str


STATE_COOKIE = "m365_connector_oauth"
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{43,64}$")


def _state_cookie(redirect_uri: str, value: str, max_age: int) -> str:
    """HttpOnly, SameSite=Lax (ServiceNow's redirect back is a top-level GET, so the cookie comes along),
    Secure except on loopback http, and sent only to the callback's path."""
    parts = urlsplit(redirect_uri)
    secure = "" if parts.scheme == "http" else "; Secure"
    return f"{STATE_COOKIE}={value}; Path={parts.path or '/'}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"


def clear_state_cookie(redirect_uri: str | None) -> str:
    return _state_cookie(redirect_uri or "https://localhost/", "", 0)


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    """One cookie's value from a `Cookie` header; only a well-formed nonce counts."""
    for part in (cookie_header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and _COOKIE_VALUE.fullmatch(value):
            return value
    return None


def _browser_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


def _flow_key(state: str, nonce: str) -> str:
    """Where a flow is stored: its `state` bound to the starting browser's nonce. A callback without that browser's
    cookie cannot even find the flow, so a callback from another browser never uses up the real admin's `state`."""
    return hashlib.sha256(f"{state}\n{nonce}".encode("utf-8", "surrogatepass")).hexdigest()


def start_connect(services: Services, caller: Caller, connection_id: str = DEFAULT) -> ConnectStart:
    """Mint a state, a PKCE pair and a browser nonce, store them, and return ServiceNow's authorize URL
    with the cookie that binds the flow to this browser (RFC 9700 section 4.7). The one callback serves every
    connection: the stored flow names the one it authorizes."""
    services = services.for_connection(services.connection_named(connection_id))
    services.require_configured()
    settings = services.settings
    if settings.redirect_uri is None:
        raise NotConfigured("OAUTH_REDIRECT_URI is not set.", remediation="Set it to the callback URL.")
    services.tokens.client_secret()  # fail here, not after the admin has pressed Allow
    assert settings.client_id is not None and settings.instance_url is not None
    now = services.clock()
    services.store.purge_oauth_states(now)
    verifier = new_code_verifier()
    nonce = new_state()
    state_value = new_state()
    state = OAuthState(
        state=_flow_key(state_value, nonce),
        code_verifier=verifier,
        instance_url=settings.instance_url,
        redirect_uri=settings.redirect_uri,
        started_by=caller.user or caller.principal,
        created_at=now,
        expires_at=now + STATE_LIFETIME,
        browser_hash=_browser_hash(nonce),
        connection=services.connection.key,
    )
    services.store.add_oauth_state(state)
    log.info("Authorization started by %s for %s", state.started_by, settings.instance_url)
    location = services.servicenow.authorize_url(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": settings.redirect_uri,
            "state": state_value,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return ConnectStart(location, _state_cookie(settings.redirect_uri, nonce, int(STATE_LIFETIME.total_seconds())))


_DENIED_ADVICE = (
    "Open /api/connect again, make sure you are signed in to ServiceNow as the integration user "
    "(use the 'Not you?' link on ServiceNow's sign-in or consent page if you are signed in as yourself; "
    "with single sign-on, sign in through login.do as the integration user), then press Allow."
)
_START_AGAIN = "Start again at /api/connect, in the same browser, and finish within 10 minutes."
# RFC 6749 section 4.1.2.1: the only error codes the page names, each in the connector's own words.
_OAUTH_ERRORS = {
    "access_denied": "ServiceNow reports that the authorization was declined.",
    "invalid_request": "ServiceNow refused the authorization request as malformed.",
    "unauthorized_client": "ServiceNow does not allow this OAuth client to use the authorization code flow.",
    "unsupported_response_type": "ServiceNow does not allow this OAuth client to use the authorization code flow.",
    "invalid_scope": "ServiceNow refused the requested scope.",
    "server_error": "ServiceNow failed while authorizing.",
    "temporarily_unavailable": "ServiceNow could not authorize right now.",
}


def _failed(message: str, advice: str = _START_AGAIN, status: int = 400) -> CallbackOutcome:
    return CallbackOutcome(False, status, "Connection failed", message, advice)


def finish_callback(services: Services, params: Mapping[str, str], cookie_header: str | None) -> CallbackOutcome:
    """Every page this returns says only the connector's own words: nothing from the query is shown."""
    state_value = params.get("state", "")
    error = params.get("error", "")
    nonce = cookie_value(cookie_header, STATE_COOKIE)
    # Only this browser's own flow can be found (and so used up): the key needs the state and its cookie.
    pending = services.store.take_oauth_state(_flow_key(state_value, nonce)) if state_value and nonce else None
    if error:
        log.info("Authorization ended with an error from ServiceNow (%s)", error if error in _OAUTH_ERRORS else "?")
        return CallbackOutcome(
            False,
            400,
            "Connection not authorized",
            _OAUTH_ERRORS.get(error, "ServiceNow did not authorize the connector."),
            _DENIED_ADVICE,
            consumed=pending is not None,
        )
    if not state_value:
        return _failed("The callback has no 'state' parameter.")
    if nonce is None:
        log.warning("An authorization callback arrived without the cookie of the browser that started it")
        return _failed(
            "This browser has no authorization under way: it was started in another browser (or its cookie was "
            "blocked), or it was already used; each authorization link works once, in the browser that started it."
        )
    if pending is None or not hmac.compare_digest(_browser_hash(nonce), pending.browser_hash):
        log.warning("An authorization callback matched no flow this browser started")
        return _failed(
            "This authorization is unknown, was already used, or was started in another browser; each "
            "authorization link works once, in the browser that started it."
        )
    return replace(_exchange(services, params, pending), consumed=True)


def _exchange(services: Services, params: Mapping[str, str], pending: OAuthState) -> CallbackOutcome:
    now = services.clock()
    if now >= pending.expires_at:
        return _failed("This authorization expired (it is valid for 10 minutes).")
    code = params.get("code", "")
    if not code:
        return _failed("ServiceNow sent no authorization code.")
    try:
        services = services.for_connection(services.connection_named(connection_id(pending.connection)))
    except ConnectorError:
        return _failed("The ServiceNow connection this authorization was for has been removed meanwhile.")
    settings = services.settings
    if pending.instance_url != settings.instance_url or pending.redirect_uri != settings.redirect_uri:
        return _failed("The connector's settings changed while this authorization was under way.")
    try:
        services.require_configured()
        assert settings.client_id is not None and settings.instance_url is not None
        previous = services.tokens.load()
        response = services.servicenow.exchange_code(
            code=code,
            redirect_uri=pending.redirect_uri,
            client_id=settings.client_id,
            client_secret=services.tokens.client_secret(),
            code_verifier=pending.code_verifier,
        )
        user = _whoami(services, response.access_token)
        bundle = TokenBundle.from_response(
            response,
            now=now,
            instance=settings.instance_url,
            refresh_lifespan=settings.refresh_token_lifespan,
            connected_as=user,
        )
        services.tokens.save(bundle)
    except TokenRequestRefused:
        return _failed(
            "ServiceNow refused to exchange the authorization code for tokens.",
            "Check in System OAuth > Application Registry that the client secret matches the one the connector "
            f"holds and that the Redirect URL is exactly {pending.redirect_uri}; then start again at /api/connect.",
            502,
        )
    except ServiceNowUnavailable as exc:
        return _failed(exc.detail, exc.remediation or "Try again later.", 503)
    except ConnectorError as exc:
        return _failed(exc.detail, exc.remediation or "", exc.status)
    log.info("Connected to %s as %s", settings.instance_url, user or "an unidentified user")
    advice = (
        "Check health at /api/provisioning?live=true. If this is not the integration user, disconnect and "
        "connect again signed in as that user."
    )
    if previous is not None and not _revoke_replaced(services, previous, bundle):
        advice += (
            " The tokens of the previous connection could not be revoked at ServiceNow: revoke them in "
            "System OAuth > Manage Tokens."
        )
    return CallbackOutcome(
        True,
        200,
        "Connected to ServiceNow",
        "The connector can now create and track tickets.",
        advice,
        instance=settings.instance_url,
        user=user,
    )


def _revoke_replaced(services: Services, old: TokenBundle, new: TokenBundle) -> bool:
    """After the new tokens are stored: revoke the ones they replace, but never a token ServiceNow handed
    back again (a new grant can return the current refresh token). False when revocation failed."""
    if old.instance != services.settings.instance_url:
        log.warning("The replaced tokens belong to %s, which the connector no longer talks to", old.instance)
        return False
    try:
        if old.refresh_token != new.refresh_token:
            services.servicenow.revoke(old.refresh_token)
        if old.access_token != new.access_token:
            services.servicenow.revoke(old.access_token)
    except ConnectorError as exc:
        log.warning("The replaced tokens could not be revoked (%s)", exc.code)
        return False
    return True


def _whoami(services: Services, access_token: str) -> str | None:
    """The user the tokens act as. The query is the connector's own constant, never caller text."""
    try:
        rows, _ = services.servicenow.table_list(
            _StaticToken(access_token),
            "sys_user",
            {
                "sysparm_query": "sys_id=javascript:gs.getUserID()",
                "sysparm_fields": "user_name,name,email",
                "sysparm_limit": "1",
            },
        )
    except ConnectorError as exc:
        log.warning("Connected, but the integration user could not be identified (%s)", exc.code)
        return None
    if not rows:
        return None
    row = rows[0]
    return str(row.get("user_name") or row.get("email") or row.get("name") or "") or None


def disconnect(services: Services, *, force: bool, connection: str = DEFAULT) -> None:
    """Revoke both tokens at ServiceNow, then forget them. Without `force`, a failed revocation keeps
    them (so the admin can retry); with it, they are forgotten anyway."""
    services = services.for_connection(services.connection_named(connection))
    services.require_configured()
    tokens = services.tokens
    bundle = tokens.load()
    if bundle is None:
        return
    try:
        if bundle.instance == services.settings.instance_url:
            services.servicenow.revoke(bundle.refresh_token)
            services.servicenow.revoke(bundle.access_token)
    except ConnectorError:
        if not force:
            raise
        log.warning("Revocation at ServiceNow failed; forgetting the connection anyway (force)")
    tokens.forget()
    log.info("Disconnected from %s (connection %s)", bundle.instance, services.connection.id)
