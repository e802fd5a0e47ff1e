"""Status sync: the timer that brings ServiceNow changes back, and the endpoint for pushed change notices."""

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


@bp.timer_trigger(arg_name="timer", schedule="%STATUS_SYNC_SCHEDULE%", run_on_startup=False, use_monitor=True)
@bp.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:00:30", maximum_interval="00:05:00")
def status_sync(timer: func.TimerRequest) -> None:
    """Incremental sync from the watermark, per ServiceNow connection (from FANOUT_THRESHOLD connections, one
    queued message each). A run in which every connection failed raises, so the retry policy runs it again."""
    from shared.services import get_services
    from status_sync.every import sync_or_queue

    if timer.past_due:
        log.info("The status sync is past due (the app was idle or restarting); it resumes from its watermark")
    sync_or_queue(get_services())


# From FANOUT_THRESHOLD connections, the timer queues one message per connection, and this function syncs that
# connection on whichever instance the host runs it (docs/architecture.md#fan-out-on-storage-queues).
@bp.queue_trigger(arg_name="msg", queue_name="status-sync", connection="AzureWebJobsStorage")
def status_sync_connection(msg: func.QueueMessage) -> None:
    """One connection's sync; a failure raises, so the host tries the message again, then moves it to the poison
    queue (host.json extensions.queues)."""
    from shared.services import get_services
    from status_sync.queued import sync_queued

    sync_queued(get_services(), msg.get_body(), msg.dequeue_count or 1, msg.id or "")


@bp.route(route="servicenow/events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def servicenow_events(req: func.HttpRequest) -> func.HttpResponse:
    """A change notice from a ServiceNow business rule (docs/status-sync.md: Push notices); `?connection=` names
    the connection whose key signed it (none: the default connection)."""
    from shared import web
    from shared.edge import Body
    from status_sync.events import MAX_NOTICE, apply_notice, verify

    def run(services: Services, _: Caller, inbound: Inbound) -> func.HttpResponse:
        outcome = apply_notice(*verify(services, inbound))
        return web.json_response({"result": outcome}, 202 if outcome == "unknown" else 200)

    return web.handle(
        req, run, authenticate=False, body=Body(MAX_NOTICE)
    )  # signed by ServiceNow (HMAC), not by Entra ID
