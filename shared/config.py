"""Settings: read once, lazily, from the environment (app settings in Azure), and validated strictly.

Invalid settings never raise at import or load time: they are collected as `issues`, so
`/api/provisioning` can say exactly what to fix while every other route answers `not_configured`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shared.fieldmap import SERVICENOW_NAME, FieldMap, parse_field_map
from shared.text import ascii_int

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]", "::1"}
_SERVICENOW_SUFFIXES = ("service-now.com", "servicenowservices.com")
_URL_FORBIDDEN = re.compile(r"[\s\\%@#?<>\"'`^{}|\x00-\x1f\x7f]")
_NUMBER = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")  # a label an IPv4 parser takes as a number (decimal, octal, hex)
_HEXISH = re.compile(r"^(?:0x)?[0-9a-f]+$")  # a label of digits and hex letters only

DEFAULT_TABLE = "incident"
DEFAULT_SCHEDULE = "0 */5 * * * *"
DEFAULT_REFRESH_LIFESPAN = 8_640_000  # ServiceNow's default: 100 days
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
DEFAULT_SECURE_SCORE_SCHEDULE = "0 0 */4 * * *"
DEFAULT_TENANT_PARALLELISM = 8
# From this many tenants due, the Secure Score refresh goes out on a Storage queue, one message per tenant
# (docs/architecture.md#fan-out-on-storage-queues); below it, the timer does the work itself.
DEFAULT_FANOUT_THRESHOLD = 20
# A POST with no answer may still commit until ServiceNow's REST Table API quota rule cancels it (60 s by default:
# https://www.servicenow.com/docs/r/yokohama/platform-administration/platform-performance/c_DefaultQuotaRules.html).
DEFAULT_IN_DOUBT_SECONDS = 120
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class InvalidSetting(ValueError):
    """A setting's value is unusable; the message says why and what a valid value looks like."""


@dataclass(frozen=True)
class SettingIssue:
    setting: str
    message: str


def _check_host(host: str, *, allow_loopback: bool) -> None:
    if not host:
        raise InvalidSetting("the URL has no host name")
    if host in _LOOPBACK_NAMES:
        if allow_loopback:
            return
        raise InvalidSetting(f"'{host}' is a loopback address, not a ServiceNow instance")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidSetting(f"'{host}' is an IP address; use the instance's DNS name")
    if not host.isascii():
        raise InvalidSetting("the host name has non-ASCII characters; use its ASCII (punycode) form")
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or len(host) > 253:
        raise InvalidSetting(f"'{host}' is not a valid DNS host name")
    # Resolvers read `127.1`, `0x7f.1`, `10.5` or `169.254.43518` as IP addresses (inet_aton; a URL host whose last
    # label is a number is IPv4 to the WHATWG URL standard), so a name made of numbers is refused as an IP literal is.
    if _NUMBER.match(labels[-1]) or all(_HEXISH.match(label) for label in labels):
        raise InvalidSetting(f"'{host}' is made of numbers, which resolvers read as an IP address; use the instance's "
                             "DNS name")  # fmt: skip
    for suffix in _SERVICENOW_SUFFIXES:
        marker = "." + suffix + "."
        if marker in "." + host + "." and not host.endswith("." + suffix):
            raise InvalidSetting(
                f"'{host}' contains '{suffix}' but is not a {suffix} host; a ServiceNow instance is '<name>.{suffix}'"
            )


