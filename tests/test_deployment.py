"""The deployment and the code cannot drift: every app setting the code reads is set by the Bicep or has a
documented default, and every setting the Bicep sets is read by someone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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


PARAMETER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
# Set by the workflow itself (azd env new), or never passed through the pipeline on purpose.
NOT_FROM_VARIABLES = {"AZURE_ENV_NAME", "AZURE_LOCATION", "SERVICENOW_CLIENT_SECRET"}


def _deploy_workflow() -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text()))


def test_the_pipeline_passes_every_parameter_the_azd_parameters_read() -> None:
    """Every push builds a fresh azd environment: a parameter not passed is reset to its default (Entra sign-in,
    VNet integration, the egress IP and the rest would silently change)."""
    names = set(PARAMETER.findall((ROOT / "infra" / "main.parameters.json").read_text())) - NOT_FROM_VARIABLES
    workflow = _deploy_workflow()
    listed = set(workflow["env"]["SETTINGS"].split())
    assert names == listed, (names - listed, listed - names)
    for name in listed:
        assert workflow["env"][name] == f"${{{{ vars.{name} }}}}", name


def test_the_pipeline_never_lets_the_shell_expand_settings() -> None:
    script = (ROOT / ".github" / "workflows" / "azd-env.sh").read_text()
    workflow = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert 'azd env set "$name" "$value"' in script
    for text in (script, workflow):
        assert not re.search(r"(^|\s)(\.|source)\s+\S*env", text, re.MULTILINE)  # no sourcing of env files
    assert "azd provision --preview" in workflow and "what-if" not in workflow


def test_the_secret_parameter_is_optional_and_written_only_when_given() -> None:
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert re.search(r"@secure\(\)\n@description\([^\n]*\)\nparam serviceNowClientSecret string = ''", main)
    assert "secrets: empty(serviceNowClientSecret) ? [] : [" in main


def test_azd_writes_nothing_secret_into_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".azure/" in ignored  # azd env set SERVICENOW_CLIENT_SECRET writes it there in plain text


def test_conditional_modules_are_only_read_through_safe_access() -> None:
    """Bicep 0.36+ warns (BCP318) on `<conditional module>.outputs`; the CI lint step fails on any finding."""
    for path in (ROOT / "infra").rglob("*.bicep"):
        text = path.read_text()
        for name in re.findall(r"^module (\w+) '[^']+' = if \(", text, re.MULTILINE):
            unsafe = re.findall(rf"\b{name}\.outputs\b", text)
            assert unsafe == [], f"{path.name}: {name}.outputs without ! or .?"


def test_every_module_and_extension_is_pinned_to_a_version() -> None:
    for path in (ROOT / "infra").rglob("*.bicep"):
        for reference in re.findall(r"^module \w+ '([^']+)'", path.read_text(), re.MULTILINE):
            if reference.startswith("br"):
                assert re.fullmatch(r"br(/public)?:[\w./-]+:\d+\.\d+\.\d+", reference), (path.name, reference)
    config = json.loads((ROOT / "infra" / "bicepconfig.json").read_text())
    for reference in config["extensions"].values():
        assert re.fullmatch(r"br:[\w./-]+:\d+\.\d+\.\d+", reference), reference


def _checkov(infra: Path) -> int:
    from dev import checkov_bicep

    if not checkov_bicep.CHECKOV.exists():
        from tests.conftest import require_service

        require_service("checkov", "make lint creates .venv-checkov")
    return checkov_bicep.main(infra)


def test_the_checkov_gate_passes_the_repository_and_fails_what_it_must(tmp_path: Path) -> None:
    import shutil

    assert _checkov(ROOT / "infra") == 0
    broken = tmp_path / "broken"
    shutil.copytree(ROOT / "infra", broken)
    (broken / "broken.bicep").write_text("param x string = \n resource {")
    assert _checkov(broken) == 1  # a parsing error fails, whatever checkov's exit code says
    risky = tmp_path / "risky"
    shutil.copytree(ROOT / "infra", risky)
    (risky / "risky.bicep").write_text(
        "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n  location: 'westeurope'\n"
        "  kind: 'StorageV2'\n  sku: { name: 'Standard_LRS' }\n  properties: { allowBlobPublicAccess: true }\n}\n"
    )
    assert _checkov(risky) == 1  # a finding nobody accepted fails
