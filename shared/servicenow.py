"""The ServiceNow HTTP client: the OAuth endpoints and the Table API.

Only URLs built from the validated instance base are ever requested (a guard refuses anything else),
redirects are never followed, and every failure becomes a `ConnectorError` carrying ServiceNow's own
message plus what to change. Transient failures (429, 5xx, resets, timeouts) are retried with full-jitter
exponential backoff, never sooner than `Retry-After` / `X-RateLimit-Reset`, at most 5 attempts in a
bounded time. Only requests safe to repeat are retried here. Every response is read whole within its deadline
(shared/deadlines.py), so a slow or dripping instance cannot hold a request, or a run, for ever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from shared import deadlines
from shared.egress import refused_by_egress
from shared.problems import (
    ConnectorError,
    NotConfigured,
    NotFound,
    ServiceNowRejected,
    ServiceNowUnavailable,
)
from shared.retries import (
    RETRY_STATUSES,
    RetryPolicy,
    TransientFailure,
    capped_retry_after,
    retry_after_seconds,
    with_retries,
)
from shared.telemetry import servicenow_span

log = logging.getLogger(__name__)
T = TypeVar("T")

TABLE_API = "/api/now/v2/table/"
REVOKE_PATH = "/oauth_revoke_token.do"


class _RedactTokens(logging.Filter):
    """httpx logs each request's URL at INFO; the documented revoke URL carries the token as a query parameter
    (ServiceNow docs, t_RevokeOAuthToken), so its value is cut from every log line httpx writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("token=" in str(arg) for arg in record.args):
            record.args = tuple(_redact(str(arg)) if "token=" in str(arg) else arg for arg in record.args)
        return True


def _redact(text: str) -> str:
    head, _, tail = text.partition("token=")
    rest = tail.split("&", 1)
    return head + "token=[redacted]" + ("&" + _redact(rest[1]) if len(rest) > 1 else "")


logging.getLogger("httpx").addFilter(_RedactTokens())


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    refresh_token: str | None
    expires_in: int

    def __repr__(self) -> str:  # never print tokens
        return f"TokenResponse(expires_in={self.expires_in})"


class TokenSource(Protocol):
    def access_token(self) -> str: ...

    def renew_after_rejection(self, rejected: str) -> str: ...


class TokenRequestRefused(ServiceNowRejected):
    """The token endpoint said no (ServiceNow answers 401 `access_denied` whatever the cause)."""