def parse_instance(value: str) -> str:
    """Return the instance base URL (`https://contoso.service-now.com`) or raise `InvalidSetting`.

    An instance name is one DNS label; a URL has no path, query, userinfo or fragment; `http://` only
    for loopback hosts (tests and the simulator). Nothing is ever requested from a value that fails here.
    """
    raw = value.strip()
    if not raw:
        raise InvalidSetting("it is empty")
    if "://" not in raw:
        name = raw.lower()
        if not _LABEL.match(name):
            raise InvalidSetting(
                f"'{raw}' is not an instance name (one DNS label such as 'contoso') "
                "or a URL such as 'https://contoso.service-now.com'"
            )
        return f"https://{name}.service-now.com"
    if _URL_FORBIDDEN.search(raw):
        raise InvalidSetting(
            "the URL contains a character that has no place in an instance URL "
            "(whitespace, '%', '@', '#', '?', '\\' or a control character)"
        )
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidSetting(f"the scheme '{parts.scheme}' is not allowed; use https://")
    if parts.username is not None or parts.password is not None:
        raise InvalidSetting("the URL must not carry a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidSetting("the URL must be only scheme and host, e.g. https://contoso.service-now.com")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidSetting("the URL has an invalid port") from exc
    loopback = host in _LOOPBACK_NAMES
    if scheme == "http" and not loopback:
        raise InvalidSetting("http:// is allowed only for loopback hosts; use https://")
    _check_host(host, allow_loopback=loopback and scheme == "http")
    netloc = f"[{host}]" if host == "::1" else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def parse_graph_url(value: str) -> str:
    """Microsoft Graph's base URL (sovereign clouds have their own): https, or http on loopback (the simulator);
    scheme and host only."""
    raw = value.strip().rstrip("/")
    if _URL_FORBIDDEN.search(raw):
        raise InvalidSetting("the URL contains a character that has no place in a base URL")
    parts = urlsplit(raw)
    host = (parts.hostname or "").lower()
    loopback = host in _LOOPBACK_NAMES
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not loopback):
        raise InvalidSetting(
            "it must be an https:// URL such as https://graph.microsoft.com (http:// only on loopback)"
        )
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        raise InvalidSetting("it must be only scheme and host, e.g. https://graph.microsoft.us")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidSetting("the URL has an invalid port") from exc
    _check_host(host, allow_loopback=loopback and parts.scheme == "http")
    return raw


def parse_redirect_uri(value: str) -> str:
    parts = urlsplit(value.strip())
    host = (parts.hostname or "").lower()
    secure = parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK_NAMES)
    if secure and host and not parts.fragment and parts.username is None:
        return value.strip()
    raise InvalidSetting("it must be an absolute https:// URL (http:// only on localhost) without a fragment")


def parse_redirect_uri_ok(value: str) -> bool:
    try:
        parse_redirect_uri(value)
    except InvalidSetting:
        return False
    return True


@dataclass(frozen=True)
class Settings:
    """The validated settings. Fields are None when their setting is missing or invalid (see `issues`)."""

    instance_url: str | None
    client_id: str | None
    client_secret: str | None
    table: str
    field_map: FieldMap
    redirect_uri: str | None
    key_vault_url: str | None
    local_data_dir: Path
    ticket_store: str
    status_sync_schedule: str
    refresh_token_lifespan: int
    entra_tenant_id: str | None
    entra_audience: str | None
    entra_authority: str
    in_azure: bool  # running_in_azure(): the one definition the whole app uses
    issues: tuple[SettingIssue, ...] = field(default=())
    app_origins: tuple[str, ...] = field(default=())  # this app's own origins: a browser's Origin must be one
    graph_url: str = DEFAULT_GRAPH_URL
    secure_score_schedule: str = DEFAULT_SECURE_SCORE_SCHEDULE
    secure_score_write_back: str = "comment"  # comment | off
    secure_score_auto_resolve: bool = True
    azure_client_id: str | None = None  # the user-assigned managed identity azure-identity uses in Azure
    # the multi-tenant reader app (docs/design.md#several-microsoft-tenants); unset: the home tenant only
    reader_app_client_id: str | None = None
    tenant_parallelism: int = DEFAULT_TENANT_PARALLELISM  # tenants one refresh reads at a time
    fanout_threshold: int = DEFAULT_FANOUT_THRESHOLD  # from this many tenants due, one queue message each
    in_doubt_seconds: int = DEFAULT_IN_DOUBT_SECONDS  # no second POST this soon after one that got no answer
    app_url: str | None = None  # the app's public base URL: links, the consent redirect
    app_service_auth: bool = False  # WEBSITE_AUTH_ENABLED=True: the platform's sign-in is on (it alone sets it)


