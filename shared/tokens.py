"""Token lifecycle: the bundle in the secret store, an in-memory cache, single-flight refresh.

ServiceNow returns the same refresh token on refresh and does not extend its life, so the bundle
tracks the refresh token's expiry itself. A write replaces the whole bundle (one Key Vault version).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from shared.problems import NotConfigured, NotConnected, ReauthorizationRequired, ServiceNowUnavailable
from shared.secrets import CLIENT_SECRET, TOKEN_BUNDLE, SecretStore
from shared.servicenow import ServiceNowClient, TokenRequestRefused, TokenResponse

log = logging.getLogger(__name__)

EARLY_REFRESH = timedelta(minutes=5)
RECONNECT_WARNING = timedelta(days=14)
RECONNECT_REMEDIATION = (
    "Open /api/connect and sign in to ServiceNow as the integration user to authorize the connector again."
)


def renewal_time(now: datetime, expires_in: int, *, same_token: bool) -> datetime:
    """Renew 5 minutes early (or at half-life for short lifespans). But ServiceNow answers a refresh made
    while the access token is valid with that same token and its remaining time: then keep it to the end,
    or every call in the last minutes would ask again."""
    lifetime = timedelta(seconds=expires_in)
    if same_token:
        return now + lifetime
    return now + lifetime - min(EARLY_REFRESH, lifetime / 2)


@dataclass(frozen=True)
class TokenBundle:
    access_token: str
    refresh_token: str
    expires_at: datetime
    refresh_expires_at: datetime
    instance: str
    connected_at: datetime
    connected_as: str | None = None
    refresh_rejected_at: datetime | None = None
    renew_after: datetime | None = None  # when to refresh; see `renewal_time`

    def __repr__(self) -> str:  # never print tokens
        return f"TokenBundle(instance={self.instance!r}, expires_at={self.expires_at.isoformat()})"

    def to_json(self) -> str:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> TokenBundle:
        data = json.loads(text)
        for key in ("expires_at", "refresh_expires_at", "connected_at", "refresh_rejected_at", "renew_after"):
            if data.get(key):
                data[key] = datetime.fromisoformat(data[key])
        return cls(**data)

    @classmethod
    def from_response(
        cls,
        response: TokenResponse,
        *,
        now: datetime,
        instance: str,
        refresh_lifespan: int,
        connected_as: str | None = None,
    ) -> TokenBundle:
        if not response.refresh_token:
            raise NotConnected(
                "ServiceNow issued no refresh token.",
                remediation=(
                    "In System OAuth > Application Registry, give the OAuth client a Refresh Token Lifespan "
                    "greater than 0, then connect again."
                ),
            )
        return cls(
            access_token=response.access_token,
            refresh_token=response.refresh_token,
            expires_at=now + timedelta(seconds=response.expires_in),
            renew_after=renewal_time(now, response.expires_in, same_token=False),
            refresh_expires_at=now + timedelta(seconds=refresh_lifespan),
            instance=instance,
            connected_at=now,
            connected_as=connected_as,
        )

    def needs_reauthorization(self, now: datetime) -> bool:
        return self.refresh_rejected_at is not None or now >= self.refresh_expires_at


class TokenManager:
    """Hands out a valid access token. One refresh at a time per process; the cache is trusted until
    5 minutes before expiry; the secret store is re-read before refreshing, since another instance may
    have refreshed already."""

    def __init__(
        self,
        *,
        secrets: SecretStore,
        servicenow: ServiceNowClient,
        client_id: str,
        client_secret: str | None,
        instance: str,
        clock: Callable[[], datetime],
        secret_name: str = CLIENT_SECRET,
        token_name: str = TOKEN_BUNDLE,
    ) -> None:
        self._secret_name = secret_name  # the connection's OAuth client secret in the secret store
        self._token_name = token_name  # and its token bundle
        self._secrets = secrets
        self._servicenow = servicenow
        self._client_id = client_id
        self._client_secret = client_secret
        self._instance = instance
        self._clock = clock
        self._cached: TokenBundle | None = None
        self._lock = threading.Lock()

    # -- the bundle -----------------------------------------------------------------------------

    def client_secret(self) -> str:
        secret = self._client_secret or self._secrets.get(self._secret_name)
        if not secret:
            raise NotConfigured(
                "The ServiceNow client secret is missing.",
                remediation=(
                    f"Store the OAuth client's secret as the secret '{self._secret_name}' in Key Vault "
                    + (
                        "(or set SERVICENOW_CLIENT_SECRET for local runs)."
                        if self._secret_name == CLIENT_SECRET
                        else "(or add the connection again with its clientSecret)."
                    )
                ),
            )
        return secret

    def load(self) -> TokenBundle | None:
        raw = self._secrets.get(self._token_name)
        if not raw:
            return None
        try:
            return TokenBundle.from_json(raw)
        except (ValueError, TypeError, KeyError):
            log.warning("The stored connection bundle is unreadable; treating the connector as not connected")
            return None

    def save(self, bundle: TokenBundle) -> None:
        self._secrets.set(self._token_name, bundle.to_json())
        with self._lock:
            self._cached = bundle

    def forget(self) -> None:
        self._secrets.delete(self._token_name)
        with self._lock:
            self._cached = None

    # -- access tokens --------------------------------------------------------------------------

    def _fresh(self, bundle: TokenBundle | None) -> bool:
        if bundle is None:
            return False
        return self._clock() < (bundle.renew_after or bundle.expires_at - EARLY_REFRESH)

    def access_token(self) -> str:
        cached = self._cached
        if self._fresh(cached) and cached is not None and cached.refresh_rejected_at is None:
            return cached.access_token
        return self._refresh(rejected=None)

    def renew_after_rejection(self, rejected: str) -> str:
        """ServiceNow refused `rejected` before its time: refresh once, unless another thread already did."""
        return self._refresh(rejected=rejected)

    def _usable(self, bundle: TokenBundle, rejected: str | None) -> bool:
        return self._fresh(bundle) and bundle.access_token != rejected and bundle.refresh_rejected_at is None

    def _refresh(self, rejected: str | None) -> str:
        with self._lock:
            if self._cached is not None and self._usable(self._cached, rejected):
                return self._cached.access_token
            bundle = self.load()
            if bundle is None:
                raise NotConnected(
                    "The connector has no ServiceNow tokens yet.",
                    remediation="Open /api/connect and authorize the connector as the integration user.",
                )
            if bundle.instance != self._instance:
                raise ReauthorizationRequired(
                    f"The stored tokens belong to {bundle.instance}, not {self._instance}.",
                    remediation=RECONNECT_REMEDIATION,
                )
            now = self._clock()
            if bundle.needs_reauthorization(now):
                raise ReauthorizationRequired(
                    "ServiceNow's refresh token was rejected or has expired.", remediation=RECONNECT_REMEDIATION
                )
            if self._usable(bundle, rejected):
                self._cached = bundle
                return bundle.access_token
            try:
                response = self._servicenow.refresh(
                    refresh_token=bundle.refresh_token,
                    client_id=self._client_id,
                    client_secret=self.client_secret(),
                )
            except TokenRequestRefused:
                rejected_bundle = replace(bundle, refresh_rejected_at=now)
                self._secrets.set(self._token_name, rejected_bundle.to_json())
                self._cached = rejected_bundle
                log.warning("ServiceNow refused the refresh grant; reauthorization is required")
                raise ReauthorizationRequired(
                    "ServiceNow rejected the refresh token (revoked, expired, or the client secret changed).",
                    remediation=RECONNECT_REMEDIATION,
                ) from None
            except ServiceNowUnavailable:
                if now < bundle.expires_at:  # still valid for a few minutes: use it, refresh next time
                    log.warning("ServiceNow is unavailable for renewal; using current access until it expires")
                    return bundle.access_token
                raise
            refreshed = replace(
                bundle,
                access_token=response.access_token,
                # ServiceNow returns the same refresh token; keep ours when it is omitted.
                refresh_token=response.refresh_token or bundle.refresh_token,
                expires_at=now + timedelta(seconds=response.expires_in),
                renew_after=renewal_time(
                    now, response.expires_in, same_token=response.access_token == bundle.access_token
                ),
            )
            self._secrets.set(self._token_name, refreshed.to_json())
            self._cached = refreshed
            log.info("Renewed ServiceNow access; valid until %s", refreshed.expires_at.isoformat())
            return refreshed.access_token
