"""ServiceNow connections: add, list and remove them, connect one (the OAuth callback), disconnect.

Nothing from `shared` is imported at module level (cold start: docs/design.md#layout-and-ownership); each function
imports what it needs on its first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.problems import ConnectorError
    from shared.services import Services

bp = func.Blueprint()


@bp.route(route="connect", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def connect(req: func.HttpRequest) -> func.HttpResponse:
    """Send the admin's browser to ServiceNow's consent page with a cookie binding the flow to that browser."""
    from oauth_callback.authorization import start_connect
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.connections import DEFAULT

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        start = start_connect(services, caller, inbound.params.get("connection", DEFAULT))
        return web.redirect(start.location, {"Set-Cookie": start.cookie})

    return web.handle(req, run, role=ROLE_ADMIN)


@bp.route(route="oauth/callback", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def oauth_callback(req: func.HttpRequest) -> func.HttpResponse:
    """ServiceNow redirects here; anonymous, protected by the single-use `state` bound to the browser."""
    from oauth_callback.authorization import clear_state_cookie, finish_callback
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        outcome = finish_callback(services, inbound.params, inbound.header("Cookie"))
        lines = [outcome.message]
        if outcome.ok:
            lines.append(f"Instance: {outcome.instance}")
            lines.append(f"ServiceNow user: {outcome.user or 'could not be identified'}")
        lines.append(outcome.advice)
        # The cookie is cleared only when it found its flow: a callback from another browser (or a forged one
        # opened in the admin's) leaves the admin's flow and cookie as they were.
        cleared = {"Set-Cookie": clear_state_cookie(services.settings.redirect_uri)} if outcome.consumed else {}
        return web.html_page(
            outcome.title, lines, outcome.status, cleared, back=(web.PORTAL_PATH, "Back to the security center")
        )

    def failed(error: ConnectorError) -> func.HttpResponse:
        # Only the connector's own words: a problem's detail never quotes the query.
        advice = "Start again at /api/connect." if error.status < 500 else (error.remediation or "")
        return web.html_page(
            "Connection failed",
            ["The callback could not be processed.", advice],
            error.status,
            back=(web.PORTAL_PATH, "Back to the security center"),
        )

    return web.handle(req, run, authenticate=False, on_error=failed)


@bp.route(route="disconnect", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def disconnect(req: func.HttpRequest) -> func.HttpResponse:
    """Revoke and forget the tokens; `?force=true` forgets them even when revocation fails."""
    from oauth_callback.authorization import disconnect as disconnect_servicenow
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.connections import DEFAULT

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        disconnect_servicenow(services, force=web.flag(inbound, "force"), connection=inbound.params.get("connection",
                              DEFAULT))  # fmt: skip
        return web.no_content()

    return web.handle(req, run, role=ROLE_ADMIN)


@bp.route(route="connections", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_connections(req: func.HttpRequest) -> func.HttpResponse:
    """Every ServiceNow connection with its state (from the stored tokens) and last sync; never a secret."""
    from oauth_callback.connections import list_connections as listed
    from shared import web

    def run(services: Services, _: Caller, __: Inbound) -> func.HttpResponse:
        return web.json_response(listed(services))

    return web.handle(req, run)


@bp.route(route="connections", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def add_connection(req: func.HttpRequest) -> func.HttpResponse:
    """Add a ServiceNow instance (admin): 201 with where to connect it; its client secret is kept, never shown."""
    from oauth_callback.connections import add_connection as added
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        shown = added(services, inbound.json, caller.user or caller.principal)
        return web.json_response(shown, 201, {"Location": f"/api/connections/{shown['id']}"})

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(8192))


@bp.route(route="connections/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
def remove_connection(req: func.HttpRequest) -> func.HttpResponse:
    """Remove an added connection (admin): its tokens revoked, its secret forgotten; refused while in use."""
    from oauth_callback.connections import remove_connection as removed
    from shared import web
    from shared.auth import ROLE_ADMIN

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        return web.json_response(removed(services, req.route_params.get("id", ""), force=web.flag(inbound, "force")))

    return web.handle(req, run, role=ROLE_ADMIN)
