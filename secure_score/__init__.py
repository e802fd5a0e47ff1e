"""Secure Score: the refresh timer, the recommendations list, and refresh on demand (DESIGN section 9)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.services import Services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%SECURE_SCORE_SCHEDULE%", run_on_startup=False, use_monitor=True)
@bp.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:01:00", maximum_interval="00:15:00")
def secure_score_sync(timer: func.TimerRequest) -> None:
    """Read Secure Score, store the snapshot, act on completions and regressions, write ticket notes back.
    A failed read raises, so the retry policy runs it again; the old snapshot stays meanwhile."""
    from secure_score.refresh import SecureScoreSync
    from shared.services import get_services

    if timer.past_due:
        log.info("The Secure Score refresh is past due (the app was idle or restarting)")
    SecureScoreSync(get_services()).refresh()


@bp.route(route="recommendations", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def recommendations(req: func.HttpRequest) -> func.HttpResponse:
    """The tenant's improvement actions with their score and ticket, from the stored snapshot."""
    from secure_score.recommendations import list_recommendations
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        params = inbound.params
        return web.json_response(
            list_recommendations(
                services,
                category=params.get("category"),
                status=params.get("status"),
                ticket=params.get("ticket"),
                scored=params.get("scored"),
            )
        )

    return web.handle(req, run)


@bp.route(route="recommendations/refresh", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def refresh_recommendations(req: func.HttpRequest) -> func.HttpResponse:
    """Refresh from Graph now (admin); answers the run's result."""
    from secure_score.refresh import SecureScoreSync
    from shared import web
    from shared.auth import ROLE_ADMIN

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        return web.json_response(SecureScoreSync(services).refresh().to_json())

    return web.handle(req, run, role=ROLE_ADMIN)
