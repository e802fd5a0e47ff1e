"""The connection routes: connect, the OAuth callback, provisioning status, disconnect."""

from __future__ import annotations

import azure.functions as func

from shared import web
from shared.auth import Caller
from shared.connection import disconnect as disconnect_servicenow
from shared.connection import finish_callback, start_connect
from shared.provisioning import provisioning_status
from shared.services import Services

bp = func.Blueprint()


@bp.route(route="connect", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def connect(req: func.HttpRequest) -> func.HttpResponse:
    """Send the admin's browser to ServiceNow's consent page (a browser navigation carries no bearer token)."""
    return web.handle(req, lambda services, _: web.redirect(start_connect(services, req.headers)), authenticate=False)


@bp.route(route="oauth/callback", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def oauth_callback(req: func.HttpRequest) -> func.HttpResponse:
    """ServiceNow redirects here; anonymous, and protected by the single-use `state`."""

    def run(services: Services, _: Caller) -> func.HttpResponse:
        outcome = finish_callback(services, dict(req.params))
        lines = [outcome.message]
        if outcome.ok:
            lines.append(f"Instance: {outcome.instance}")
            lines.append(f"ServiceNow user: {outcome.user or 'could not be identified'}")
        lines.append(outcome.advice)
        return web.html_page(outcome.title, lines, outcome.status)

    return web.handle(req, run, authenticate=False)


@bp.route(route="provisioning", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def provisioning(req: func.HttpRequest) -> func.HttpResponse:
    """Health and what to fix; `?live=true` also asks ServiceNow."""
    return web.handle(
        req, lambda services, _: web.json_response(provisioning_status(services, live=web.flag(req, "live")))
    )


@bp.route(route="disconnect", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def disconnect(req: func.HttpRequest) -> func.HttpResponse:
    """Revoke and forget the tokens; `?force=true` forgets them even when revocation fails."""

    def run(services: Services, _: Caller) -> func.HttpResponse:
        disconnect_servicenow(services, force=web.flag(req, "force"))
        return web.no_content()

    return web.handle(req, run)
