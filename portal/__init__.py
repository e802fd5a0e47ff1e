"""The security center page (docs/design.md#portal-and-sign-in): one HTML page, its stylesheet and its scripts, ES
modules loaded from one entry module (docs/portal.md#how-the-page-is-built), all static files of the app (no build
step, no CDN). The page is a client of the public API and nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.problems import ConnectorError
    from shared.services import Services

bp = func.Blueprint()


@bp.route(route="portal", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal(req: func.HttpRequest) -> func.HttpResponse:
    """The admin's page, for any signed-in user (what they may do follows their roles)."""
    from portal.page import page_response
    from shared import web

    def failed(error: ConnectorError) -> func.HttpResponse:
        return web.html_page(error.title, [error.detail, error.remediation or ""], error.status)

    return web.handle(req, lambda services, caller, inbound: page_response(), on_error=failed)


@bp.route(route="portal/static/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_static(req: func.HttpRequest) -> func.HttpResponse:
    """The page's stylesheet and scripts (an allow-list of names: nothing else is ever read)."""
    from portal.page import static_response
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        return static_response(req.route_params.get("name", ""))

    return web.handle(req, run)
