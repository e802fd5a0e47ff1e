"""Provisioning: is everything healthy, and if not, exactly what to fix (`GET /api/provisioning`), and who the
caller is (`GET /api/me`). The checks of every part live here: the ServiceNow connections', the Microsoft
tenants', Secure Score's and the status sync's (docs/api.md, Provisioning).

Nothing from `shared` is imported at module level (cold start: docs/design.md#layout-and-ownership); each function
imports what it needs on its first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.services import Services

bp = func.Blueprint()


@bp.route(route="provisioning", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def provisioning(req: func.HttpRequest) -> func.HttpResponse:
    """Health and what to fix, for any signed-in user; `?live=true` also asks ServiceNow and Graph (admins)."""
    from provisioning.status import provisioning_status
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.connections import DEFAULT

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        live = web.flag(inbound, "live")
        if live:
            caller.require(ROLE_ADMIN)
        connection = services.connection_named(inbound.params.get("connection", DEFAULT))
        return web.json_response(provisioning_status(services.for_connection(connection), live=live))

    return web.handle(req, run)


@bp.route(route="me", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def me(req: func.HttpRequest) -> func.HttpResponse:
    """The signed-in user and their app roles (the portal shows admins' and creators' controls by them)."""
    from shared import web

    def run(services: Services, caller: Caller, _: Inbound) -> func.HttpResponse:
        return web.json_response({"user": caller.user, "roles": sorted(caller.roles)})

    return web.handle(req, run)
