"""Posture templates (docs/templates.md): one decision (a state and a comment) for a set of Secure Score controls in
many tenants, previewed, applied exactly once per change, recorded, and watched for drift. Its HTTP functions:
GET/POST /api/templates, GET/PUT/DELETE /api/templates/{id}, POST /api/templates/{id}/preview and
POST /api/templates/{id}/apply (docs/design.md, section 17), and the hourly `templates_endings` timer.

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


# Every hour, on the hour (a literal schedule, as `tenant_confirmation`'s: no setting to deploy). An exception ends
# at most an hour after its `until`; an `all` template reaches a tenant at most an hour after its consent completes.
@bp.timer_trigger(arg_name="timer", schedule="0 0 * * * *", run_on_startup=False, use_monitor=True)
def templates_endings(timer: func.TimerRequest) -> None:
    """End the exceptions whose end has come (their tickets where a route matches), and apply each template applied
    to `all` to the tenants added since (docs/templates.md#exceptions-that-end)."""
    from shared.services import get_services
    from templates.hourly import run

    run(get_services())


TEMPLATE_BODY = 256 * 1024  # 500 control ids, 2,000 tenant ids and a comment fit well inside
APPLY_BODY = 1024


@bp.route(route="templates", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def list_templates(req: func.HttpRequest) -> func.HttpResponse:
    """Every template, without its drift and endings (any reader): one store read, whatever the tenants; each with
    its last apply's counts (`lastApply`)."""
    from shared import web
    from templates.saving import load_all
    from templates.shown import shown

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        saved = sorted(load_all(services.store).values(), key=lambda t: (t.name.lower(), t.id))
        return web.json_response({"templates": [shown(services, t, detail=False) for t in saved]})

    return web.handle(req, run)


@bp.route(route="templates", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def create_template(req: func.HttpRequest) -> func.HttpResponse:
    """A new template, checked against every other (Connector.Admin)."""
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body
    from templates.saving import etag_header, save
    from templates.shown import shown

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        template = save(services, inbound.json, caller.user or caller.principal)
        headers = {**etag_header(template), "Location": f"/api/templates/{template.id}"}
        return web.json_response(shown(services, template), 201, headers)

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(TEMPLATE_BODY))


@bp.route(route="templates/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_template(req: func.HttpRequest) -> func.HttpResponse:
    """One template with its version, last apply, drift and endings (any reader)."""
    from shared import web
    from templates.saving import etag_header, find
    from templates.shown import shown

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        template = find(services.store, req.route_params.get("id", ""))
        return web.json_response(shown(services, template, snapshots=True), headers=etag_header(template))

    return web.handle(req, run)


@bp.route(route="templates/{id}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
def put_template(req: func.HttpRequest) -> func.HttpResponse:
    """Replace a template, guarded by If-Match (Connector.Admin)."""
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body
    from templates.saving import etag_header, save
    from templates.shown import shown

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        template_id = req.route_params.get("id", "")
        template = save(
            services, inbound.json, caller.user or caller.principal, template_id, inbound.header("If-Match")
        )
        return web.json_response(shown(services, template), headers=etag_header(template))

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(TEMPLATE_BODY))


@bp.route(route="templates/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
def delete_template(req: func.HttpRequest) -> func.HttpResponse:
    """Remove a template and its records, guarded by If-Match (Connector.Admin). What it wrote in Secure Score
    stays: a person's decision is undone by a person."""
    from shared import web
    from shared.auth import ROLE_ADMIN
    from templates.fanout import forget_runs
    from templates.hourly import summarize
    from templates.saving import delete

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        delete(services, req.route_params.get("id", ""), inbound.header("If-Match"))
        summarize(services)
        forget_runs(services.store, req.route_params.get("id", ""))  # its queued applies' progress too
        return web.no_content()

    return web.handle(req, run, role=ROLE_ADMIN)


@bp.route(route="templates/{id}/preview", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def preview_template(req: func.HttpRequest) -> func.HttpResponse:
    """Per tenant and control, the state now and after, and the `version` previewed (also the ETag: the apply sends
    it in If-Match); nothing written (Connector.Admin). The body is the apply's: `{"overwriteDrift": true}` previews
    what that apply would set back."""
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body
    from templates.applying import preview
    from templates.saving import etag_header, find, version_of
    from templates.shown import apply_options

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        template = find(services.store, req.route_params.get("id", ""))
        overwrite = apply_options(inbound.raw, inbound.json)
        version = version_of(template)
        answer = {"version": version, **preview(services, template, version, overwrite).preview_json()}
        return web.json_response(answer, headers=etag_header(template))

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(APPLY_BODY, required=False))


@bp.route(route="templates/{id}/apply", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def apply_template(req: func.HttpRequest) -> func.HttpResponse:
    """Write the template's state in each tenant where it changes (Connector.Admin); from FANOUT_THRESHOLD tenants,
    202 with the run's progress URL: one queue message per tenant (templates/fanout.py). With `If-Match` (the version
    a preview answered), only that version is written: another is 412 with the current template."""
    from shared import web
    from shared.auth import ROLE_ADMIN
    from shared.edge import Body
    from templates.applying import apply, tenants_of
    from templates.fanout import apply_rest, enqueue
    from templates.hourly import summarize
    from templates.saving import check_if_match, find, note_applied, version_of
    from templates.shown import apply_options

    def run(services: Services, caller: Caller, inbound: Inbound) -> func.HttpResponse:
        template = find(services.store, req.route_params.get("id", ""))
        if_match = inbound.header("If-Match")
        if if_match is not None and if_match.strip() != "*":
            check_if_match(if_match, template, "apply")
        overwrite = apply_options(inbound.raw, inbound.json)
        by = caller.user or caller.principal
        at = services.clock().isoformat()
        version = version_of(template)
        queued, rest = enqueue(services, template, version, tenants_of(services, template), by, overwrite)
        if queued is None:
            outcome = apply(services, template, version, by, overwrite)
            counts = {"applied": outcome.applied, "unchanged": outcome.unchanged, "failed": len(outcome.failed),
                      "drifted": len(outcome.drifted)}  # fmt: skip
            note_applied(services, template, version, at, by, counts)
            summarize(services)  # what ends soon, per tenant, for GET /api/tenants
            return web.json_response(outcome.applied_json())
        apply_rest(services, template, version, queued, rest, by, overwrite)  # those the queue did not take
        # What ends soon: the hourly run sums the queued tenants' records; the run's progress has the counts.
        note_applied(services, template, version, at, by, {"queued": queued.queued})
        return web.json_response(queued.to_json(), 202, {"Location": queued.progress})

    return web.handle(req, run, role=ROLE_ADMIN, body=Body(APPLY_BODY, required=False))


@bp.route(route="templates/{id}/applies/{run}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def template_apply_progress(req: func.HttpRequest) -> func.HttpResponse:
    """A queued apply's progress, from its tenants' outcomes (any reader)."""
    from shared import web
    from templates.queued import progress
    from templates.saving import find

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        template = find(services.store, req.route_params.get("id", ""))
        return web.json_response(progress(services, template.id, req.route_params.get("run", "")))

    return web.handle(req, run)


# From FANOUT_THRESHOLD tenants, an apply queues one message per tenant, and this function applies that tenant on
# whichever instance the host runs it (docs/templates.md#many-tenants-the-apply-goes-out-on-a-queue).
@bp.queue_trigger(arg_name="msg", queue_name="template-apply", connection="AzureWebJobsStorage")
def templates_apply_tenant(msg: func.QueueMessage) -> None:
    """One tenant's apply; a failure another try may fix raises, so the host tries the message again, then moves it
    to the poison queue (host.json extensions.queues)."""
    from shared.services import get_services
    from templates.queued import apply_queued

    apply_queued(get_services(), msg.get_body(), msg.dequeue_count or 1)
