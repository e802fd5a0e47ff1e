"""The app as the worker indexes it: names, triggers, routes, methods, auth levels, parameter names."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from typing import Any

from tests.conftest import ROOT

EXPECTED_HTTP = {
    "connect": ("connect", ["GET"], "ANONYMOUS"),
    "oauth_callback": ("oauth/callback", ["GET"], "ANONYMOUS"),
    "provisioning": ("provisioning", ["GET"], "ANONYMOUS"),
    "disconnect": ("disconnect", ["POST"], "ANONYMOUS"),
    "create_ticket": ("tickets", ["POST"], "ANONYMOUS"),
    "get_ticket": ("tickets/{id}", ["GET"], "ANONYMOUS"),
    "list_tickets": ("tickets", ["GET"], "ANONYMOUS"),
    "servicenow_events": ("servicenow/events", ["POST"], "ANONYMOUS"),
    "recommendations": ("recommendations", ["GET"], "ANONYMOUS"),
    "refresh_recommendations": ("recommendations/refresh", ["POST"], "ANONYMOUS"),
    "me": ("me", ["GET"], "ANONYMOUS"),
    "portal": ("portal", ["GET"], "ANONYMOUS"),
    "portal_static": ("portal/static/{name}", ["GET"], "ANONYMOUS"),
    "list_tenants": ("tenants", ["GET"], "ANONYMOUS"),
    "add_tenant": ("tenants", ["POST"], "ANONYMOUS"),
    "remove_tenant": ("tenants/{id:guid}", ["DELETE"], "ANONYMOUS"),
    "rename_tenant": ("tenants/{id:guid}", ["PATCH"], "ANONYMOUS"),
    "tenant_consent": ("tenants/consent", ["GET"], "ANONYMOUS"),
    "tenant_review": ("tenants/{id}/review", ["GET"], "ANONYMOUS"),
    "list_connections": ("connections", ["GET"], "ANONYMOUS"),
    "add_connection": ("connections", ["POST"], "ANONYMOUS"),
    "remove_connection": ("connections/{id}", ["DELETE"], "ANONYMOUS"),
    "get_routes": ("routes", ["GET"], "ANONYMOUS"),
    "put_routes": ("routes", ["PUT"], "ANONYMOUS"),
    "preview_routes": ("routes/preview", ["POST"], "ANONYMOUS"),
    "lookup_names": ("connections/{id}/lookup", ["GET"], "ANONYMOUS"),
    "list_templates": ("templates", ["GET"], "ANONYMOUS"),
    "create_template": ("templates", ["POST"], "ANONYMOUS"),
    "get_template": ("templates/{id}", ["GET"], "ANONYMOUS"),
    "put_template": ("templates/{id}", ["PUT"], "ANONYMOUS"),
    "delete_template": ("templates/{id}", ["DELETE"], "ANONYMOUS"),
    "preview_template": ("templates/{id}/preview", ["POST"], "ANONYMOUS"),
    "apply_template": ("templates/{id}/apply", ["POST"], "ANONYMOUS"),
    "template_apply_progress": ("templates/{id}/applies/{run}", ["GET"], "ANONYMOUS"),
}


def _trigger(function: Any) -> dict[str, Any]:
    bindings = json.loads(function.get_function_json())["bindings"]
    return next(b for b in bindings if b["direction"] == "IN" and b["type"].endswith("Trigger"))


def test_every_function_is_indexed_with_its_trigger_route_methods_and_auth_level(indexed_functions):
    assert set(indexed_functions) == {*EXPECTED_HTTP, "status_sync", "secure_score_sync", "tenant_confirmation",
                                      "secure_score_tenant", "status_sync_connection", "templates_endings",
                                      "templates_apply_tenant"}  # fmt: skip
    for name, (route, methods, auth_level) in EXPECTED_HTTP.items():
        trigger = _trigger(indexed_functions[name])
        assert trigger["type"] == "httpTrigger"
        assert trigger["route"] == route
        assert trigger["methods"] == methods
        assert trigger["authLevel"] == auth_level


def test_the_status_sync_timer(indexed_functions):
    function = indexed_functions["status_sync"]
    trigger = _trigger(function)
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%STATUS_SYNC_SCHEDULE%"
    assert trigger["runOnStartup"] is False
    assert trigger["useMonitor"] is True
    retry = function.get_settings_dict("retry_policy")
    assert retry["strategy"] == "exponential_backoff" and retry["max_retry_count"] == "3"
    assert retry["minimum_interval"] == "00:00:30" and retry["maximum_interval"] == "00:05:00"


def test_the_secure_score_timer(indexed_functions):
    function = indexed_functions["secure_score_sync"]
    trigger = _trigger(function)
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%SECURE_SCORE_SCHEDULE%"
    assert trigger["runOnStartup"] is False and trigger["useMonitor"] is True
    retry = function.get_settings_dict("retry_policy")
    assert retry["strategy"] == "exponential_backoff" and retry["max_retry_count"] == "3"


def test_the_tenant_confirmation_timer(indexed_functions):
    """Every 30 s, with a literal schedule (no app setting to deploy) and no schedule monitor (sub-minute)."""
    trigger = _trigger(indexed_functions["tenant_confirmation"])
    assert trigger["type"] == "timerTrigger" and trigger["schedule"] == "*/30 * * * * *"
    assert trigger["runOnStartup"] is False and trigger["useMonitor"] is False


def test_the_templates_endings_timer(indexed_functions):
    """Every hour, with a literal schedule (no app setting to deploy), watched by the schedule monitor."""
    trigger = _trigger(indexed_functions["templates_endings"])
    assert trigger["type"] == "timerTrigger" and trigger["schedule"] == "0 0 * * * *"
    assert trigger["runOnStartup"] is False and trigger["useMonitor"] is True


def test_the_secure_score_queue_function(indexed_functions):
    """One tenant's refresh per message of `secure-score-refresh`, on the app's storage (identity-based in Azure:
    AzureWebJobsStorage__queueServiceUri), with host.json's retries and poison queue."""
    trigger = _trigger(indexed_functions["secure_score_tenant"])
    assert trigger["type"] == "queueTrigger" and trigger["queueName"] == "secure-score-refresh"
    assert trigger["connection"] == "AzureWebJobsStorage"


