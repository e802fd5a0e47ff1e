"""The ticket routes (POST /api/tickets, GET /api/tickets, GET /api/tickets/{id}): see issue 3."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()
