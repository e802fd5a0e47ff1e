"""The status sync timer (and later the ServiceNow push endpoint): see issue 4."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()
