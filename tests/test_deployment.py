"""The deployment and the code cannot drift: every app setting the code reads is set by the Bicep or has a
documented default, and every setting the Bicep sets is read by someone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

DEPLOYED_CODE = [
    "function_app.py",
    "shared",
    "create_ticket",
    "oauth_callback",
    "provisioning",
    "status_sync",
    "secure_score",
]
READS = [
    re.compile(r"""\bget\(\s*"([A-Za-z][A-Za-z0-9_]*)"\s*\)"""),  # config.load_settings' get("NAME")
    re.compile(r"""\b_whole_number\(\s*get,\s*"([A-Za-z][A-Za-z0-9_]*)"\s*,"""),  # and its number settings
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
    table = (ROOT / "docs" / "settings.md").read_text().split("## All settings", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\| (`[^|]+) \|", table, re.MULTILINE):
        names.update(re.findall(r"`([A-Za-z][A-Za-z0-9_]*)`", row))
    return names


def test_the_code_reads_settings_at_all() -> None:
    """The scan below is not vacuous."""
    assert {"SERVICENOW_INSTANCE", "KEY_VAULT_URL", "TICKET_STORE", "AZURE_CLIENT_ID"} <= code_settings()


def test_every_setting_the_code_reads_is_deployed_or_documented_with_its_default() -> None:
    missing = code_settings() - bicep_settings() - PLATFORM - documented_settings()
    assert missing == set(), f"set these in infra/app or document their default in docs/settings.md: {missing}"


def test_the_bicep_and_docs_scans_find_settings_at_all() -> None:
    """The scans below are not vacuous."""
    assert {"SERVICENOW_INSTANCE", "ENTRA_AUDIENCE", "AZURE_CLIENT_ID", "AzureWebJobsStorage__tableServiceUri"} <= (
        bicep_settings()
    )
    assert {"SERVICENOW_INSTANCE", "GRAPH_URL", "LOCAL_USER", "TICKET_STORE"} <= documented_settings()


def test_every_setting_the_bicep_sets_is_read() -> None:
    unread = bicep_settings() - code_settings() - HOST
    assert unread == set(), f"infra sets settings nothing reads: {unread}"


def test_every_documented_setting_exists_in_the_code() -> None:
    stale = documented_settings() - code_settings([*DEPLOYED_CODE, "dev"])
    assert stale == set(), f"docs/settings.md documents settings the code does not read: {stale}"


def test_the_local_settings_example_names_only_real_settings() -> None:
    values = json.loads(Path(ROOT / "local.settings.example.json").read_text())["Values"]
    known = code_settings() | {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
    assert set(values) <= known


def test_azd_parameters_cover_every_required_bicep_parameter() -> None:
    main = (ROOT / "infra" / "main.bicep").read_text()
    required = set(re.findall(r"^param (\w+) \w+$", main, re.MULTILINE))
    assert {"environmentName", "location", "serviceNowInstance", "serviceNowClientId"} <= required  # not vacuous
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


def test_every_problem_code_is_documented_in_the_api_doc_and_the_openapi_document() -> None:
    import yaml

    from shared.problems import PROBLEM_CODES

    problems = (ROOT / "docs" / "api.md").read_text().split("## Problems", 1)[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", problems, re.MULTILINE))
    assert {(code, str(cls.status)) for code, cls in PROBLEM_CODES.items()} <= documented
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    assert set(PROBLEM_CODES) == set(spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])


PARAMETER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
# Set by the workflow itself (azd env new) or by azd (AZURE_PRINCIPAL_ID: the signed-in principal, which azd puts in
# the parameters itself), or never passed through the pipeline on purpose.
NOT_FROM_VARIABLES = {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "SERVICENOW_CLIENT_SECRET"}
# The environment's subscription, and outputs (the preprovision hook reads some to recognise an older environment).
SET_BY_AZD = {"AZURE_SUBSCRIPTION_ID", "MANAGED_IDENTITY_PRINCIPAL_ID", "AZURE_FUNCTION_NAME"}


def _deploy_workflow() -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text()))


def test_the_pipeline_passes_every_parameter_the_azd_parameters_read() -> None:
    """Every push builds a fresh azd environment: a parameter not passed is reset to its default (Entra sign-in,
    VNet integration, the egress IP and the rest would silently change)."""
    text = (ROOT / "infra" / "main.parameters.json").read_text()
    names = set(PARAMETER.findall(text)) - NOT_FROM_VARIABLES
    assert len(names) == len(json.loads(text)["parameters"]) - len(NOT_FROM_VARIABLES) > 10  # one per parameter
    hooks = (ROOT / "infra" / "hooks" / "azd_hooks.py").read_text()
    hook_settings = set(re.findall(r'env(?:\.get\(|, )"([A-Z_]+)"', hooks)) - SET_BY_AZD
    assert "GRANT_GRAPH_PERMISSION" in hook_settings  # read by the postprovision hook only
    workflow = _deploy_workflow()
    listed = set(workflow["env"]["SETTINGS"].split())
    assert names | hook_settings == listed, (names | hook_settings - listed, listed - names - hook_settings)
    for name in listed:
        assert workflow["env"][name] == f"${{{{ vars.{name} }}}}", name


def _outputs() -> set[str]:
    return set(re.findall(r"^output (\w+) ", (ROOT / "infra" / "main.bicep").read_text(), re.MULTILINE))


def test_no_output_is_read_back_as_an_input() -> None:
    """azd writes every output into the environment's .env and main.parameters.json reads that .env on the next run
    (learn azure-developer-cli manage-environment-variables, environment-variables-faq): an output named like a
    parameter's setting becomes that parameter from the second run on (issue 28: the registrations stopped being
    deployed once their client IDs came back as "bring your own")."""
    inputs = set(PARAMETER.findall((ROOT / "infra" / "main.parameters.json").read_text()))
    outputs = _outputs()
    assert {"SERVICENOW_INSTANCE", "ENTRA_APP_CLIENT_ID", "READER_APP_CLIENT_ID"} <= inputs  # the scans read both
    assert {"PORTAL_URL", "MANAGED_IDENTITY_PRINCIPAL_ID"} <= outputs
    assert outputs & inputs == set()
    assert {"SIGN_IN_APP_CLIENT_ID", "TENANT_READER_APP_CLIENT_ID"} <= outputs  # the client IDs in use, still output


def test_a_second_run_still_deploys_the_registrations() -> None:
    """The first run's outputs in the environment (as azd leaves them) decide nothing on the next: the sign-in and
    reader apps are deployed again, so Bicep changes and a new managed identity (after azd down) reach them."""
    from dev import preview_graph

    second_run = {name: "value-from-the-first-run" for name in _outputs()}
    text = preview_graph.summary(ROOT / "infra", second_run)
    assert "deployed when `empty(entraAppClientId)`: on this run" in text
    assert "deployed when `empty(readerAppClientId) && empty(entraAppClientId)`: on this run" in text


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
    checked = set()
    for path in (ROOT / "infra").rglob("*.bicep"):
        text = path.read_text()
        for name in re.findall(r"^module (\w+) '[^']+' = if \(", text, re.MULTILINE):
            checked.add(name)
            unsafe = re.findall(rf"\b{name}\.outputs\b", text)
            assert unsafe == [], f"{path.name}: {name}.outputs without ! or .?"
    conditional = re.findall(r"^module (\w+) .* = if\b", (ROOT / "infra" / "main.bicep").read_text(), re.MULTILINE)
    assert checked == set(conditional) and {"network", "entra"} <= checked  # every conditional module was checked


def test_every_module_and_extension_is_pinned_to_a_version() -> None:
    registry = []
    for path in (ROOT / "infra").rglob("*.bicep"):
        text = path.read_text()
        references = re.findall(r"^module \w+ '([^']+)'", text, re.MULTILINE)
        assert len(references) == len(re.findall(r"^module ", text, re.MULTILINE)), path.name  # each one was read
        for reference in references:
            if reference.startswith("br"):
                registry.append(reference)
                assert re.fullmatch(r"br(/public)?:[\w./-]+:\d+\.\d+\.\d+", reference), (path.name, reference)
    assert len(registry) == (ROOT / "infra" / "main.bicep").read_text().count("'br/public:") >= 6
    config = json.loads((ROOT / "infra" / "bicepconfig.json").read_text())
    assert config["extensions"]  # the Microsoft Graph extension
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


def _bicep_block(text: str, declaration: str) -> str:
    """The body of the resource declared on the line starting with `declaration`, braces matched."""
    start = text.index(declaration)
    depth = 0
    for end in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return text[start : end + 1]
    raise AssertionError(f"unbalanced braces after {declaration}")


def _code(bicep: str) -> str:
    return re.sub(r"(^|\s)//.*$", "", bicep, flags=re.MULTILINE)  # no comments (a `//` in 'https://...' stays)


def test_flex_consumption_gets_no_ftps_state_and_ftp_stays_off_through_its_policy() -> None:
    """Flex Consumption refuses siteConfig.ftpsState (Azure/azure-cli#31414); CKV_AZURE_78 is accepted for it."""
    api = (ROOT / "infra" / "app" / "api.bicep").read_text()
    assert "ftpsState" not in _code(api)
    ftp = _code(_bicep_block(api, "resource ftpBasicAuth "))
    assert "parent: site" in ftp and "name: 'ftp'" in ftp and "allow: false" in ftp
    scm = _code(_bicep_block(api, "resource scmBasicAuth "))
    assert "parent: site" in scm and "name: 'scm'" in scm and "allow: false" in scm
    skips = (ROOT / "infra" / "checkov-skips.txt").read_text()
    assert re.search(r"^CKV_AZURE_78 Microsoft\.Web/sites\.site -- .*ftpsState.*azure-cli#31414", skips, re.MULTILINE)


def test_app_service_authentication_runs_without_the_token_store() -> None:
    auth = _code(_bicep_block((ROOT / "infra" / "app" / "api.bicep").read_text(), "resource auth "))
    assert re.search(r"tokenStore: \{ enabled: false \}", auth)
    assert "offline_access" not in auth  # no refresh tokens to keep: /.auth/refresh needs the token store
    assert (
        "requireAuthentication: true" in auth
        and "excludedPaths: [ '/api/oauth/callback', '/api/servicenow/events', '/api/tenants/consent' ]" in auth
    )


def test_checkov_scans_every_resource_the_bicep_declares() -> None:
    """pycep keeps only the last child nested in a resource: children are declared at the top level with parent:,
    and the gate compares what checkov parsed with what the Bicep declares."""
    from dev import checkov_bicep

    if not checkov_bicep.CHECKOV.exists():
        from tests.conftest import require_service

        require_service("checkov", "make lint creates .venv-checkov")
    declared = [d for d in checkov_bicep.declared() if not d["existing"]]
    assert not [d for d in declared if d["nested"]]
    _, parsed = checkov_bicep.run()
    key = lambda r: (r["file"], r["type"], r["name"])  # noqa: E731
    scanned = sorted(key(p) for p in parsed if not p["existing"])
    assert len(scanned) == len(declared) >= 15
    assert scanned == sorted(key(d) for d in declared)
    config, policies = "Microsoft.Web/sites/config", "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    children = {(config, "settings"), (config, "auth"), (policies, "scmBasicAuth"), (policies, "ftpBasicAuth")}
    assert {("app/api.bicep", *child) for child in children} <= set(scanned)


def test_the_checkov_gate_fails_on_a_child_resource_nested_where_pycep_drops_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    nested = tmp_path / "infra"
    shutil.copytree(ROOT / "infra", nested)
    (nested / "nested.bicep").write_text(
        "resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {\n  name: 'v'\n  location: 'westeurope'\n"
        "  resource first 'subnets' = {\n    name: 'a'\n  }\n  resource second 'subnets' = {\n    name: 'b'\n  }\n}\n"
    )
    assert _checkov(nested) == 1
    errors = capsys.readouterr().err
    for child in ("first", "second"):  # pycep parses only `second` (as vnet__second): `first` would go unchecked
        assert f"nested.bicep: subnets {child} is declared inside another resource" in errors


def _makefile_variables(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+) :?= (\S+)$", text, re.MULTILINE))


def test_funcignore_excludes_every_folder_the_makefile_builds() -> None:
    """With a .funcignore present azd applies only its patterns (azure-dev pkg/project/project_utils.go): a venv
    it does not name is zipped into the package, hundreds of MB."""
    makefile = (ROOT / "Makefile").read_text()
    variables = _makefile_variables(makefile)
    venvs = {variables.get(v[2:-1], v) if v.startswith("$(") else v for v in re.findall(r"-m venv (\S+)", makefile)}
    assert venvs == {".venv", ".venv-checkov", ".venv-prod"}, venvs  # the scan found every venv the Makefile makes
    clean = re.search(r"^clean:\n\trm -rf (.+)$", makefile, re.MULTILINE)
    assert clean is not None
    cleaned = set(clean[1].split()) - {"$(VENV)"}
    assert {".venv-checkov", ".venv-prod", "tools/node_modules"} <= cleaned
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text().splitlines()}
    for folder in sorted(venvs | cleaned):
        assert any(folder == pattern or folder.startswith(pattern + "/") for pattern in ignored), folder