def servicenow_error(response: httpx.Response) -> tuple[str, str]:
    """ServiceNow's `{"error": {"message", "detail"}}` envelope, tolerant of HTML and other bodies."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or ""), str(error.get("detail") or "")
    if isinstance(error, str):  # the OAuth endpoints: {"error": ..., "error_description": ...}
        return error, str(body.get("error_description") or "")
    return "", ""


def problem_for(response: httpx.Response, *, table: str | None = None) -> ConnectorError:
    """Map a ServiceNow refusal to a problem that says what to fix (the original connector's guide)."""
    status = response.status_code
    message, detail = servicenow_error(response)
    context = {"serviceNow": {"status": status, "message": message, "detail": detail}}
    text = f"{message} {detail}".strip()
    lowered = text.lower()
    where = f"table '{table}'" if table else "the table"
    if status == 403 and "cross-scope" in lowered:
        return ServiceNowRejected(
            f"ServiceNow refused the request by a cross-scope access policy: {text}",
            remediation=(
                f"In ServiceNow open System Definition > Tables, find {where} (and 'oauth_entity' if named), "
                "and under Application Access set 'Accessible from' to 'All application scopes' with "
                "'Can read', 'Can create' and 'Can update' checked."
            ),
            extra=context,
        )
    if status == 403 and ("insufficient rights" in lowered or "acl exception" in lowered):
        return ServiceNowRejected(
            f"ServiceNow's access controls refused the integration user: {text}",
            remediation=(
                f"Give the integration user a role that can read and write {where} "
                "(for 'incident', the 'itil' role) in User Administration > Users, or adjust the ACLs "
                "in System Security > Access Control (ACL) for that table."
            ),
            extra=context,
        )
    if status == 403 and "data policy" in lowered:
        return ServiceNowRejected(
            f"A ServiceNow data policy refused the record: {text}",
            remediation=(
                "Map the mandatory fields with SERVICENOW_FIELD_MAP or relax the data policy in "
                "System Policy > Rules > Data Policies for the table."
            ),
            extra=context,
        )
    if status == 403 and not message:
        return ServiceNowRejected(
            "ServiceNow answered 403 without an error envelope: IP address access control is refusing "
            "the connector's address.",
            remediation=(
                "Allow the connector's egress IP (the deployment output 'egressIp') in ServiceNow under "
                "System Security > IP Address Access Control (table ip_access) with an 'Allow' rule."
            ),
            extra=context,
        )
    if status == 400 and "invalid table" in lowered:
        return ServiceNowRejected(
            f"ServiceNow does not know {where}: {text}",
            remediation="Set SERVICENOW_TABLE to an existing table name such as 'incident'.",
            extra=context,
        )
    if status == 404:
        return NotFound(f"ServiceNow has no such record, or ACLs hide it: {text}", extra=context)
    if status in RETRY_STATUSES:
        wait = retry_after_seconds(response)
        return ServiceNowUnavailable(
            f"ServiceNow answered {status}: {text or response.reason_phrase}",
            retry_after=capped_retry_after(wait, 30),
            extra=context,
        )
    return ServiceNowRejected(
        f"ServiceNow refused the request ({status}): {text or response.reason_phrase}",
        extra=context,
    )


class ServiceNowClient:
    """One httpx client per instance, shared by every request of the process."""

    def __init__(
        self,
        instance_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.instance_url = instance_url.rstrip("/")
        self._host = urlsplit(self.instance_url).netloc
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.instance_url,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "m365-servicenow-connector"},
        )

    def close(self) -> None:
        self._http.close()

    # -- transport ------------------------------------------------------------------------------

    def _send(self, request: httpx.Request) -> httpx.Response:
        if request.url.netloc.decode("ascii") != self._host:  # defence in depth against SSRF
            raise ServiceNowRejected(f"refused to send a request outside the instance {self.instance_url}")
        with servicenow_span(request.method, str(request.url)) as span:
            try:
                response = deadlines.send(self._http, request, deadlines.budget(self.retry.deadline))
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):  # as a refused connection: it says nothing of the port
                    span.set_attribute("error.type", "connect")
                    raise TransientFailure("no answer", None) from exc
                span.set_attribute("error.type", "timeout")
                raise TransientFailure("timed out", None) from exc
            except httpx.TransportError as exc:
                span.set_attribute("error.type", type(exc).__name__)
                refused = refused_by_egress(exc)
                if refused is not None:
                    raise NotConfigured(
                        f"ServiceNow at {self.instance_url} was not contacted: {refused}.",
                        remediation="Check the connection's instance URL and its DNS name: in Azure the connector "
                        "connects only to public addresses (docs/admin-guide.md: What one customer can and cannot "
                        "reach).",
                    ) from None
                # Never which socket error (refused, reset, timed out): that would tell a caller which ports answer.
                raise TransientFailure("no answer", None) from exc
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    def with_retries(self, attempt: Callable[[], T]) -> T:
        """Run `attempt` within the retry policy; giving up becomes ServiceNow's own problem or `unavailable`."""
        policy = self.retry
        try:
            return with_retries(attempt, policy, self._sleep)
        except TransientFailure as exc:
            if exc.response is not None:
                error = problem_for(exc.response)
                if isinstance(error, ServiceNowUnavailable):
                    error.detail = f"{error.detail} (gave up after {policy.attempts} attempts or the time limit)"
                raise error from None
            raise ServiceNowUnavailable(
                f"ServiceNow at {self.instance_url} could not be reached: {exc.reason}",
                retry_after=capped_retry_after(exc.retry_after, 30),
                remediation=(
                    "Check that SERVICENOW_INSTANCE names the right instance and that it is awake "
                    "(developer instances hibernate); check outbound network rules."
                ),
            ) from None

    def _once(self, request: httpx.Request) -> httpx.Response:
        response = self._send(request)
        if response.status_code in RETRY_STATUSES:
            raise TransientFailure(f"HTTP {response.status_code}", retry_after_seconds(response), response)
        return response

    # -- OAuth ----------------------------------------------------------------------------------

    def authorize_url(self, params: Mapping[str, str]) -> str:
        return str(httpx.URL(self.instance_url + "/oauth_auth.do", params=dict(params)))

    def _token_request(self, form: Mapping[str, str], *, retry: bool) -> TokenResponse:
        def attempt() -> httpx.Response:
            request = self._http.build_request("POST", "/oauth_token.do", data=dict(form))
            return self._once(request)

        try:
            response = self.with_retries(attempt) if retry else attempt()
        except TransientFailure as exc:  # a code exchange is never repeated: codes are single use
            if exc.response is not None:
                raise problem_for(exc.response) from None
            raise ServiceNowUnavailable(
                f"ServiceNow at {self.instance_url} could not be reached: {exc.reason}", retry_after=30
            ) from None
        if response.status_code in (400, 401):
            message, detail = servicenow_error(response)
            raise TokenRequestRefused(
                f"ServiceNow's token endpoint refused the request ({response.status_code} {message} {detail})",
                extra={"serviceNow": {"status": response.status_code, "message": message, "detail": detail}},
            )
        if response.status_code != 200:
            raise problem_for(response)
        try:
            body = response.json()
            return TokenResponse(
                access_token=str(body["access_token"]),
                refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
                expires_in=int(body["expires_in"]) if body.get("expires_in") is not None else 1800,
            )
        except (ValueError, KeyError, TypeError):
            raise ServiceNowRejected("ServiceNow's token response was not the expected JSON") from None

    def exchange_code(
        self, *, code: str, redirect_uri: str, client_id: str, client_secret: str, code_verifier: str
    ) -> TokenResponse:
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "client_secret": client_secret,
                "code_verifier": code_verifier,
            },
            retry=False,
        )

    def refresh(self, *, refresh_token: str, client_id: str, client_secret: str) -> TokenResponse:
        return self._token_request(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
                "client_secret": client_secret,
            },
            retry=True,
        )

    def revoke(self, token: str) -> None:
        """Mark a token expired, in the documented form `oauth_revoke_token.do?token=...` (ServiceNow docs,
        t_RevokeOAuthToken: "append the access or refresh token"; no body form is documented). A revoked token
        in a log is harmless, and httpx's own log lines have it cut out (`_RedactTokens`)."""

        def attempt() -> httpx.Response:
            return self._once(self._http.build_request("GET", REVOKE_PATH, params={"token": token}))

        response = self.with_retries(attempt)
        if response.status_code >= 400:
            raise problem_for(response)

    # -- Table API ------------------------------------------------------------------------------

    def table_request(
        self,
        tokens: TokenSource,
        method: str,
        table: str,
        *,
        sys_id: str | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One Table API call. A 401 causes one token renewal and one more try, never a loop."""
        path = TABLE_API + table + (f"/{sys_id}" if sys_id else "")

        def call(token: str) -> httpx.Response:
            def attempt() -> httpx.Response:
                request = self._http.build_request(
                    method,
                    path,
                    params=dict(params or {}),
                    json=dict(json_body) if json_body is not None else None,
                    headers={"Authorization": f"Bearer {token}"},
                )
                return self._once(request)

            return self.with_retries(attempt) if retry else attempt()

        token = tokens.access_token()
        response = call(token)
        if response.status_code == 401:
            token = tokens.renew_after_rejection(token)
            response = call(token)
            if response.status_code == 401:
                message, detail = servicenow_error(response)
                raise ServiceNowRejected(
                    f"ServiceNow refused a freshly renewed token: {message} {detail}".strip(),
                    remediation=(
                        "Check the integration user in User Administration > Users: active, not locked "
                        "out, and not restricted to a login method the API cannot use."
                    ),
                )
        if response.status_code >= 400:
            raise problem_for(response, table=table)
        return response

    def table_list(
        self, tokens: TokenSource, table: str, params: Mapping[str, str], *, retry: bool = True
    ) -> tuple[list[dict[str, Any]], httpx.Response]:
        response = self.table_request(tokens, "GET", table, params=params, retry=retry)
        result = _result(response)
        if not isinstance(result, list):
            raise ServiceNowRejected("ServiceNow's Table API answered without a result list")
        return result, response


def _result(response: httpx.Response) -> Any:
    try:
        return response.json()["result"]
    except (ValueError, KeyError, TypeError):
        raise ServiceNowRejected(
            f"ServiceNow answered {response.status_code} without the Table API's JSON result",
            remediation=(
                "Open the instance in a browser: a hibernating developer instance, a maintenance page or a proxy "
                "answers with a web page instead of the API."
            ),
        ) from None


def table_result(response: httpx.Response) -> dict[str, Any]:
    result = _result(response)
    if not isinstance(result, dict):
        raise ServiceNowRejected("ServiceNow's Table API answered without a record")
    return result
