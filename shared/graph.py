"""Microsoft Graph: the Secure Score reads and the control-profile update (docs/design.md#secure-score).

httpx with a token from azure-identity (`DefaultAzureCredential`: the user-assigned managed identity in
Azure, `AZURE_CLIENT_ID`) for `{GRAPH_URL}/.default`. Not the msgraph SDK: its model drops the PATCH fields
the connector writes (docs/design.md#microsoft-graph-facts). Only URLs on `GRAPH_URL`'s host are
requested (every `@odata.nextLink` is checked; host names compare case-insensitively), redirects are never
followed, at most 4 requests are in flight (Graph's limit for these resources), every response is read whole
within its deadline, and 429/5xx are retried by the same rules as ServiceNow's.

Graph's security API answers `206 Partial Content` when a provider behind it failed: the body is still data, and
each failed provider is named in a `Warning: 199 - "{vendor}/{provider}/{status}/{ms}"` header
(learn `concepts/security-error-codes`). A read keeps the data and hands the warnings to its caller.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from shared import deadlines
from shared.graph_tokens import GraphTokens, unverified_claims
from shared.problems import ConnectorError, SecureScoreForbidden, SecureScoreUnavailable, TenantNotConsented
from shared.retries import (
    RETRY_STATUSES,
    RetryPolicy,
    TransientFailure,
    capped_retry_after,
    retry_after_seconds,
    with_retries,
)
from shared.text import printable
from shared.tickets import HOME

T = TypeVar("T")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's well-known application id
WRITE_ROLE = "SecurityEvents.ReadWrite.All"
# Application permission SecurityEvents.ReadWrite.All (Microsoft Graph permissions reference).
SECURITY_EVENTS_READWRITE_ALL = "d903a879-88e0-4c09-b0c9-82f6a1333f84"
MAX_CONCURRENT = 4
MAX_PAGES = 200
_CONTROL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # the path segment carries nothing else
_PERMISSION_CODES = frozenset({"authorization_requestdenied", "forbidden", "accessdenied", "unauthorized"})
# `199 - "{vendor}/{provider}/{status}/{latency}"`; one header per failed provider, or several in one.
_WARNING = re.compile(r'199\s+-\s+"([^"/]{0,80})/([^"/]{0,80})/([0-9]{3})/([0-9]{1,9})"')
# What Graph says when a control cannot be written through this API at all (Defender for Endpoint `scid_*`):
# a documented refusal, unlike a 400 with an empty code (microsoft-graph-docs-contrib#7123).
_REFUSALS = ("not supported", "cannot be updated", "can't be updated", "defender portal")


class ControlRefused(ConnectorError):
    """Graph refuses to update this control through this API at all (Defender for Endpoint `scid_*` controls):
    not tried again until the control's note changes."""

    status = 502
    code = "secure_score_control_refused"


class WriteFailed(ConnectorError):
    """A write Graph did not take, for a reason that may pass (a 400 without a clear refusal, a 404): later runs
    try again, a bounded number of times."""

    status = 502
    code = "secure_score_write_failed"


@dataclass
class RequestCount:
    """The Graph requests one piece of work really made (retries included), for its result."""

    value: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self) -> None:
        with self._lock:
            self.value += 1


@dataclass(frozen=True)
class ProviderWarning:
    """One provider behind the security API that failed while the others answered (a 206's `Warning`)."""

    vendor: str
    provider: str
    status: int
    latency_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "provider": self.provider, "status": self.status, "latencyMs": self.latency_ms}


@dataclass
class Listing:
    """What a read returned: the items, how many pages it took, and the providers that failed meanwhile."""

    items: list[dict[str, Any]]
    pages: int = 0
    warnings: list[ProviderWarning] = field(default_factory=list)


def provider_warnings(response: httpx.Response) -> list[ProviderWarning]:
    found = []
    for value in response.headers.get_list("Warning"):
        for vendor, provider, status, latency in _WARNING.findall(value[:2000]):
            found.append(ProviderWarning(printable(vendor, 80), printable(provider, 80), int(status), int(latency)))
    return found