def test_every_pipeline_step_with_a_pipe_runs_with_pipefail() -> None:
    """A `run:` without `shell:` is `bash -e {0}`, where `a | tee b` succeeds when `a` fails; `shell: bash` is
    `bash --noprofile --norc -eo pipefail {0}` (GitHub docs, jobs.<id>.steps[*].shell)."""
    import yaml

    piped = []
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        workflow = yaml.safe_load(path.read_text())
        default = ((workflow.get("defaults") or {}).get("run") or {}).get("shell")
        for name, job in workflow["jobs"].items():
            job_default = ((job.get("defaults") or {}).get("run") or {}).get("shell", default)
            for step in job.get("steps", []):
                script = step.get("run", "")
                if re.search(r"(?<!\|)\|(?!\|)", script):
                    piped.append((path.name, name, step.get("name")))
                    shell = step.get("shell", job_default)
                    assert shell == "bash" or script.lstrip().startswith("set -o pipefail"), piped[-1]
    assert ("deploy.yml", "preview", "Preview what provisioning would change (the same template and parameters azd up "
            "uses)") in piped  # fmt: skip


def test_the_preview_job_lists_the_graph_changes_what_if_cannot_show() -> None:
    preview = _deploy_workflow()["jobs"]["preview"]["steps"]
    runs = [step.get("run", "") for step in preview]
    summary = next(i for i, run in enumerate(runs) if "dev/preview_graph.py" in run)
    assert '>> "$GITHUB_STEP_SUMMARY"' in runs[summary]
    assert summary > next(i for i, run in enumerate(runs) if "azd provision --preview" in run)


