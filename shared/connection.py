"""Connecting to ServiceNow: the authorization-code flow with PKCE, and disconnecting.

A denied consent, a missing, unknown, expired or replayed `state`, or a failed exchange never stores
anything and never reaches the token endpoint more than the one exchange the flow allows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from shared.auth import code_challenge, initiating_principal, new_code_verifier, new_state
from shared.problems import ConnectorError, NotConfigured, ServiceNowUnavailable
from shared.servicenow import TokenRequestRefused
from shared.services import Services
from shared.store import OAuthState
from shared.tokens import TokenBundle

log = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
_MAX_PARAM = 2048


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


class _StaticToken:
    """The just-issued access token, for the one identity lookup after the exchange."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token

    def renew_after_rejection(self, rejected: str) -> str:
        return self._token


def start_connect(services: Services, headers: Mapping[str, str]) -> str:
    """Mint a state and a PKCE pair, store them, and return ServiceNow's authorize URL."""
    services.require_configured()
    settings = services.settings
    if settings.redirect_uri is None:
        raise NotConfigured("OAUTH_REDIRECT_URI is not set.", remediation="Set it to the callback URL.")
    services.tokens.client_secret()  # fail here, not after the admin has pressed Allow
    assert settings.client_id is not None and settings.instance_url is not None
    now = services.clock()
    services.store.purge_oauth_states(now)
    verifier = new_code_verifier()
    state = OAuthState(
        state=new_state(),
        code_verifier=verifier,
        instance_url=settings.instance_url,
        redirect_uri=settings.redirect_uri,
        started_by=initiating_principal(headers),
        created_at=now,
        expires_at=now + STATE_LIFETIME,
    )
    services.store.add_oauth_state(state)
    log.info("Authorization started by %s for %s", state.started_by, settings.instance_url)
    return services.servicenow.authorize_url(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": settings.redirect_uri,
            "state": state.state,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )


_DENIED_ADVICE = (
    "Open /api/connect again, make sure you are signed in to ServiceNow as the integration user "
    "(use the 'Not you?' link on ServiceNow's sign-in or consent page if you are signed in as yourself; "
    "with single sign-on, sign in through login.do as the integration user), then press Allow."
)


def finish_callback(services: Services, params: Mapping[str, str]) -> CallbackOutcome:
    state_value = params.get("state", "")
    error = params.get("error", "")
    if any(len(v) > _MAX_PARAM for v in params.values()):
        return CallbackOutcome(False, 400, "Connection failed", "The callback carried an oversized parameter.")
    pending = services.store.take_oauth_state(state_value) if state_value else None
    if error:
        description = params.get("error_description", "")
        reason = "You (or ServiceNow) declined the authorization." if error == "access_denied" else ""
        log.info("Authorization ended with error %r from ServiceNow", error[:64])
        return CallbackOutcome(
            False,
            400,
            "Connection not authorized",
            f"ServiceNow answered '{error}'" + (f": {description}" if description else ".") + f" {reason}".rstrip(),
            _DENIED_ADVICE,
        )
    if not state_value:
        return CallbackOutcome(
            False, 400, "Connection failed", "The callback has no 'state' parameter.", "Start again at /api/connect."
        )
    if pending is None:
        return CallbackOutcome(
            False,
            400,
            "Connection failed",
            "This authorization is unknown or was already used.",
            "Start again at /api/connect; each authorization link works once.",
        )
    now = services.clock()
    if now >= pending.expires_at:
        return CallbackOutcome(
            False,
            400,
            "Connection failed",
            "This authorization expired (it is valid for 10 minutes).",
            "Start again at /api/connect.",
        )
    code = params.get("code", "")
    if not code:
        return CallbackOutcome(False, 400, "Connection failed", "ServiceNow sent no authorization code.")
    settings = services.settings
    if pending.instance_url != settings.instance_url or pending.redirect_uri != settings.redirect_uri:
        return CallbackOutcome(
            False,
            400,
            "Connection failed",
            "The connector's settings changed while this authorization was under way.",
            "Start again at /api/connect.",
        )
    try:
        services.require_configured()
        assert settings.client_id is not None and settings.instance_url is not None
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
        return CallbackOutcome(
            False,
            502,
            "Connection failed",
            "ServiceNow refused to exchange the authorization code for tokens.",
            "Check in System OAuth > Application Registry that the client secret matches the one the connector "
            f"holds and that the Redirect URL is exactly {pending.redirect_uri}; then start again at /api/connect.",
        )
    except ServiceNowUnavailable as exc:
        return CallbackOutcome(False, 503, "Connection failed", exc.detail, exc.remediation or "Try again later.")
    except ConnectorError as exc:
        return CallbackOutcome(False, exc.status, "Connection failed", exc.detail, exc.remediation or "")
    log.info("Connected to %s as %s", settings.instance_url, user or "an unidentified user")
    return CallbackOutcome(
        True,
        200,
        "Connected to ServiceNow",
        "The connector can now create and track tickets.",
        "Check health at /api/provisioning?live=true. If this is not the integration user, disconnect and "
        "connect again signed in as that user.",
        instance=settings.instance_url,
        user=user,
    )


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


def disconnect(services: Services, *, force: bool) -> None:
    """Revoke both tokens at ServiceNow, then forget them. Without `force`, a failed revocation keeps
    them (so the admin can retry); with it, they are forgotten anyway."""
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
    log.info("Disconnected from %s", bundle.instance)
