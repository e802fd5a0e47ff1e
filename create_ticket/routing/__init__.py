"""Where tickets go (docs/routes.md): the ordered rules, the one decision a create and a preview share, their
validation, the names found in ServiceNow, saving under a version, and the preview. Its HTTP functions: GET /api/routes,
PUT /api/routes, POST /api/routes/preview, and the names a rule can give, GET /api/connections/{id}/lookup
(docs/design.md#connections-and-routes).

Nothing from `shared` is imported at module level: a cold start pays only for azure.functions, and each
function imports what it needs on its first call (docs/design.md#layout-and-ownership).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.auth import Caller
    from shared.edge import Inbound
    from shared.services import Services

bp = func.Blueprint()

ROUTES_BODY = 1024 * 1024  # 200 rules with their patterns, tenants and fields fit well inside


@bp.route(route="routes", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_routes(req: func.HttpRequest) -> func.HttpResponse:
    """The ordered rules, as saved, with the version a PUT must name (any reader)."""
    from create_ticket.routing.document import load
    from create_ticket.routing.saving import etag_header, shown
    from shared import web

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        saved = load(services.store)
        return web.json_response(shown(saved), headers=etag_header(saved))

    return web.handle(req, run)


@bp.route(route="routes", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
def put_routes(req: func.HttpRequest) -> func.HttpResponse:
    """Replace the whole list, guarded by If-Match (Connector.Admin)."""
    from create_ticket.routing.saving import etag_header, save, shown, with_notes
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body
    from shared.problems import FieldError

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        notes: list[FieldError] = []
        saved = save(services, inbound.json, inbound.header("If-Match"), caller.user or caller.principal, notes)
        return web.json_response(with_notes(shown(saved), notes), headers=etag_header(saved))

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(ROUTES_BODY))


@bp.route(route="routes/preview", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def preview_routes(req: func.HttpRequest) -> func.HttpResponse:
    """Where each open recommendation's ticket would go under a proposed list; nothing saved (Connector.Admin)."""
    from create_ticket.routing.preview import preview
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        return web.json_response(preview(services, inbound.json))

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(ROUTES_BODY))


@bp.route(route="connections/{id}/lookup", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def lookup_names(req: func.HttpRequest) -> func.HttpResponse:
    """The active groups or companies of a connection's instance whose name contains `prefix`, at most 20: the rule
    editor's suggestions (Connector.Admin)."""
    from create_ticket.routing.names import lookup
    from shared import web
    from shared.auth import ROLE_ADMIN

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        found = lookup(services, req.route_params.get("id", ""), inbound.params.get("table"),
                       inbound.params.get("prefix"))  # fmt: skip
        return web.json_response(found)

    return web.handle(req, run, role=ROLE_ADMIN)