def test_the_deploy_job_signs_the_azure_cli_in_for_the_hooks() -> None:
    steps = _deploy_workflow()["jobs"]["deploy"]["steps"]
    login = next(i for i, step in enumerate(steps) if str(step.get("uses", "")).startswith("azure/login@"))
    assert set(steps[login]["with"]) == {"client-id", "tenant-id", "subscription-id"}  # OIDC: no secret
    assert login < next(i for i, step in enumerate(steps) if "azd up" in step.get("run", ""))


AZD_PYTHON_HOOKS = "1.23.15"  # the first azd that runs `.py` hooks itself (Azure/azure-dev#7451, its CHANGELOG)


def test_the_hooks_need_no_shell_on_any_platform() -> None:
    """A `shell: pwsh` hook fails on Windows without PowerShell 7 (Azure/azure-dev#4560), and azd's later fallback
    to Windows PowerShell 5.1 runs it as a .ps1 file, which a default (Restricted) execution policy refuses: the hooks
    are Python scripts, which azd's Python executor runs the same way everywhere (learn azure-developer-cli
    hooks-multi-language), and azure.yaml requires an azd that can."""
    import yaml

    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    hooks = config["hooks"]
    assert set(hooks) == {"preprovision", "postprovision"}
    for name, hook in hooks.items():
        assert hook == {"run": f"infra/hooks/{name}.py", "kind": "python"}  # no shell, no per-platform override
        assert (ROOT / hook["run"]).is_file()
    assert config["requiredVersions"] == {"azd": f">= {AZD_PYTHON_HOOKS}"}


