"""RFC 9457 problem details and the connector's exception tree.

Every error a caller or ServiceNow can cause is one of these; the function modules turn them into
`application/problem+json` responses. The tree, with the HTTP status each answers:

    ConnectorError                      base; never raised itself
    ├── ValidationFailed        400     `errors`: [{field, message}]
    ├── Unauthorized            401
    ├── Forbidden               403
    ├── NotFound                404
    ├── Conflict                409/422 idempotency conflicts
    ├── UnsupportedMediaType    415     a request body that is not JSON
    ├── NotConfigured           503     a required setting is missing or invalid
    ├── NotConnected            503     no ServiceNow tokens yet
    ├── ReauthorizationRequired 503     the refresh token was rejected or expired
    ├── ServiceNowRejected      502     ServiceNow refused the request (carries its message and detail)
    ├── ServiceNowUnavailable   503     unreachable, timed out, 429 or 5xx after retries (`Retry-After`)
    ├── SecureScoreUnavailable  503     Microsoft Graph unreachable, throttled or failing (`Retry-After`)
    ├── SecureScoreForbidden    503     the managed identity lacks SecurityEvents.ReadWrite.All (the grant)
    ├── TenantNotConsented      503     another tenant's admin has not consented (or withdrew): the consent link
    ├── ReaderAppMisconfigured  503     the reader app's federated credential does not match the managed identity
    ├── PreconditionFailed      412     `If-Match` names an older version (the routes)
    ├── PreconditionRequired    428     a change that must name the version it changes came without `If-Match`
    ├── DocumentTooLarge        413     a stored document would outgrow what one store entity holds: nothing saved
    └── StoreUnavailable        503     the connector's own store is unreachable, failing or throttled (`Retry-After`)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Problem types are URNs (RFC 9457 allows non-resolvable URIs); docs/api.md (Problems) documents each code.
PROBLEM_TYPE_BASE = "urn:m365-servicenow-connector:problem:"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ConnectorError(Exception):
    """Base of every error that becomes a problem response."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        remediation: str | None = None,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.remediation = remediation
        self.retry_after = retry_after
        self.extra = dict(extra or {})

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.remediation:
            body["remediation"] = self.remediation
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": PROBLEM_CONTENT_TYPE, "Cache-Control": "no-store"}
        headers["X-Content-Type-Options"] = "nosniff"  # like every other response
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def body(self, instance: str | None = None) -> bytes:
        return json.dumps(self.to_problem(instance)).encode()


class ValidationFailed(ConnectorError):
    status = 400
    code = "validation_failed"
    title = "The request is not valid"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        self.errors = errors
        fields = ", ".join(e.field for e in errors)
        super().__init__(
            detail or f"{len(errors)} field(s) are not valid: {fields}",
            extra={"errors": [e.to_json() for e in errors]},
        )


class Unauthorized(ConnectorError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(ConnectorError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(ConnectorError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(ConnectorError):
    status = 409
    code = "conflict"
    title = "Conflict"


class IdempotencyKeyReused(Conflict):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency-Key reused with a different request"


class UnsupportedMediaType(ConnectorError):
    status = 415
    code = "unsupported_media_type"
    title = "The request body must be JSON"


class NotConfigured(ConnectorError):
    status = 503
    code = "not_configured"
    title = "The connector is not configured"


class NotConnected(ConnectorError):
    status = 503
    code = "not_connected"
    title = "The connector is not connected to ServiceNow"


class ReauthorizationRequired(ConnectorError):
    status = 503
    code = "reauthorization_required"
    title = "ServiceNow authorization must be renewed"


class ServiceNowRejected(ConnectorError):
    status = 502
    code = "servicenow_rejected"
    title = "ServiceNow refused the request"


class ServiceNowUnavailable(ConnectorError):
    status = 503
    code = "servicenow_unavailable"
    title = "ServiceNow is unavailable"


class SecureScoreUnavailable(ConnectorError):
    status = 503
    code = "secure_score_unavailable"
    title = "Microsoft Secure Score is unavailable"


class SecureScoreForbidden(ConnectorError):
    status = 503
    code = "secure_score_forbidden"
    title = "The connector may not read or update Microsoft Secure Score"


class TenantNotConsented(ConnectorError):
    status = 503
    code = "tenant_not_consented"
    title = "That tenant has not consented to the connector"


class ReaderAppMisconfigured(ConnectorError):
    """The deployment's own doing, never a customer's: Entra ID refused the reader app's federated credential."""

    status = 503
    code = "reader_app_misconfigured"
    title = "The reader app's federated credential does not match the managed identity"


class PreconditionFailed(ConnectorError):
    status = 412
    code = "precondition_failed"
    title = "The version you changed is no longer the current one"


class PreconditionRequired(ConnectorError):
    status = 428
    code = "precondition_required"
    title = "The change must name the version it changes (If-Match)"


class DeadlineExceeded(ConnectorError):
    """Work a person made large (a routes list to check or preview) ran past its deadline and was stopped."""

    status = 422
    code = "deadline_exceeded"
    title = "The request would take too long and was stopped"


class DocumentTooLarge(ConnectorError):
    """A store document would be larger than one Table entity holds (1 MiB, strings 2 bytes a character): refused
    before it is sent, on both stores, so no owner meets Azure's EntityTooLarge as a 500 (shared/store/_models.py)."""

    status = 413
    code = "document_too_large"
    title = "The change would make a stored document too large"


class StoreUnavailable(ConnectorError):
    """The connector's own store (Table Storage) could not be reached, failed, or throttled: nothing the caller
    did, and nothing was half-written (each step of a create is one store transaction)."""

    status = 503
    code = "store_unavailable"
    title = "The connector's store is unavailable"


PROBLEM_CODES: dict[str, type[ConnectorError]] = {
    cls.code: cls
    for cls in (
        ValidationFailed,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        IdempotencyKeyReused,
        UnsupportedMediaType,
        NotConfigured,
        NotConnected,
        ReauthorizationRequired,
        ServiceNowRejected,
        ServiceNowUnavailable,
        SecureScoreUnavailable,
        SecureScoreForbidden,
        TenantNotConsented,
        ReaderAppMisconfigured,
        PreconditionFailed,
        PreconditionRequired,
        DeadlineExceeded,
        DocumentTooLarge,
        StoreUnavailable,
    )
}