def test_the_status_sync_queue_function(indexed_functions):
    """One connection's sync per message of `status-sync`, on the app's storage, with host.json's retries and
    poison queue."""
    trigger = _trigger(indexed_functions["status_sync_connection"])
    assert trigger["type"] == "queueTrigger" and trigger["queueName"] == "status-sync"
    assert trigger["connection"] == "AzureWebJobsStorage"


def test_the_template_apply_queue_function(indexed_functions):
    """One tenant's apply per message of `template-apply`, on the app's storage, with host.json's retries and poison
    queue."""
    trigger = _trigger(indexed_functions["templates_apply_tenant"])
    assert trigger["type"] == "queueTrigger" and trigger["queueName"] == "template-apply"
    assert trigger["connection"] == "AzureWebJobsStorage"


def test_python_parameter_names_equal_binding_names(indexed_functions):
    for name, function in indexed_functions.items():
        parameters = set(inspect.signature(function.get_user_function()).parameters) - {"context"}
        bindings = {b.name for b in function.get_bindings() if b.name != "$return"}
        assert parameters == bindings, name


def test_every_function_module_uses_script_file_function_app(indexed_functions):
    for function in indexed_functions.values():
        assert json.loads(function.get_function_json())["scriptFile"] == "function_app.py"


def test_importing_the_app_does_no_io_and_imports_only_the_function_modules():
    """Cold start: importing function_app, in a fresh interpreter, reads no settings or files and adds nothing to
    what azure.functions imports but the function modules themselves: no httpx, tenacity, azure-identity, Key
    Vault, Tables, azure-core, JWT, telemetry, sqlite, nor anything of `shared` (each function imports what it
    needs on its first call)."""
    code = (
        "import os, sys, json, builtins\n"
        "opened = []\n"
        "real_open = builtins.open\n"
        "import azure.functions\n"
        "before = set(sys.modules)\n"
        "builtins.open = lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1]\n"
        "os.environ.clear()\n"
        "import function_app\n"
        "added = sorted(set(sys.modules) - before)\n"
        "print(json.dumps([added, [f for f in opened if 'site-packages' not in f and 'lib/python' not in f]]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    added, opened = json.loads(result.stdout)
    assert added == ["create_ticket", "create_ticket.routing", "function_app", "oauth_callback", "portal",
                     "provisioning", "reviews", "secure_score", "status_sync", "templates"]  # fmt: skip
    assert opened == []
    heavy = ("httpx", "tenacity", "azure.identity", "azure.keyvault", "azure.data", "azure.core", "azure.monitor",
             "opentelemetry", "jwt", "sqlite3", "shared")  # fmt: skip
    assert not [m for m in added if m.startswith(heavy)]