def _azd_hook_project_file(script: Path) -> Path | None:
    """azd's DiscoverProjectFile (azure-dev pkg/tools/language/project_discovery.go): the first of pyproject.toml,
    requirements.txt found walking up from the script's folder to the project root; azd installs it into a venv."""
    folder = script.parent
    while True:
        for name in ("pyproject.toml", "requirements.txt"):
            if (folder / name).is_file():
                return folder / name
        if folder == ROOT:
            return None
        folder = folder.parent


def test_the_python_hooks_venv_installs_nothing_and_ships_nowhere() -> None:
    """Without infra/hooks/requirements.txt azd would find the project's pyproject.toml and `pip install .` the
    app for each hook; the hooks use the standard library only."""
    for name in ("preprovision", "postprovision"):
        found = _azd_hook_project_file(ROOT / "infra" / "hooks" / f"{name}.py")
        assert found == ROOT / "infra" / "hooks" / "requirements.txt"
        assert [line for line in found.read_text().splitlines() if line.strip() and not line.startswith("#")] == []
    venv = "infra/hooks/hooks_env"  # python.VenvNameForDir: {folder}_env
    assert f"{venv}/" in (ROOT / ".gitignore").read_text().split()
    assert "infra" in (ROOT / ".funcignore").read_text().split()  # never in the function app's package
    import tomllib

    assert f"{venv}/" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["exclude"]


