"""The Functions entry point: registers the blueprints and nothing else (no settings, no I/O)."""

from __future__ import annotations

import azure.functions as func

from create_ticket import bp as create_ticket_bp
from create_ticket.routing import bp as routing_bp
from oauth_callback import bp as oauth_callback_bp
from portal import bp as portal_bp
from provisioning import bp as provisioning_bp
from reviews import bp as reviews_bp
from secure_score import bp as secure_score_bp
from status_sync import bp as status_sync_bp
from templates import bp as templates_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)  # the app checks every caller itself
app.register_functions(oauth_callback_bp)
app.register_functions(provisioning_bp)
app.register_functions(create_ticket_bp)
app.register_functions(routing_bp)
app.register_functions(status_sync_bp)
app.register_functions(secure_score_bp)
app.register_functions(templates_bp)
app.register_functions(reviews_bp)
app.register_functions(portal_bp)
