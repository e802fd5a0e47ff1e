"""SERVICENOW_INSTANCE and the other settings: strict validation, and no request to an unvalidated host."""

from __future__ import annotations

import json

import pytest

from shared.config import InvalidSetting, load_settings, parse_instance
from tests.conftest import settings_env

VALID = {
    "contoso": "https://contoso.service-now.com",
    "Contoso-Dev1": "https://contoso-dev1.service-now.com",
    "https://contoso.service-now.com": "https://contoso.service-now.com",
    "https://contoso.service-now.com/": "https://contoso.service-now.com",
    "https://CONTOSO.service-now.com": "https://contoso.service-now.com",
    "https://itsm.contoso.com": "https://itsm.contoso.com",
    "https://contoso.servicenowservices.com": "https://contoso.servicenowservices.com",
    "https://xn--bcher-kva.example.com": "https://xn--bcher-kva.example.com",
    "http://127.0.0.1:8080": "http://127.0.0.1:8080",
    "http://localhost:7072": "http://localhost:7072",
    "http://[::1]:7072": "http://[::1]:7072",
}

HOSTILE = [
    "127.0.0.1",
    "https://127.0.0.1",
    "https://10.0.0.5",
    "https://[::1]",
    "https://169.254.169.254",
    "a.service-now.com.evil.com",
    "https://a.service-now.com.evil.com",
    "https://contoso.servicenowservices.com.attacker.net",
    "https://user:pass@contoso.service-now.com",
    "https://contoso.service-now.com@evil.com",
    "https://evil.com#@contoso.service-now.com",
    "https://evil.com#",
    "https://contoso.service-now.com/api",
    "https://contoso.service-now.com/../evil",
    "https://contoso.service-now.com?x=1",
    "https://contoso%2eservice-now.com",
    "https://contoso.service-now.com%2e.evil.com",
    "%2e%2e",
    "https://bücher.example.com",
    "bücher",
    "https://контора.service-now.com",
    "javascript:alert(1)",
    "javascript://contoso.service-now.com",
    "file:///etc/passwd",
    "ftp://contoso.service-now.com",
    "http://contoso.service-now.com",
    "http://evil.com",
    "https://contoso.service-now.com:abc",
    "https://",
    "https://contoso service-now.com",
    "https://contoso.service-now.com\\@evil.com",
    "contoso.service-now.com",
    "-contoso",
    "contoso_",
    "a" * 64,
    "https://contoso.service-now.com\r\nX-Injected: 1",
    "",
    "   ",
]


@pytest.mark.parametrize(("value", "expected"), VALID.items())
def test_valid_instances_become_base_urls(value, expected):
    assert parse_instance(value) == expected


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_instances_are_rejected_with_a_clear_message(value):
    with pytest.raises(InvalidSetting) as raised:
        parse_instance(value)
    assert len(str(raised.value)) > 10


@pytest.mark.parametrize("value", HOSTILE)
def test_no_request_leaves_for_an_unvalidated_instance(value, harness, tmp_path):
    from shared import services as services_module
    from tests.conftest import build_services

    services = build_services(tmp_path, harness.transport, harness.clock, harness.sleeps, SERVICENOW_INSTANCE=value)
    services_module.install(services)
    connect = harness.call("connect", path="/connect")
    provisioning = harness.call("provisioning", path="/provisioning", params={"live": "true"})
    disconnect = harness.call("disconnect", "POST", "/disconnect")
    assert connect.status_code == 503
    assert json.loads(connect.get_body())["code"] == "not_configured"
    assert "SERVICENOW_INSTANCE" in json.loads(connect.get_body())["detail"]
    assert json.loads(provisioning.get_body())["state"] == "not_configured"
    assert disconnect.status_code == 503
    assert harness.transport.sent == []


def test_missing_settings_are_all_named():
    settings = load_settings({})
    named = {issue.setting for issue in settings.issues}
    assert {"SERVICENOW_INSTANCE", "SERVICENOW_CLIENT_ID", "OAUTH_REDIRECT_URI"} <= named


@pytest.mark.parametrize("marker", ["WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"])
def test_redirect_uri_defaults_to_the_function_app_host_in_azure(marker):
    env = {k: v for k, v in settings_env().items() if k not in ("OAUTH_REDIRECT_URI", "TICKET_STORE")}
    settings = load_settings({**env, "WEBSITE_HOSTNAME": "func-abc.azurewebsites.net", marker: "func-abc"})
    assert settings.in_azure
    assert settings.redirect_uri == "https://func-abc.azurewebsites.net/api/oauth/callback"
    assert settings.ticket_store == "tables"
    assert "https://func-abc.azurewebsites.net" in settings.app_origins


def test_website_hostname_alone_is_not_azure_core_tools_sets_it_locally():
    """`func start` sets WEBSITE_HOSTNAME=localhost:{port} (azure-functions-core-tools StartHostAction)."""
    env = {k: v for k, v in settings_env().items() if k not in ("OAUTH_REDIRECT_URI", "TICKET_STORE")}
    settings = load_settings({**env, "WEBSITE_HOSTNAME": "localhost:7071"})
    assert not settings.in_azure
    assert settings.ticket_store == "sqlite"
    assert settings.redirect_uri is None and "OAUTH_REDIRECT_URI" in {i.setting for i in settings.issues}
    assert settings.app_origins == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVICENOW_TABLE", "incident; drop"),
        ("SERVICENOW_FIELD_MAP", "[1, 2]"),
        ("SERVICENOW_FIELD_MAP", "{not json"),
        ("SERVICENOW_FIELD_MAP", '{"description": "description\\n"}'),  # a name is all of the value, no newline after
        ("OAUTH_REDIRECT_URI", "http://connector.example.net/api/oauth/callback"),
        ("KEY_VAULT_URL", "http://vault"),
        ("TICKET_STORE", "postgres://x"),
        ("SERVICENOW_REFRESH_TOKEN_LIFESPAN", "-1"),
        ("SERVICENOW_IN_DOUBT_SECONDS", "0"),
        ("SERVICENOW_IN_DOUBT_SECONDS", "3601"),
        ("SERVICENOW_IN_DOUBT_SECONDS", "90.5"),
        ("SERVICENOW_IN_DOUBT_SECONDS", "\u0661\u0662\u0660"),  # Arabic-Indic digits are not ASCII digits
        ("SERVICENOW_IN_DOUBT_SECONDS", "two minutes"),
    ],
)
def test_other_invalid_settings_are_reported(name, value):
    settings = load_settings(settings_env(**{name: value}))
    assert [issue.setting for issue in settings.issues] == [name]


def test_the_in_doubt_window_defaults_to_two_minutes_and_takes_whole_seconds():
    assert load_settings(settings_env()).in_doubt_seconds == 120
    settings = load_settings(settings_env(SERVICENOW_IN_DOUBT_SECONDS="300"))
    assert settings.in_doubt_seconds == 300 and settings.issues == ()
    refused = load_settings(settings_env(SERVICENOW_IN_DOUBT_SECONDS="0"))
    assert refused.in_doubt_seconds == 120  # an invalid value is named in provisioning, never half-used
    assert [i.message for i in refused.issues] == ["must be a number of seconds from 1 to 3600"]