def test_the_graph_bicep_takes_the_token_exchange_audience_from_the_cloud() -> None:
    """msgraph-bicep-types quickstart-templates/msi-as-a-fic-secretless: the audience is per cloud."""
    entra = (ROOT / "infra" / "app" / "entra.bicep").read_text()
    federated = _code(_bicep_block(entra, "resource federated "))
    assert "audiences: [ tokenExchangeAudiences[environment().name] ]" in federated
    audiences = _code(_bicep_block(entra, "var tokenExchangeAudiences"))
    for cloud, suffix in {"AzureCloud": "", "AzureUSGovernment": "USGov", "AzureChinaCloud": "China"}.items():
        assert f"{cloud}: 'api://AzureADTokenExchange{suffix}'" in audiences
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert "module entra 'app/entra.bicep' = if (empty(entraAppClientId)) {" in main  # given a registration: no Graph
    assert not re.search(r"^module \w+ 'app/graph-permission", main, re.MULTILINE)  # the grant is the hook's


def test_the_sign_in_apps_identifier_uri_carries_the_tenant_id() -> None:
    """Tenants whose app management policy requires a unique tenant identifier refuse `api://<name>-<hash>`; the
    secure formats include `api://<tenantId>/<string>` (learn entra/identity-platform/identifier-uri-restrictions)."""
    entra = _code((ROOT / "infra" / "app" / "entra.bicep").read_text())
    assert "identifierUris: [ identifierUri ]" in _bicep_block(entra, "resource app ")
    declared = re.search(r"^var identifierUri = '(.*)'$", entra, re.MULTILINE)
    assert declared is not None and declared[1] == "api://${tenant().tenantId}/${uniqueName}"
    tenant, unique = "aaaabbbb-0000-cccc-1111-dddd2222eeee", "m365-servicenow-connector-abcdefghijklm"
    rendered = declared[1].replace("${tenant().tenantId}", tenant).replace("${uniqueName}", unique)
    assert re.fullmatch(r"api://[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}/[A-Za-z0-9._-]+", rendered)
    assert "identifierUris" not in _reader()  # the reader app exposes no API, so it has none to refuse


