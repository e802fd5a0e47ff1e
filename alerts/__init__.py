"""Score alerts (docs/alerts.md): `GET /api/alerts` (any reader) and `PUT /api/alerts` (Connector.Admin, If-Match),
the rules a refresh checks each tenant's score against; a crossing becomes one ticket per episode
(alerts/engine.py, called by secure_score/refresh.py through alerts/api.py).

Nothing from `shared` is imported at module level: a cold start pays only for azure.functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.services import Services

bp = func.Blueprint()

ALERTS_BODY = 512 * 1024  # a little over what one store document holds (beyond it: 413 document_too_large)


@bp.route(route="alerts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_alerts(req: func.HttpRequest) -> func.HttpResponse:
    """The alerts and their version, also the ETag a PUT names in If-Match, and each alert's episodes not over or
    failing (any reader)."""
    from alerts.episodes_view import episodes
    from alerts.saving import etag_header, load, shown
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        saved = load(services.store)
        listed, left_out = episodes(services, saved.alerts)
        answer = {**shown(saved), "episodes": listed, "episodesLeftOut": left_out}
        return web.json_response(answer, headers=etag_header(saved))

    return web.handle(req, run)


@bp.route(route="alerts", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
def put_alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Replace the whole list, guarded by If-Match (Connector.Admin): 428 without it, 412 with an older version."""
    from alerts.saving import etag_header, save, shown
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        saved = save(services, inbound.json, inbound.header("If-Match"), caller.user or caller.principal)
        return web.json_response(shown(saved), headers=etag_header(saved))

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(ALERTS_BODY))
