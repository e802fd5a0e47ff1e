"""Reviews: a tenant's quarterly review as JSON (docs/api.md#a-tenants-review), from the stored snapshot and tickets,
never waiting for Microsoft Graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.services import Services

bp = func.Blueprint()


@bp.route(route="tenants/{id}/review", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def tenant_review(req: func.HttpRequest) -> func.HttpResponse:
    """One tenant's review (`home` names the home tenant) for `from`..`to` (default: the last 90 days)."""
    from reviews.api import review
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        return web.json_response(review(services, req.route_params.get("id", ""), inbound.params))

    return web.handle(req, run)