def test_both_registrations_are_owned_by_whoever_deploys_them() -> None:
    """A registration one principal created is refused to another (a person's azd up, then the pipeline: same
    uniqueName) unless that one owns it or holds Cloud Application Administrator. Both apps, and the sign-in app's
    service principal, declare the deployer and ENTRA_APP_OWNER_IDS as owners with 'append' (msgraph-bicep-types
    v1.0 1.0.0: `owners` is a MicrosoftGraphRelationship, relationships and relationshipSemantics)."""
    from dev import preview_graph

    resources = {r["name"]: r for r in preview_graph.graph_resources(ROOT / "infra")}
    owned = {name for name, r in resources.items() if "owners" in r["properties"]}
    assert owned == {"app", "principal", "readerApp"}  # every application, and the service principal we create
    for name in owned:
        assert resources[name]["properties"]["owners"] == {"relationships": "appOwners",
                                                           "relationshipSemantics": "'append'"}, name  # fmt: skip
    main = _code((ROOT / "infra" / "main.bicep").read_text())
    assert "var appOwners = union(empty(deployerPrincipalId) ? [] : [ deployerPrincipalId ], empty(entraAppOwnerIds) " \
           "? [] : split(replace(entraAppOwnerIds, ' ', ''), ','))" in main  # fmt: skip
    for module in ("module entra ", "module reader "):
        assert "ownerIds: appOwners" in _bicep_block(main, module)
    parameters = json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert parameters["deployerPrincipalId"] == {"value": "${AZURE_PRINCIPAL_ID}"}  # azd's signed-in principal
    assert parameters["entraAppOwnerIds"] == {"value": "${ENTRA_APP_OWNER_IDS=}"}
    assert "owners (append): `appOwners`" in preview_graph.summary(ROOT / "infra", {})
    assert "ENTRA_APP_OWNER_IDS: `a, b`" in preview_graph.summary(ROOT / "infra", {"ENTRA_APP_OWNER_IDS": "a, b"})


def test_the_graph_preview_lists_every_graph_resource_the_bicep_declares(tmp_path: Path) -> None:
    import shutil

    from dev import checkov_bicep, preview_graph

    declared = {d["name"] for d in checkov_bicep.declared() if str(d["type"]).startswith("Microsoft.Graph/")}
    assert declared == {"app", "principal", "federated", "readerApp", "readerFederated"}
    text = preview_graph.summary(ROOT / "infra", {})
    assert "does not show changes to Microsoft Graph resources (Azure/bicep#17743)" in text
    for name in declared:
        assert f"`{name}`" in text
    for expected in ("app role `Connector.Admin` for User, Application", "`Tickets.Create` for User, Application",
                     "appRoleAssignmentRequired: `true`", "signInAudience: `AzureADMyOrg`",
                     "audiences: `tokenExchangeAudiences[environment().name]`",
                     "uniqueName: `m365-servicenow-connector-${resourceToken}`", "on this run:",
                     "**SecurityEvents.ReadWrite.All** (app role `d903a879-88e0-4c09-b0c9-82f6a1333f84`)"):  # fmt: skip
        assert expected in text, expected
    given = preview_graph.summary(ROOT / "infra", {"ENTRA_APP_CLIENT_ID": "x", "GRANT_GRAPH_PERMISSION": "true"})
    assert "not on this run, ENTRA_APP_CLIENT_ID is set" in given
    assert "GRANT_GRAPH_PERMISSION=true: on this run" in given
    changed = tmp_path / "infra"  # it reads the Bicep: a changed role shows as changed
    shutil.copytree(ROOT / "infra", changed)
    entra = changed / "app" / "entra.bicep"
    entra.write_text(entra.read_text().replace("value: 'Tickets.Create'", "value: 'Tickets.Everything'"))
    assert "app role `Tickets.Everything`" in preview_graph.summary(changed, {})


