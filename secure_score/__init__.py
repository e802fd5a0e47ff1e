"""Secure Score: the refresh timer, the recommendations list, refresh on demand (docs/design.md#secure-score), and the
Microsoft tenants the connector reads (docs/design.md#several-microsoft-tenants)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.problems import ConnectorError
    from shared.services import Services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%SECURE_SCORE_SCHEDULE%", run_on_startup=False, use_monitor=True)
@bp.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:01:00", maximum_interval="00:15:00")
def secure_score_sync(timer: func.TimerRequest) -> None:
    """Read Secure Score, store the snapshot, act on completions and regressions, write ticket notes back.
    A failed read raises, so the retry policy runs it again; the old snapshot stays meanwhile."""
    from secure_score.refresh import SecureScoreRefresh
    from shared.services import get_services

    if timer.past_due:
        log.info("The Secure Score refresh is past due (the app was idle or restarting)")
    SecureScoreRefresh(get_services()).refresh_or_queue()


# From FANOUT_THRESHOLD tenants due, the refresh queues one message per tenant, and this function refreshes that
# tenant on whichever instance the host runs it (docs/architecture.md#fan-out-on-storage-queues). The connection is
# the app's storage: AzureWebJobsStorage__queueServiceUri with the identity in Azure.
@bp.queue_trigger(arg_name="msg", queue_name="secure-score-refresh", connection="AzureWebJobsStorage")
def secure_score_tenant(msg: func.QueueMessage) -> None:
    """One tenant's refresh; a failure raises, so the host tries the message again, then moves it to the poison
    queue (host.json extensions.queues)."""
    from secure_score.queued import refresh_queued
    from shared.services import get_services

    refresh_queued(get_services(), msg.get_body(), msg.dequeue_count or 1, msg.id or "")


# Every 30 s (a literal schedule: no setting to deploy): a consent Microsoft reported is tried again about 30 s
# later, then after 1, 2, 4 and 8 minutes (docs/design.md#consent-clouds-and-identities). With no tenant confirming, a
# run reads one store document.
@bp.timer_trigger(arg_name="timer", schedule="*/30 * * * * *", run_on_startup=False, use_monitor=False)
def tenant_confirmation(timer: func.TimerRequest) -> None:
    """Confirm the consents whose next try has come: a new token and a read; the confirmed tenants get their first
    refresh."""
    from secure_score.consent import confirm_due
    from shared.services import get_services

    confirm_due(get_services())


@bp.route(route="recommendations", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def recommendations(req: func.HttpRequest) -> func.HttpResponse:
    """The tenant's improvement actions with their score and ticket, from the stored snapshot."""
    from secure_score.recommendations import list_recommendations
    from shared import tenant_records, web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        params = inbound.params
        return web.json_response(
            list_recommendations(
                services,
                category=params.get("category"),
                status=params.get("status"),
                ticket=params.get("ticket"),
                scored=params.get("scored"),
                tenant=tenant_records.resolve(services, params.get("tenant")),
            )
        )

    return web.handle(req, run)


@bp.route(route="recommendations/refresh", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def refresh_recommendations(req: func.HttpRequest) -> func.HttpResponse:
    """Refresh from Graph now (admin); answers the run's result, or 202 when it queued one refresh per tenant."""
    from secure_score.refresh import RefreshResult, SecureScoreRefresh
    from shared import web
    from shared.auth import ROLE_ADMIN

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        outcome = SecureScoreRefresh(services).refresh_or_queue()
        if isinstance(outcome, RefreshResult):
            return web.json_response(outcome.to_json())
        # Queued: GET /api/tenants shows its progress (`refreshing`) and each tenant's refresh as it lands.
        return web.json_response(outcome.to_json(), 202, {"Location": "/api/tenants"})

    return web.handle(req, run, role=ROLE_ADMIN)


@bp.route(route="tenants", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_tenants(req: func.HttpRequest) -> func.HttpResponse:
    """Every tenant with its score, trend, open actions and tickets, and health; consent links for admins."""
    from secure_score.overview import tenant_overview
    from shared import web
    from shared.auth import ROLE_ADMIN

    def run(services: Services, caller: Caller, _: Inbound) -> func.HttpResponse:
        return web.json_response(tenant_overview(services, admin=ROLE_ADMIN in caller.roles))

    return web.handle(req, run)


@bp.route(route="tenants", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def add_tenant(req: func.HttpRequest) -> func.HttpResponse:
    """Register a tenant (by id or domain) as pending; 201 with the consent link its admin opens."""
    from secure_score import tenants
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        added = tenants.add(services, inbound.json, caller.user or "unknown")
        if added.consent_url is None:  # the home tenant, paused before, is read again
            return web.json_response(added.shown())
        return web.json_response(added.shown(), 201, {"Location": f"/api/tenants/{added.tenant.id}"})

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(1024))


@bp.route(route="tenants/{id:guid}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
def remove_tenant(req: func.HttpRequest) -> func.HttpResponse:
    """Stop reading a tenant (the home tenant is paused); its tickets stay. The answer says how that tenant's admin
    removes the reader app, which the connector cannot do for them. `{id:guid}`: `/api/tenants/consent` is never
    taken for an id."""
    from secure_score import tenants
    from shared import web
    from shared.auth import ROLE_ADMIN

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        return web.json_response(tenants.removal(services, req.route_params.get("id", "")))

    return web.handle(req, run, role=ROLE_ADMIN)


@bp.route(route="tenants/{id:guid}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
def rename_tenant(req: func.HttpRequest) -> func.HttpResponse:
    """Name a tenant (`{"name"}`; Connector.Admin): one added by domain is named by its domain until then."""
    from secure_score import tenants
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        return web.json_response(tenants.rename(services, req.route_params.get("id", ""), inbound.json))

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(1024))


@bp.route(route="tenants/consent", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def tenant_consent(req: func.HttpRequest) -> func.HttpResponse:
    """Microsoft's admin consent redirects here; anonymous, guarded by the single-use state bound to the tenant."""
    from secure_score.consent import finish_consent
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        page = finish_consent(services, inbound.params)
        return web.html_page(page.title, list(page.lines), page.status, back=page.back)

    def failed(error: ConnectorError) -> func.HttpResponse:
        advice = "Open the consent link again." if error.status < 500 else (error.remediation or "")
        return web.html_page("Tenant not added", ["The consent could not be processed.", advice], error.status,
                             back=(web.PORTAL_PATH, "Open the connector's page (for its administrators)"))  # fmt: skip

    # Entra ID's error_description ends with trace lines; the page never shows it, but it must not be refused.
    return web.handle(req, run, authenticate=False, on_error=failed, multi_line=frozenset({"error_description"}))