def grant_command(client_id: str | None, graph_url: str) -> str:
    """The Azure CLI a directory admin runs to give the managed identity SecurityEvents.ReadWrite.All."""
    identity = client_id or "<the function app's managed identity client id (AZURE_CLIENT_ID)>"
    return (
        f"mi=$(az ad sp show --id {identity} --query id -o tsv); "
        f"graph=$(az ad sp show --id {GRAPH_APP_ID} --query id -o tsv); "
        f"az rest --method POST --uri {graph_url}/v1.0/servicePrincipals/$mi/appRoleAssignments "
        f'--body "{{\\"principalId\\":\\"$mi\\",\\"resourceId\\":\\"$graph\\",'
        f'\\"appRoleId\\":\\"{SECURITY_EVENTS_READWRITE_ALL}\\"}}"'
    )


def grant_remediation(client_id: str | None, graph_url: str) -> str:
    return (
        "A directory admin (Privileged Role Administrator) grants the function app's managed identity the "
        f"Microsoft Graph application permission SecurityEvents.ReadWrite.All: {grant_command(client_id, graph_url)} "
        "(or, with azd, `azd env set GRANT_GRAPH_PERMISSION true` and `azd hooks run postprovision`). Managed "
        "identity tokens are cached for up to 24 hours, so the grant can take hours to apply."
    )