# -- The reader app: other tenants (issue 20, docs/design.md#several-microsoft-tenants) --------------------------------


def _reader() -> str:
    return _code((ROOT / "infra" / "app" / "reader.bicep").read_text())


def _audiences(bicep: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(\w+): '([^']+)'$", _bicep_block(bicep, "var tokenExchangeAudiences"), re.MULTILINE))


def test_the_reader_app_is_multi_tenant_and_requires_graph_security_events_as_an_application_permission() -> None:
    from dev.preview_graph import _hook_grant

    hooks = (ROOT / "infra" / "hooks" / "azd_hooks.py").read_text()
    graph_app_id = re.search(r'^GRAPH_APP_ID = "([0-9a-f-]{36})"', hooks, re.MULTILINE)
    assert graph_app_id is not None
    _, role_id = _hook_grant()
    reader = _reader()
    app = _bicep_block(reader, "resource readerApp 'Microsoft.Graph/applications@v1.0'")
    assert "signInAudience: 'AzureADMultipleOrgs'" in app
    assert "resourceAppId: microsoftGraphAppId" in app and f"var microsoftGraphAppId = '{graph_app_id[1]}'" in reader
    assert "resourceAccess: [ { id: securityEventsReadWriteAll, type: 'Role' } ]" in app  # Role: an app permission
    assert f"var securityEventsReadWriteAll = '{role_id}'" in reader  # the hook's, confirmed
    assert "passwordCredentials" not in reader and "keyCredentials" not in reader  # no secret, no certificate
    assert "servicePrincipals" not in reader  # its service principals are the customers' consent, not ours


def test_the_reader_apps_federated_credential_trusts_the_managed_identity_with_each_clouds_audience() -> None:
    """The same audiences per cloud as the sign-in app's credential (msgraph-bicep-types msi-as-a-fic-secretless),
    the managed identity's principal as subject, this tenant's issuer in this cloud."""
    reader = _reader()
    federated = _bicep_block(reader, "resource readerFederated ")
    assert "name: '${readerApp.uniqueName}/function-app-managed-identity'" in federated
    assert "audiences: [ tokenExchangeAudiences[environment().name] ]" in federated
    assert "issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'" in federated
    assert "subject: managedIdentityPrincipalId" in federated
    audiences = _audiences(reader)
    assert audiences == _audiences((ROOT / "infra" / "app" / "entra.bicep").read_text())
    assert audiences["AzureCloud"] == "api://AzureADTokenExchange"
    assert audiences["AzureUSGovernment"] == "api://AzureADTokenExchangeUSGov"
    assert audiences["AzureChinaCloud"] == "api://AzureADTokenExchangeChina"
    module = _bicep_block(_code((ROOT / "infra" / "main.bicep").read_text()), "module reader ")
    assert "managedIdentityPrincipalId: identity.outputs.principalId" in module  # the identity the app runs as


def test_the_reader_apps_redirect_uri_is_the_consent_callback_at_app_url() -> None:
    """The admin consent endpoint returns only to a redirect URI registered exactly (learn v2-admin-consent): the
    one the connector sends, `{APP_URL}/api/tenants/consent`, on the host APP_URL names."""
    main = _code((ROOT / "infra" / "main.bicep").read_text())
    app = _bicep_block(_reader(), "resource readerApp ")
    assert "redirectUris: [ 'https://${hostName}/api/tenants/consent' ]" in app
    assert "enableIdTokenIssuance: false" in app and "enableAccessTokenIssuance: false" in app  # nobody signs in
    assert "var hostName = '${functionAppName}.azurewebsites.net'" in main  # the public cloud's, as the Graph
    assert "hostName: hostName" in _bicep_block(main, "module reader ")  # extension is documented for it only
    assert "APP_URL: 'https://${site.properties.defaultHostName}'" in _app_settings()[1]


