"""The deployment and the code cannot drift: every app setting the code reads is set by the Bicep or has a
documented default, and every setting the Bicep sets is read by someone."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import ROOT

DEPLOYED_CODE = ["function_app.py", "shared", "create_ticket", "oauth_callback", "status_sync", "secure_score"]
READS = [
    re.compile(r"""\bget\(\s*"([A-Za-z][A-Za-z0-9_]*)"\s*\)"""),  # config.load_settings' get("NAME")
    re.compile(r"""(?:environ|env)\.get\(\s*"([A-Za-z][A-Za-z0-9_]*)\""""),
    re.compile(r"""environ\[\s*"([A-Za-z][A-Za-z0-9_]*)"\s*\]"""),
]
PLATFORM = {
    "WEBSITE_HOSTNAME",
    "WEBSITE_SITE_NAME",
    "WEBSITE_AUTH_ENABLED",
    "WEBSITE_INSTANCE_ID",
}  # set by App Service
HOST = {  # read by the Functions host, not by the app's code
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID",  # App Service Authentication's federated credential
    "WEBSITE_AUTH_AAD_ALLOWED_TENANTS",
}


def code_settings(entries: list[str] = DEPLOYED_CODE) -> set[str]:
    names: set[str] = set()
    for entry in entries:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            text = file.read_text()
            for pattern in READS:
                names.update(pattern.findall(text))
    return {n for n in names if n.upper() == n or n.startswith("AzureWebJobsStorage")} - {"Authorization"}


def bicep_settings() -> set[str]:
    main = (ROOT / "infra" / "main.bicep").read_text()
    api = (ROOT / "infra" / "app" / "api.bicep").read_text()
    block = main.split("appSettings: {", 1)[1].split("}", 1)[0]
    union = api.split("properties: union(appSettings, {", 1)[1].split("})", 1)[0]
    return set(re.findall(r"^\s+([A-Za-z][A-Za-z0-9_]*):", block + union, re.MULTILINE))


def documented_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\| (`[^|]+) \|", readme, re.MULTILINE):
        names.update(re.findall(r"`([A-Za-z][A-Za-z0-9_]*)`", row))
    return names


def test_the_code_reads_settings_at_all() -> None:
    """The scan below is not vacuous."""
    assert {"SERVICENOW_INSTANCE", "KEY_VAULT_URL", "TICKET_STORE", "AZURE_CLIENT_ID"} <= code_settings()


def test_every_setting_the_code_reads_is_deployed_or_documented_with_its_default() -> None:
    missing = code_settings() - bicep_settings() - PLATFORM - documented_settings()
    assert missing == set(), f"set these in infra/app or document their default in README Settings: {missing}"


def test_every_setting_the_bicep_sets_is_read() -> None:
    unread = bicep_settings() - code_settings() - HOST
    assert unread == set(), f"infra sets settings nothing reads: {unread}"


def test_every_documented_setting_exists_in_the_code() -> None:
    stale = documented_settings() - code_settings([*DEPLOYED_CODE, "dev"])
    assert stale == set(), f"README documents settings the code does not read: {stale}"


def test_the_local_settings_example_names_only_real_settings() -> None:
    values = json.loads(Path(ROOT / "local.settings.example.json").read_text())["Values"]
    known = code_settings() | {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
    assert set(values) <= known


def test_azd_parameters_cover_every_required_bicep_parameter() -> None:
    main = (ROOT / "infra" / "main.bicep").read_text()
    required = set(re.findall(r"^param (\w+) \w+$", main, re.MULTILINE))
    parameters = json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert required <= set(parameters), required - set(parameters)


def test_the_pipeline_and_azd_files_are_valid_yaml() -> None:
    import yaml

    for path in [ROOT / "azure.yaml", *sorted((ROOT / ".github" / "workflows").glob("*.yml"))]:
        document = yaml.safe_load(path.read_text())
        assert isinstance(document, dict), path
    deploy = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    assert deploy["permissions"]["id-token"] == "write"  # OIDC, no stored cloud secret
    assert "secrets." not in (ROOT / ".github" / "workflows" / "deploy.yml").read_text()


def test_every_problem_code_is_documented_in_the_readme_and_the_openapi_document() -> None:
    import yaml

    from shared.problems import PROBLEM_CODES

    readme = (ROOT / "README.md").read_text().split("## Problems", 1)[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", readme, re.MULTILINE))
    assert {(code, str(cls.status)) for code, cls in PROBLEM_CODES.items()} <= documented
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    assert set(PROBLEM_CODES) == set(spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
