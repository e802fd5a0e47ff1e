"""A ticket request filled from a Secure Score control (docs/design.md#secure-score): what the caller leaves out comes
from the stored snapshot; what the caller sends wins. Secure Score's own new tickets (a regression after close) are
filled the same way, so this lives with ticket creation and reads the control from the store."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from create_ticket.request import DESCRIPTION_LIMIT, Recommendation, TicketRequest
from shared import tenant_records
from shared.problems import FieldError, SecureScoreUnavailable, ValidationFailed
from shared.services import Services
from shared.text import clean_line
from shared.tickets import HOME

SECURE_SCORE_PAGE = "https://security.microsoft.com/securescore?viewid=actions"


def _description(control: dict[str, Any]) -> str:
    lines = [control["remediation"] or control["title"]]
    details = [
        ("Remediation impact", control.get("remediationImpact")),
        ("User impact", control.get("userImpact")),
        ("Implementation cost", control.get("implementationCost")),
        ("Threats", ", ".join(control.get("threats") or [])),
        ("Action", control.get("actionUrl")),
    ]
    extra = [f"{label}: {value}" for label, value in details if value]
    if extra:
        lines += ["", *extra]
    return "\n".join(lines)[:DESCRIPTION_LIMIT]


def complete_from_control(request: TicketRequest, control: dict[str, Any] | None) -> TicketRequest:
    """Fill what the caller left out from the Secure Score control; what the caller sent wins. Without a
    control, the caller must have named the ticket and its source and category."""
    rec = request.recommendation
    if control is None:
        errors = []
        if not request.name:
            errors.append(FieldError("recommendation.id", "is not a Secure Score improvement action"))
        if not rec.source:
            errors.append(FieldError("recommendation.source", "is required for a recommendation of your own"))
        if not rec.category:
            errors.append(FieldError("recommendation.category", "is required for a recommendation of your own"))
        if errors:
            raise ValidationFailed(errors)
        return request
    category = rec.category or control.get("category") or ""
    if not category:
        raise ValidationFailed(
            [FieldError("recommendation.category", "is required: Secure Score gives this control no known category")]
        )
    completed = replace(
        request,
        name=request.name or clean_line(control["title"], 160),
        description=request.description or _description(control),
        recommendation=Recommendation(
            rec.id,
            rec.source or "microsoft",
            category,
            rec.url or control.get("actionUrl") or SECURE_SCORE_PAGE,
        ),
        control={
            "score": control.get("score"),
            "maxScore": control.get("maxScore"),
            "completed": control["completed"],
            "service": control.get("service"),
        },
    )
    return replace(completed, origin=request.fingerprint())


def known_tenant(services: Services, request: TicketRequest) -> TicketRequest:
    """A request for another tenant names one the connector reads (the sign-in's tenant id is the home tenant)."""
    if not request.tenant:
        return request
    if request.tenant == services.home_tenant_id():
        return replace(request, tenant=HOME)
    if not tenant_records.reads(services.store, request.tenant):
        raise ValidationFailed([FieldError("tenant", "is not a tenant the connector reads (GET /api/tenants)")])
    return request


def complete_request(services: Services, request: TicketRequest) -> TicketRequest:
    """A request that left fields for the control to fill gets them from the stored snapshot (one point read);
    a complete request is used as it is."""
    if not request.needs_control:
        return request
    control = services.store.get_secure_score_control(request.recommendation.id, request.tenant)
    if control is None and not request.name and services.store.get_secure_score(request.tenant) is None:
        raise SecureScoreUnavailable(
            "Microsoft Secure Score has not been read yet, so the improvement action cannot fill the ticket.",
            retry_after=60,
            remediation="Refresh it (POST /api/recommendations/refresh, or wait for the Secure Score timer), or "
            "send name, recommendation.source and recommendation.category yourself.",
        )
    return complete_from_control(request, control)