def _app_settings() -> tuple[str, str]:
    """main.bicep's appSettings block and api.bicep's union, without comments: what the app settings are made of."""
    main = _code((ROOT / "infra" / "main.bicep").read_text()).split("appSettings: {", 1)[1].split("\n    }\n", 1)[0]
    api = _code((ROOT / "infra" / "app" / "api.bicep").read_text())
    return main, api.split("properties: union(appSettings, {", 1)[1].split("})", 1)[0]


def test_app_url_is_the_sites_own_host_name_in_every_cloud() -> None:
    """A sovereign cloud's App Service domain is not azurewebsites.net: an APP_URL built with it sends the consent
    link's redirect_uri to a host that matches no registered redirect URI (the admin consent endpoint refuses it;
    learn entra/identity-platform/v2-admin-consent). The site's defaultHostName is its host in its own cloud."""
    main, api = _app_settings()
    assert "SERVICENOW_INSTANCE:" in main and "AZURE_CLIENT_ID:" in api  # the scans read the settings
    assert "APP_URL" not in main
    assert re.findall(r"^\s+APP_URL: (.+)$", api, re.MULTILINE) == ["'https://${site.properties.defaultHostName}'"]
    assert "azurewebsites" not in main + api and "hostName" not in main + api


def test_the_consent_callback_is_anonymous_at_app_service_authentication() -> None:
    auth = _code(_bicep_block((ROOT / "infra" / "app" / "api.bicep").read_text(), "resource auth "))
    excluded = re.search(r"excludedPaths: \[([^\]]*)\]", auth)
    assert excluded is not None
    assert re.findall(r"'([^']+)'", excluded[1]) == ["/api/oauth/callback", "/api/servicenow/events",
                                                      "/api/tenants/consent"]  # fmt: skip


def test_the_reader_app_client_id_is_set_and_output_or_brought_like_the_sign_in_app() -> None:
    main = _code((ROOT / "infra" / "main.bicep").read_text())
    assert "module reader 'app/reader.bicep' = if (empty(readerAppClientId) && empty(entraAppClientId)) {" in main
    assert "var readerClientId = !empty(readerAppClientId) ? readerAppClientId : (empty(entraAppClientId) ? " \
           "reader!.outputs.clientId : '')" in main  # fmt: skip
    assert "READER_APP_CLIENT_ID: readerClientId" in main.split("appSettings: {", 1)[1]
    assert "output TENANT_READER_APP_CLIENT_ID string = readerClientId" in main  # not READER_APP_CLIENT_ID: an input
    assert {"READER_APP_CLIENT_ID", "APP_URL"} <= bicep_settings()
    parameters = json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert parameters["readerAppClientId"] == {"value": "${READER_APP_CLIENT_ID=}"}


def test_the_graph_preview_shows_the_reader_app_and_when_it_is_deployed() -> None:
    from dev import preview_graph

    text = preview_graph.summary(ROOT / "infra", {})
    reader = text.split("`readerApp`", 1)[1]
    for expected in ("signInAudience: `AzureADMultipleOrgs`", "redirect URIs: `https://${hostName}/api/tenants/consent`",
                     "requires **SecurityEvents.ReadWrite.All** (app role `d903a879-88e0-4c09-b0c9-82f6a1333f84`) of "
                     "`00000003-0000-0000-c000-000000000000` (application permission)"):  # fmt: skip
        assert expected in reader, expected
    assert "`readerFederated`" in reader and "audiences: `tokenExchangeAudiences[environment().name]`" in reader
    condition = "deployed when `empty(readerAppClientId) && empty(entraAppClientId)`"
    assert f"{condition}: on this run" in text
    for given in ("READER_APP_CLIENT_ID", "ENTRA_APP_CLIENT_ID"):
        assert f"{condition}: not on this run, {given} is set" in preview_graph.summary(ROOT / "infra", {given: "x"})