def graph_error(response: httpx.Response) -> tuple[str, str]:
    """Graph's `{"error": {"code", "message"}}`, tolerant of anything else."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return printable(str(error.get("code") or ""), 100), printable(str(error.get("message") or ""), 500)


class GraphClient:
    """One httpx client per process; per tenant, a semaphore keeps at most `MAX_CONCURRENT` requests in flight
    (Graph's limit for these resources is per app per tenant)."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
        credential: Any = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        reader_app_id: str | None = None,
        authority: str = "https://login.microsoftonline.com",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._origin = (parts.scheme.lower(), parts.netloc.lower())
        self._client_id = client_id
        self._tokens = GraphTokens(self.base_url, client_id=client_id, reader_app_id=reader_app_id,
                                   authority=authority, credential=credential)  # fmt: skip
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._slots: dict[str, threading.BoundedSemaphore] = {}  # per tenant: Graph's limit is per app per tenant
        self._slots_lock = threading.Lock()
        self._http = httpx.Client(
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "m365-servicenow-connector"},
        )

    def close(self) -> None:
        self._http.close()

    # -- tokens ---------------------------------------------------------------------------------

    def _token(self, tenant: str = HOME) -> str:
        return self._tokens.token(tenant, deadlines.budget(self.retry.deadline))

    def prepare_token(self, tenant: str = HOME) -> None:
        """Ask for `tenant`'s token before its reads need it. A failure is left to the tenant's own first read, which
        asks again and reports it where the tenant's result shows it."""
        with contextlib.suppress(Exception):
            self._token(tenant)

    def _tenant_slots(self, tenant: str) -> threading.BoundedSemaphore:
        with self._slots_lock:
            return self._slots.setdefault(tenant, threading.BoundedSemaphore(MAX_CONCURRENT))

    def token_claims(self, tenant: str = HOME) -> dict[str, Any] | None:
        """The current Graph token's claims, read without verifying it (the connector's own token, fresh from
        Entra ID): only hints. None when the token is not a JWT the connector can read."""
        return unverified_claims(self._token(tenant))

    def token_roles(self, tenant: str = HOME) -> frozenset[str] | None:
        """The app roles the current Graph token carries (`roles`): a hint of when writing may be tried again."""
        payload = self.token_claims(tenant)
        if payload is None:
            return None
        roles = payload.get("roles")
        return frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()

    # -- requests -------------------------------------------------------------------------------

    def _on_graph(self, url: str) -> bool:
        """The URL is on GRAPH_URL's scheme and host (compared case-insensitively, as DNS names are)."""
        parts = urlsplit(url)
        return (parts.scheme.lower(), parts.netloc.lower()) == self._origin and parts.path.startswith("/v1.0/")

    def _send(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        count: RequestCount | None,
        tenant: str,
    ) -> httpx.Response:
        if not self._on_graph(url):
            raise SecureScoreUnavailable(f"Graph answered with a link outside {self.base_url}; it was not followed.")
        sent = {"Authorization": f"Bearer {self._token(tenant)}", **headers}
        with self._tenant_slots(tenant):
            if count is not None:
                count.add()
            request = self._http.build_request(method, url, json=body, headers=sent)
            try:
                response = deadlines.send(self._http, request, deadlines.budget(self.retry.deadline))
            except httpx.TimeoutException as exc:
                raise TransientFailure("timed out", None) from exc
            except httpx.TransportError as exc:
                raise TransientFailure(f"connection failed ({type(exc).__name__})", None) from exc
        if response.status_code in RETRY_STATUSES:
            raise TransientFailure(f"HTTP {response.status_code}", retry_after_seconds(response), response)
        return response

    def retried(self, attempt: Callable[[], T]) -> T:
        """Run `attempt` (requests made with `retry=False`) under the retry policy, as one unit: a write that must
        read before each try retries both. Giving up is `SecureScoreUnavailable`."""
        try:
            return with_retries(attempt, self.retry, self._sleep)
        except TransientFailure as exc:
            code, message = graph_error(exc.response) if exc.response is not None else ("", "")
            raise SecureScoreUnavailable(
                f"Microsoft Graph is unavailable: {exc.reason}" + (f" ({code}: {message})" if code else ""),
                retry_after=capped_retry_after(exc.retry_after, 60),
                remediation="Nothing to fix in the connector: it retries on its next run. Graph's status: "
                "https://status.cloud.microsoft.",
            ) from None

    def _call(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        count: RequestCount | None = None,
        tenant: str = HOME,
        retry: bool = True,
    ) -> httpx.Response:
        """One request; with `retry=False` a transient failure is raised as `TransientFailure` for `retried`."""

        def send() -> httpx.Response:
            return self._send(method, url, body, headers or {}, count, tenant)

        response = self.retried(send) if retry else send()
        if response.status_code in (401, 403):
            self._tokens.forget(tenant)  # refused: the next read asks for a new token (consent may apply meanwhile)
        if response.status_code == 401:
            code, message = graph_error(response)
            raise SecureScoreUnavailable(
                f"Microsoft Graph did not accept the connector's token ({code}: {message}).",
                retry_after=300,
                remediation=f"Check that GRAPH_URL ({self.base_url}) is the Graph of the managed identity's cloud and "
                "that AZURE_CLIENT_ID names the function app's user-assigned identity.",
            )
        if response.status_code == 403:
            code, message = graph_error(response)
            if tenant:  # the reader app's grant in that tenant is gone (consent withdrawn, permission removed)
                raise TenantNotConsented(
                    f"Tenant {tenant} refused the connector's reader app ({code}: {message}).",
                    remediation="A Global Administrator or Privileged Role Administrator of that tenant opens its "
                    "consent link again (the tenant's row on the page) and accepts.",
                )
            if code.lower() in _PERMISSION_CODES or method == "GET":
                raise SecureScoreForbidden(
                    f"Microsoft Graph refused the connector ({response.status_code} {code}: {message}).",
                    remediation=grant_remediation(self._client_id, self.base_url),
                )
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code not in (200, 206):
            code, message = graph_error(response)
            raise SecureScoreUnavailable(
                f"Microsoft Graph answered {response.status_code} {code}: {message}".rstrip(": "),
                retry_after=60,
                remediation=f"Check that GRAPH_URL ({self.base_url}) is Microsoft Graph's base URL for your cloud.",
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("value", []), list):
            raise SecureScoreUnavailable("Microsoft Graph answered without the expected JSON.", retry_after=60)
        return body

    def forbidden_provider(self, warning: ProviderWarning) -> SecureScoreForbidden:
        """A provider that failed with 403 inside a 206: the connector may not read that provider's data."""
        return SecureScoreForbidden(
            f"Microsoft Graph answered without the data of the provider {warning.vendor}/{warning.provider}, "
            f"which refused the connector (403); the other providers' data was kept.",
            remediation=grant_remediation(self._client_id, self.base_url),
        )

    # -- Secure Score ---------------------------------------------------------------------------

    def secure_scores(self, top: int, *, count: RequestCount | None = None, tenant: str = HOME) -> Listing:
        """The newest `top` daily snapshots, newest first. Graph adds an `@odata.nextLink` even to `$top=1`:
        it is ignored (docs/design.md#secure-score)."""
        url = f"{self.base_url}/v1.0/security/secureScores?$top={int(top)}"
        response = self._call("GET", url, count=count, tenant=tenant)
        body = self._json(response)
        return Listing(_values(body), 1, provider_warnings(response))

    def control_profiles(self, *, count: RequestCount | None = None, tenant: str = HOME) -> Listing:
        """Every control profile, following each `@odata.nextLink`."""
        url: str | None = f"{self.base_url}/v1.0/security/secureScoreControlProfiles"
        listing = Listing([])
        while url is not None:
            if listing.pages >= MAX_PAGES:
                raise SecureScoreUnavailable(f"Graph kept paging past {MAX_PAGES} pages; the listing was stopped.")
            deadlines.check_run()
            response = self._call("GET", url, count=count, tenant=tenant)
            body = self._json(response)
            listing.pages += 1
            listing.warnings.extend(provider_warnings(response))
            listing.items.extend(_values(body))
            link = body.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
        return listing

    def _control_url(self, control_id: str) -> str:
        """The profile's URL; the id is checked so the path segment carries nothing else."""
        if not _CONTROL_ID.fullmatch(control_id) or set(control_id) == {"."}:
            raise ControlRefused(f"'{printable(control_id, 64)}' is not a control id the connector can address.")
        return f"{self.base_url}/v1.0/security/secureScoreControlProfiles/{control_id}"

    def control_profile(
        self, control_id: str, *, count: RequestCount | None = None, tenant: str = HOME, retry: bool = True
    ) -> dict[str, Any]:
        """One control profile as Graph holds it now (a point read; the refresh lists them all instead)."""
        response = self._call("GET", self._control_url(control_id), count=count, tenant=tenant, retry=retry)
        if response.status_code == 404:
            code, message = graph_error(response)
            raise WriteFailed(f"Graph has no control {control_id} now ({code}: {message}).".replace(" (: )", ""))
        return self._json(response)

    def update_control(
        self, control_id: str, body: dict[str, Any], *, count: RequestCount | None = None, tenant: str = HOME,
        retry: bool = True,
    ) -> None:  # fmt: skip
        """PATCH one control profile (204). Each PATCH adds an entry to the control's history, so the same body
        twice is the same note twice: retry only after reading that it did not land (`retry=False` and `retried`).
        A documented refusal is `ControlRefused`; a 403 is `SecureScoreForbidden`; anything else that failed is
        `WriteFailed` or `SecureScoreUnavailable`, which later runs try again."""
        response = self._call("PATCH", self._control_url(control_id), body, count=count, tenant=tenant, retry=retry)
        if response.status_code in (200, 204):
            return
        code, message = graph_error(response)
        said = f"{code}: {message}".strip(": ")
        if response.status_code == 403:
            raise SecureScoreForbidden(
                f"Microsoft Graph refused to update control {control_id} (403 {said}).",
                remediation=grant_remediation(self._client_id, self.base_url),
            )
        if response.status_code == 400 and (
            control_id.startswith("scid_") or any(marker in message.lower() for marker in _REFUSALS)
        ):
            raise ControlRefused(f"Graph refused to update control {control_id}: {said}")
        raise WriteFailed(f"Graph did not take the update of control {control_id} ({response.status_code} {said}).")


def _values(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A collection's `value` members that are objects; a `value` that is not a list holds none (an empty listing,
    which the refresh never takes in place of a stored snapshot)."""
    value = body.get("value")
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