def running_in_azure(env: Mapping[str, str]) -> bool:
    """The one definition of "running in Azure" (docs/design.md#portal-and-sign-in), for every decision the app makes on
    it.

    The platform sets `WEBSITE_INSTANCE_ID` on App Service plans and `WEBSITE_SITE_NAME` on every plan; Flex
    Consumption sets no `WEBSITE_INSTANCE_ID` (azure-functions-host `EnvironmentExtensions.IsAppService` and its
    Legion tests), so either counts. `WEBSITE_HOSTNAME` does not: Core Tools sets it locally to `localhost:{port}`
    (azure-functions-core-tools `StartHostAction`), so it says nothing about where the app runs.
    """
    return any(env.get(name, "").strip() for name in ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def loopback_aliases(url: str) -> list[str]:
    """`localhost`, `127.0.0.1` and `[::1]` on one port are one local app (`make run`): a page opened at any of
    them is the app's own. Nothing for any other host."""
    parts = urlsplit(url)
    if parts.scheme != "http" or (parts.hostname or "").lower() not in _LOOPBACK_NAMES:
        return []
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # an invalid port: no aliases for it
        return []
    return [f"http://{name}{port}" for name in ("localhost", "127.0.0.1", "[::1]")]


def _whole_number(get: Callable[[str], str | None], name: str, default: int, highest: int, rule: str,
                  issues: list[SettingIssue]) -> int:  # fmt: skip
    """A setting that is a whole number from 1 to `highest` (ASCII digits only); unset: `default`."""
    raw = get(name)
    if not raw:
        return default
    parsed = ascii_int(raw, max_digits=len(str(highest)))
    if parsed is None or not 1 <= parsed <= highest:
        issues.append(SettingIssue(name, rule))
        return default
    return parsed


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    issues: list[SettingIssue] = []

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    instance_url: str | None = None
    raw_instance = get("SERVICENOW_INSTANCE")
    if raw_instance is None:
        issues.append(SettingIssue("SERVICENOW_INSTANCE", "is not set; set it to your instance name, e.g. 'contoso'"))
    else:
        try:
            instance_url = parse_instance(raw_instance)
        except InvalidSetting as exc:
            issues.append(SettingIssue("SERVICENOW_INSTANCE", f"is not valid: {exc}"))

    client_id = get("SERVICENOW_CLIENT_ID")
    if client_id is None:
        issues.append(
            SettingIssue(
                "SERVICENOW_CLIENT_ID",
                "is not set; copy the Client ID from System OAuth > Application Registry in ServiceNow",
            )
        )

    table = (get("SERVICENOW_TABLE") or DEFAULT_TABLE).lower()
    if not SERVICENOW_NAME.fullmatch(table):
        issues.append(SettingIssue("SERVICENOW_TABLE", f"'{table}' is not a ServiceNow table name"))
        table = DEFAULT_TABLE

    field_map = parse_field_map({}, table)
    raw_map = get("SERVICENOW_FIELD_MAP")
    if raw_map:
        try:
            field_map = parse_field_map(json.loads(raw_map), table)
        except ValueError as exc:
            issues.append(SettingIssue("SERVICENOW_FIELD_MAP", f"is not valid: {exc}"))

    in_azure = running_in_azure(env)
    redirect_uri: str | None = None
    raw_redirect = get("OAUTH_REDIRECT_URI")
    if raw_redirect is None and in_azure and get("WEBSITE_HOSTNAME"):
        raw_redirect = f"https://{get('WEBSITE_HOSTNAME')}/api/oauth/callback"
    if raw_redirect is None:
        issues.append(
            SettingIssue("OAUTH_REDIRECT_URI", "is not set; set it to the callback URL registered in ServiceNow")
        )
    else:
        try:
            redirect_uri = parse_redirect_uri(raw_redirect)
        except InvalidSetting as exc:
            issues.append(SettingIssue("OAUTH_REDIRECT_URI", f"is not valid: {exc}"))

    key_vault_url = get("KEY_VAULT_URL")
    if key_vault_url and not key_vault_url.startswith("https://"):
        issues.append(SettingIssue("KEY_VAULT_URL", "must be the vault's https:// URI"))
        key_vault_url = None

    lifespan = _whole_number(get, "SERVICENOW_REFRESH_TOKEN_LIFESPAN", DEFAULT_REFRESH_LIFESPAN, 10**12 - 1,
                             "must be a number of seconds", issues)  # fmt: skip
    in_doubt = _whole_number(get, "SERVICENOW_IN_DOUBT_SECONDS", DEFAULT_IN_DOUBT_SECONDS, 3600,
                             "must be a number of seconds from 1 to 3600", issues)  # fmt: skip

    entra_authority = (get("ENTRA_AUTHORITY") or "https://login.microsoftonline.com").rstrip("/")
    if not parse_redirect_uri_ok(entra_authority):
        issues.append(
            SettingIssue("ENTRA_AUTHORITY", "must be an https:// URL such as https://login.microsoftonline.com")
        )
        entra_authority = "https://login.microsoftonline.com"

    store = get("TICKET_STORE") or ("tables" if in_azure else "sqlite")
    if not (store == "tables" or store == "sqlite" or store.startswith("sqlite:///")):
        issues.append(SettingIssue("TICKET_STORE", "must be 'tables', 'sqlite' or 'sqlite:///path'"))
        store = "sqlite"

    graph_url = DEFAULT_GRAPH_URL
    if get("GRAPH_URL"):
        try:
            graph_url = parse_graph_url(get("GRAPH_URL") or "")
        except InvalidSetting as exc:
            issues.append(SettingIssue("GRAPH_URL", f"is not valid: {exc}"))
    write_back = (get("SECURE_SCORE_WRITE_BACK") or "comment").lower()
    if write_back not in ("comment", "off"):
        issues.append(SettingIssue("SECURE_SCORE_WRITE_BACK", "must be 'comment' or 'off'"))
        write_back = "off"
    auto_resolve = (get("SECURE_SCORE_AUTO_RESOLVE") or "true").lower()
    if auto_resolve not in ("true", "false"):
        issues.append(SettingIssue("SECURE_SCORE_AUTO_RESOLVE", "must be 'true' or 'false'"))
        auto_resolve = "false"

    reader_app = get("READER_APP_CLIENT_ID")
    if reader_app and not _GUID.fullmatch(reader_app):
        issues.append(SettingIssue("READER_APP_CLIENT_ID", "must be the reader app's client id (a GUID)"))
        reader_app = None
    parallelism = _whole_number(get, "SECURE_SCORE_TENANT_PARALLELISM", DEFAULT_TENANT_PARALLELISM, 64,
                                "must be a number from 1 to 64", issues)  # fmt: skip
    fanout = _whole_number(get, "FANOUT_THRESHOLD", DEFAULT_FANOUT_THRESHOLD, 100_000,
                           "must be a number from 1 to 100000", issues)  # fmt: skip
    app_url = get("APP_URL") or (f"https://{get('WEBSITE_HOSTNAME')}" if in_azure and get("WEBSITE_HOSTNAME") else None)
    if app_url is None and redirect_uri:
        app_url = origin_of(redirect_uri)  # locally, the app is where its OAuth callback is
    if app_url and not parse_redirect_uri_ok(app_url):
        issues.append(SettingIssue("APP_URL", "must be the app's https:// base URL (http:// only on localhost)"))
        app_url = None

    origins = [origin_of(redirect_uri), *loopback_aliases(redirect_uri)] if redirect_uri else []
    if in_azure and get("WEBSITE_HOSTNAME"):
        origins.append(f"https://{get('WEBSITE_HOSTNAME')}".lower())

    return Settings(
        instance_url=instance_url,
        client_id=client_id,
        client_secret=get("SERVICENOW_CLIENT_SECRET"),
        table=table,
        field_map=field_map,
        redirect_uri=redirect_uri,
        key_vault_url=key_vault_url,
        local_data_dir=Path(get("LOCAL_DATA_DIR") or ".local"),
        ticket_store=store,
        status_sync_schedule=get("STATUS_SYNC_SCHEDULE") or DEFAULT_SCHEDULE,
        refresh_token_lifespan=lifespan,
        entra_tenant_id=get("ENTRA_TENANT_ID"),
        entra_audience=get("ENTRA_AUDIENCE"),
        entra_authority=entra_authority,
        in_azure=in_azure,
        issues=tuple(issues),
        app_origins=tuple(dict.fromkeys(origins)),
        graph_url=graph_url,
        secure_score_schedule=get("SECURE_SCORE_SCHEDULE") or DEFAULT_SECURE_SCORE_SCHEDULE,
        secure_score_write_back=write_back,
        secure_score_auto_resolve=auto_resolve == "true",
        azure_client_id=get("AZURE_CLIENT_ID"),
        reader_app_client_id=reader_app,
        tenant_parallelism=parallelism,
        fanout_threshold=fanout,
        in_doubt_seconds=in_doubt,
        app_url=app_url.rstrip("/") if app_url else None,
        app_service_auth=(get("WEBSITE_AUTH_ENABLED") or "").lower() == "true",
    )
