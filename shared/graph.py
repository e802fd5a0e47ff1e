"""Microsoft Graph: the Secure Score reads and the control-profile update (DESIGN section 9).

httpx with a token from azure-identity (`DefaultAzureCredential`: the user-assigned managed identity in
Azure, `AZURE_CLIENT_ID`) for `{GRAPH_URL}/.default`. Not the msgraph SDK: its model drops the PATCH fields
the connector writes (reference/microsoft-graph-secure-score.md). Only URLs on `GRAPH_URL`'s host are
requested (every `@odata.nextLink` is checked), redirects are never followed, at most 4 requests are in
flight (Graph's limit for these resources), and 429/5xx are retried by the same rules as ServiceNow's.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.problems import ConnectorError, SecureScoreForbidden, SecureScoreUnavailable
from shared.retries import RETRY_STATUSES, RetryPolicy, TransientFailure, retry_after_seconds, with_retries
from shared.text import printable

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's well-known application id
# Application permission SecurityEvents.ReadWrite.All (Microsoft Graph permissions reference).
SECURITY_EVENTS_READWRITE_ALL = "d903a879-88e0-4c09-b0c9-82f6a1333f84"
MAX_CONCURRENT = 4
MAX_PAGES = 200
_CONTROL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # the path segment carries nothing else
_PERMISSION_CODES = frozenset({"authorization_requestdenied", "forbidden", "accessdenied", "unauthorized"})


class ControlRefused(ConnectorError):
    """Graph refused to update this control (Defender for Endpoint `scid_*` controls do): not retried."""

    status = 502
    code = "secure_score_control_refused"


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
        "(or set the deployment parameter grantGraphPermission). Managed identity tokens are cached for up to "
        "24 hours, so the grant can take hours to apply."
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
    """One httpx client per process; a semaphore keeps at most `MAX_CONCURRENT` requests in flight."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
        credential: Any = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._host = urlsplit(self.base_url).netloc
        self._client_id = client_id
        self._credential = credential
        self._credential_lock = threading.Lock()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self._sent = threading.local()  # requests this thread put on the wire (retries too): requests_sent()
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(30.0, connect=5.0),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "m365-servicenow-connector"},
        )

    def close(self) -> None:
        self._http.close()

    def requests_sent(self) -> int:
        """How many requests the calling thread has sent to Graph, counted as they go out (a run that fails
        halfway reports the requests it really made)."""
        return int(getattr(self._sent, "count", 0))

    # -- tokens ---------------------------------------------------------------------------------

    def _token(self) -> str:
        with self._credential_lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential  # lazy: only Graph work pays for it

                self._credential = DefaultAzureCredential(managed_identity_client_id=self._client_id)
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self._credential.get_token(f"{self.base_url}/.default").token)
        except ClientAuthenticationError as exc:
            raise SecureScoreUnavailable(
                f"No token for Microsoft Graph could be obtained ({type(exc).__name__}).",
                retry_after=60,
                remediation=(
                    "In Azure, check that the function app has its user-assigned managed identity and that "
                    "AZURE_CLIENT_ID names it; locally, run `make run` (it starts a Graph simulator) or sign in "
                    "with `az login`."
                ),
            ) from None

    # -- requests -------------------------------------------------------------------------------

    def _send(self, method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
        if urlsplit(url).netloc != self._host or not url.startswith(self.base_url + "/"):
            raise SecureScoreUnavailable(f"Graph answered with a link outside {self.base_url}; it was not followed.")
        headers = {"Authorization": f"Bearer {self._token()}"}
        with self._slots:
            self._sent.count = self.requests_sent() + 1
            try:
                response = self._http.request(method, url, json=body, headers=headers)
            except httpx.TimeoutException as exc:
                raise TransientFailure("timed out", None) from exc
            except httpx.TransportError as exc:
                raise TransientFailure(f"connection failed ({type(exc).__name__})", None) from exc
        if response.status_code in RETRY_STATUSES:
            raise TransientFailure(f"HTTP {response.status_code}", retry_after_seconds(response), response)
        return response

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = with_retries(lambda: self._send(method, url, body), self.retry, self._sleep)
        except TransientFailure as exc:
            code, message = graph_error(exc.response) if exc.response is not None else ("", "")
            raise SecureScoreUnavailable(
                f"Microsoft Graph is unavailable: {exc.reason}" + (f" ({code}: {message})" if code else ""),
                retry_after=max(1, int(exc.retry_after or 60)),
                remediation="Nothing to fix in the connector: it retries on its next run. Graph's status: "
                "https://status.cloud.microsoft.",
            ) from None
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
            if code.lower() in _PERMISSION_CODES or method == "GET":
                raise SecureScoreForbidden(
                    f"Microsoft Graph refused the connector ({response.status_code} {code}: {message}).",
                    remediation=grant_remediation(self._client_id, self.base_url),
                )
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
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

    # -- Secure Score ---------------------------------------------------------------------------

    def secure_scores(self, top: int) -> list[dict[str, Any]]:
        """The newest `top` daily snapshots, newest first. Graph adds an `@odata.nextLink` even to `$top=1`:
        it is ignored, as the reference advises."""
        body = self._json(self._call("GET", f"{self.base_url}/v1.0/security/secureScores?$top={int(top)}"))
        return [item for item in body.get("value", []) if isinstance(item, dict)]

    def control_profiles(self) -> tuple[list[dict[str, Any]], int]:
        """Every control profile, following each `@odata.nextLink`; also how many requests that took."""
        url: str | None = f"{self.base_url}/v1.0/security/secureScoreControlProfiles"
        profiles: list[dict[str, Any]] = []
        pages = 0
        while url is not None:
            if pages >= MAX_PAGES:
                raise SecureScoreUnavailable(f"Graph kept paging past {MAX_PAGES} pages; the listing was stopped.")
            body = self._json(self._call("GET", url))
            pages += 1
            profiles.extend(item for item in body.get("value", []) if isinstance(item, dict))
            link = body.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
        return profiles, pages

    def _control_url(self, control_id: str) -> str:
        """The profile's URL; the id is checked so the path segment carries nothing else."""
        if not _CONTROL_ID.fullmatch(control_id) or set(control_id) == {"."}:
            raise ControlRefused(f"'{printable(control_id, 64)}' is not a control id the connector can address.")
        return f"{self.base_url}/v1.0/security/secureScoreControlProfiles/{control_id}"

    def control_profile(self, control_id: str) -> dict[str, Any]:
        """One control profile (a point read; the refresh lists them all instead)."""
        return self._json(self._call("GET", self._control_url(control_id)))

    def update_control(self, control_id: str, body: dict[str, Any]) -> None:
        """PATCH one control profile (204). The same body twice is the same note: safe to retry."""
        response = self._call("PATCH", self._control_url(control_id), body)
        if response.status_code in (200, 204):
            return
        code, message = graph_error(response)
        if response.status_code in (400, 403, 404):
            raise ControlRefused(f"Graph refused to update control {control_id}: {code}: {message}".rstrip(": "))
        raise SecureScoreUnavailable(
            f"Microsoft Graph answered {response.status_code} {code}: {message}".rstrip(": "), retry_after=60
        )
