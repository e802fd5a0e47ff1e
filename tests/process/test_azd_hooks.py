"""The azd hooks (azure.yaml, infra/hooks/azd_hooks.py) against a stand-in Azure CLI on PATH (tests/fakes/az.py):
Microsoft.App registered for STATIC_EGRESS_ENABLED=true, and the Graph grant for GRANT_GRAPH_PERMISSION=true
surviving Entra ID replication on a first run (microsoftgraph/msgraph-bicep-types#193)."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.fakes import windows_cmd

IDENTITY = "5f0e8d0c-1b2a-4c3d-9e8f-7a6b5c4d3e2f"
GRAPH_SP = "2a7b1c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
ROLE = "d903a879-88e0-4c09-b0c9-82f6a1333f84"  # SecurityEvents.ReadWrite.All
GRANT_ENV = {"GRANT_GRAPH_PERMISSION": "true", "MANAGED_IDENTITY_PRINCIPAL_ID": IDENTITY}


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("azd_hooks", ROOT / "infra" / "hooks" / "azd_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


@dataclass
class Az:
    world_path: Path
    log_path: Path

    def world(self) -> dict[str, Any]:
        return dict(json.loads(self.world_path.read_text()))

    def set(self, **changes: Any) -> None:
        self.world_path.write_text(json.dumps({**self.world(), **changes}))

    def calls(self) -> list[list[str]]:
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Az:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "az"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m tests.fakes.az "$@"\n')
    script.chmod(0o755)
    fake = Az(tmp_path / "world.json", tmp_path / "calls.jsonl")
    fake.world_path.write_text(json.dumps({"providers": {}, "graph_sp": GRAPH_SP, "identity": IDENTITY,
                                           "assignments": [], "replication_reads": 0}))  # fmt: skip
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_AZ_WORLD", str(fake.world_path))
    monkeypatch.setenv("FAKE_AZ_LOG", str(fake.log_path))
    return fake


def run_hook(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """As azd's Python hook executor runs it (azure.yaml): `python infra/hooks/<name>.py` in the script's folder
    (azure-dev pkg/ext/models.go: a non-shell hook's working directory), the azd environment in env."""
    import os

    keep = {k: os.environ[k] for k in ("PATH", "FAKE_AZ_WORLD", "FAKE_AZ_LOG", "FAKE_AZ_WINDOWS") if k in os.environ}
    hooks_dir = ROOT / "infra" / "hooks"
    return subprocess.run([sys.executable, str(hooks_dir / f"{name}.py")], cwd=hooks_dir, env={**keep, **env},
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


# -- preprovision: Microsoft.App for STATIC_EGRESS_ENABLED=true ------------------------------------------------------


def test_without_static_egress_the_preprovision_hook_calls_nothing(az: Az) -> None:
    done = run_hook("preprovision", {"AZURE_SUBSCRIPTION_ID": "sub-1"})
    assert done.returncode == 0 and az.calls() == []


def test_with_static_egress_microsoft_app_is_registered_once(az: Az) -> None:
    env = {"STATIC_EGRESS_ENABLED": "true", "AZURE_SUBSCRIPTION_ID": "sub-1"}
    done = run_hook("preprovision", env)
    assert done.returncode == 0, done.stderr
    assert az.world()["providers"]["Microsoft.App"] == "Registered"
    assert [c[:2] for c in az.calls()] == [["provider", "show"], ["provider", "register"]]
    assert all(c[c.index("--subscription") + 1] == "sub-1" for c in az.calls())
    again = run_hook("preprovision", env)  # registered already: looked at, not registered again
    assert again.returncode == 0 and [c[:2] for c in az.calls()][2:] == [["provider", "show"]]


def test_a_refused_registration_says_what_to_run(az: Az) -> None:
    az.set(register_denied=True)
    done = run_hook("preprovision", {"STATIC_EGRESS_ENABLED": "true", "AZURE_SUBSCRIPTION_ID": "sub-1"})
    assert done.returncode == 1
    assert "AuthorizationFailed" in done.stderr
    assert "az provider register --namespace Microsoft.App --subscription sub-1 --wait" in done.stderr


def test_a_signed_out_azure_cli_is_named(az: Az) -> None:
    az.set(signed_in=False)
    done = run_hook("preprovision", {"STATIC_EGRESS_ENABLED": "true"})
    assert done.returncode == 1 and "az login" in done.stderr and "azure/login" in done.stderr


def test_a_sovereign_cloud_without_a_registration_gets_the_manual_way(az: Az) -> None:
    done = run_hook("preprovision", {"GRAPH_URL": "https://graph.microsoft.us"})
    assert done.returncode == 0 and "ENTRA_APP_CLIENT_ID" in done.stdout and "section 1a" in done.stdout
    given = run_hook("preprovision", {"GRAPH_URL": "https://graph.microsoft.us", "ENTRA_APP_CLIENT_ID": "x"})
    assert given.stdout == "" and az.calls() == []


# -- postprovision: the Graph grant for GRANT_GRAPH_PERMISSION=true ---------------------------------------------------


def test_without_the_option_the_postprovision_hook_calls_nothing(az: Az) -> None:
    assert run_hook("postprovision", {"MANAGED_IDENTITY_PRINCIPAL_ID": IDENTITY}).returncode == 0
    assert az.calls() == []


def test_the_grant_is_made_once_and_then_only_checked(az: Az) -> None:
    done = run_hook("postprovision", GRANT_ENV)
    assert done.returncode == 0, done.stderr
    assert az.world()["assignments"] == [{"id": "assignment-1", "principalId": IDENTITY, "resourceId": GRAPH_SP,
                                          "appRoleId": ROLE}]  # fmt: skip
    assert "Granted SecurityEvents.ReadWrite.All" in done.stdout
    again = run_hook("postprovision", GRANT_ENV)
    assert again.returncode == 0 and "holds SecurityEvents.ReadWrite.All" in again.stdout
    assert len(az.world()["assignments"]) == 1
    assert not any(c[c.index("--method") + 1] == "POST" for c in az.calls()[3:])  # the second run only looked


def test_a_first_run_grant_waits_out_entra_replication(az: Az) -> None:
    az.set(replication_reads=3)  # the identity created seconds ago is unknown to the first three Graph calls
    waits: list[float] = []
    said: list[str] = []
    hooks.postprovision(GRANT_ENV, say=said.append, sleep=waits.append)
    assert [a["appRoleId"] for a in az.world()["assignments"]] == [ROLE]
    assert waits == list(hooks.REPLICATION_WAITS[:3])
    assert sum("not replicated in Entra ID yet" in line for line in said) == 3


def test_a_grant_that_never_replicates_says_to_run_the_hook_again(az: Az) -> None:
    az.set(replication_reads=1000)
    waits: list[float] = []
    with pytest.raises(hooks.HookFailed) as failed:
        hooks.postprovision(GRANT_ENV, say=lambda _: None, sleep=waits.append)
    assert waits == list(hooks.REPLICATION_WAITS)  # bounded: about 6 minutes, then it stops
    text = str(failed.value)
    assert "azd hooks run postprovision" in text and f"servicePrincipals/{IDENTITY}/appRoleAssignments" in text
    assert az.world()["assignments"] == []


def test_a_grant_a_lagging_replica_does_not_list_yet_is_not_made_twice(az: Az) -> None:
    az.set(assignments=[{"id": "a0", "principalId": IDENTITY, "resourceId": GRAPH_SP, "appRoleId": ROLE}],
           stale_list=True)  # fmt: skip
    done = run_hook("postprovision", GRANT_ENV)
    assert done.returncode == 0 and "holds SecurityEvents.ReadWrite.All" in done.stdout
    assert len(az.world()["assignments"]) == 1


def test_a_deployer_without_the_directory_role_is_told_who_can_grant(az: Az) -> None:
    az.set(denied=True)
    waits: list[float] = []
    with pytest.raises(hooks.HookFailed) as failed:
        hooks.postprovision(GRANT_ENV, say=lambda _: None, sleep=waits.append)
    assert waits == []  # a refusal is not retried
    assert "Privileged Role Administrator" in str(failed.value) and "az rest --method POST" in str(failed.value)


def test_a_sovereign_cloud_grants_through_its_own_graph(az: Az) -> None:
    assert run_hook("postprovision", {**GRANT_ENV, "GRAPH_URL": "https://graph.microsoft.us"}).returncode == 0
    uris = [c[c.index("--uri") + 1] for c in az.calls()]
    assert uris and all(uri.startswith("https://graph.microsoft.us/v1.0/") for uri in uris)
    assert all(c[c.index("--resource") + 1] == "https://graph.microsoft.us" for c in az.calls())


# -- Windows: `az` is az.cmd, and cmd.exe parses the arguments twice (tests/fakes/windows_cmd.py) ----------------------


def test_the_az_cmd_model_answers_as_the_azure_cli_issues_report() -> None:
    """The model is held to the reports it cites, so a hook it passes would pass on Windows."""
    reports = {  # arguments as the reporters' shells passed them -> what cmd printed
        ("login", "-u", "app", "-p", "1ab)2ab", "--tenant", "t"): "2ab was unexpected at this time.",
        ("login", "-u", "me", "-p", ")", "-t", "t"): "-t was unexpected at this time.",  # Azure/azure-cli#28692
        ("webapp", "config", "connection-string", "set", "--settings",
         "TestKey=@Microsoft.KeyVault(SecretUri=https://html5zombo.com)", "--resource-group", "mgrandi-rg"):
            "--resource-group was unexpected at this time.",  # Azure/azure-cli#14783
        ("rest", "--url", "https://dev.azure.com/o/p/_apis/wit/fields/f?api-version=6.1-preview.3&$expand=All"):
            "'$expand' is not recognized as an internal or external command",  # Azure/azure-cli#15214
    }  # fmt: skip
    for args, printed in reports.items():
        with pytest.raises(windows_cmd.BatchError) as refused:
            windows_cmd.through_az_cmd(args, env={})
        assert refused.value.message.startswith(printed), (args, refused.value.message)
    quoted = ["rest", "--uri", "https://graph.microsoft.com/v1.0/x?$filter=a eq 'b)c'&$top=1", "--body", '{"a": "b"}']
    assert windows_cmd.through_az_cmd(quoted, env={}) == quoted  # a space makes subprocess quote the argument
    with pytest.raises(windows_cmd.BatchError):  # cmd knows no \" escape: the JSON's inner quotes toggle quoting,
        windows_cmd.through_az_cmd(["rest", "--body", '{"a": "(b)"}'], env={})  # so its `)` is outside quotes
    assert windows_cmd.through_az_cmd(["a^b", "%X%", "%Y%"], env={"X": "x"}) == ["ab", "x", "%Y%"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.text(st.characters(blacklist_characters="&|<>^)%\r\n\x00", blacklist_categories=["Cs"]))))
def test_arguments_without_cmd_operators_reach_the_cli_unchanged(args: list[str]) -> None:
    """list2cmdline's quoting, cmd's two parses and the C runtime's split give back every such argument."""
    assert windows_cmd.through_az_cmd(args, env={}) == args


def test_the_graph_grant_works_where_az_is_windows_az_cmd(az: Az, monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure/azure-cli#14783, #33979: an unquoted `)` in an argument ends az.cmd's IF block ("... was unexpected at
    this time.") and the CLI never runs, so the hook may pass none (Graph's `servicePrincipals(appId='...')`)."""
    monkeypatch.setenv("FAKE_AZ_WINDOWS", "1")
    done = run_hook("postprovision", GRANT_ENV)
    assert "was unexpected at this time" not in done.stderr
    assert done.returncode == 0, done.stderr
    assert az.world()["assignments"] == [{"id": "assignment-1", "principalId": IDENTITY, "resourceId": GRAPH_SP,
                                          "appRoleId": ROLE}]  # fmt: skip
    static = run_hook("preprovision", {"STATIC_EGRESS_ENABLED": "true", "AZURE_SUBSCRIPTION_ID": "sub-1"})
    assert static.returncode == 0, static.stderr


# -- What a failed grant tells the admin ----------------------------------------------------------------------------


def test_a_failed_grant_says_the_app_is_not_deployed_yet(az: Az) -> None:
    """A failing postprovision hook stops `azd up` before its deploy step: the admin must hear `azd deploy`."""
    az.set(replication_reads=1000)
    with pytest.raises(hooks.HookFailed) as gave_up:
        hooks.postprovision(GRANT_ENV, say=lambda _: None, sleep=lambda _: None)
    az.set(denied=True, replication_reads=0)
    with pytest.raises(hooks.HookFailed) as refused:
        hooks.postprovision(GRANT_ENV, say=lambda _: None, sleep=lambda _: None)
    for failure in (gave_up, refused):
        assert "`azd deploy`" in str(failure.value) and "not deployed yet" in str(failure.value)
    assert str(refused.value).count("az rest --method POST") == 1  # the command once, with who may run it
    assert "azd hooks run postprovision" not in str(refused.value)  # running it again cannot help a refusal


def test_the_printed_grant_runs_in_a_posix_shell(az: Az, tmp_path: Path) -> None:
    command = hooks.grant_command(IDENTITY, "https://graph.microsoft.com", windows=False)
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [(a["principalId"], a["resourceId"], a["appRoleId"]) for a in az.world()["assignments"]] == [
        (IDENTITY, GRAPH_SP, ROLE)
    ]


def test_the_printed_grant_is_powershell_on_windows(az: Az, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not bash (`x=$(...)`, `\\"`), which neither PowerShell nor cmd runs; the body goes through a file, since
    PowerShell 5.1-7.2 drops inner double quotes and az.cmd's cmd.exe reads `\\"` as a quote."""
    az.set(denied=True)
    with pytest.raises(hooks.HookFailed) as refused:
        hooks.postprovision(GRANT_ENV, say=lambda _: None, sleep=lambda _: None, windows=True)
    command = hooks.grant_command(IDENTITY, "https://graph.microsoft.com", windows=True)
    assert "\n".join(f"  {line}" for line in command.splitlines()) in str(refused.value)
    assert "$(" not in command and '\\"' not in command and "graph=" not in command
    lookup, body, grant = command.splitlines()
    assert lookup == f"$graph = az ad sp show --id {hooks.GRAPH_APP_ID} --query id -o tsv"
    assert body == (f"@{{principalId='{IDENTITY}'; resourceId=$graph; appRoleId='{ROLE}'}} | ConvertTo-Json | "
                    "Set-Content -Encoding ascii grant.json")  # fmt: skip
    monkeypatch.setenv("FAKE_AZ_WINDOWS", "1")  # each az line as PowerShell passes it, through az.cmd
    monkeypatch.chdir(tmp_path)
    az.set(denied=False)
    graph_sp = subprocess.run(["az", *shlex.split(lookup.split(" = ", 1)[1])[1:]], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()  # fmt: skip
    (tmp_path / "grant.json").write_text(
        json.dumps({"principalId": IDENTITY, "resourceId": graph_sp, "appRoleId": ROLE})
    )
    subprocess.run(["az", *shlex.split(grant)[1:]], capture_output=True, text=True, timeout=60, check=True)
    assert [a["resourceId"] for a in az.world()["assignments"]] == [GRAPH_SP]


# -- Environments an earlier version provisioned: outputs written back into inputs (issue 28) -----------------------

PROVISIONED_BEFORE = {"AZURE_FUNCTION_NAME": "func-servicenow-abc", "MANAGED_IDENTITY_PRINCIPAL_ID": IDENTITY}


def test_client_ids_an_earlier_version_wrote_back_stop_the_run_until_the_admin_decides(az: Az) -> None:
    """Only the admin knows whether ENTRA_APP_CLIENT_ID was set by hand (keep) or written by azd from the old output
    (clear, so the Bicep updates the registration again): the hook stops before provisioning and asks, once."""
    legacy = {**PROVISIONED_BEFORE, "ENTRA_APP_CLIENT_ID": "app-1", "READER_APP_CLIENT_ID": "app-2"}
    done = run_hook("preprovision", legacy)
    assert done.returncode == 1 and az.calls() == []
    asked = ['azd env set ENTRA_APP_CLIENT_ID ""', "azd env set SIGN_IN_APP_CLIENT_ID app-1",
             'azd env set READER_APP_CLIENT_ID ""', "azd env set TENANT_READER_APP_CLIENT_ID app-2"]  # fmt: skip
    assert all(expected in done.stderr for expected in asked), done.stderr
    cleared = {**legacy, "ENTRA_APP_CLIENT_ID": "", "READER_APP_CLIENT_ID": ""}
    kept = {**legacy, "SIGN_IN_APP_CLIENT_ID": "app-1", "TENANT_READER_APP_CLIENT_ID": "app-2"}
    only_reader = {**legacy, "SIGN_IN_APP_CLIENT_ID": "app-1"}
    assert run_hook("preprovision", cleared).returncode == 0 and run_hook("preprovision", kept).returncode == 0
    reader = run_hook("preprovision", only_reader)
    assert reader.returncode == 1 and "READER_APP_CLIENT_ID=app-2" in reader.stderr
    assert "ENTRA_APP_CLIENT_ID=app-1" not in reader.stderr


def test_environments_this_version_provisioned_and_fresh_ones_are_never_asked(az: Az) -> None:
    own = {**PROVISIONED_BEFORE, "ENTRA_APP_CLIENT_ID": "app-1", "SIGN_IN_APP_CLIENT_ID": "app-1",
           "TENANT_READER_APP_CLIENT_ID": ""}  # fmt: skip
    assert run_hook("preprovision", own).returncode == 0  # brought its own registration, provisioned since
    pipeline = {"ENTRA_APP_CLIENT_ID": "app-1", "READER_APP_CLIENT_ID": "app-2"}  # a fresh environment every run
    assert run_hook("preprovision", pipeline).returncode == 0
    assert az.calls() == []


def test_owner_ids_that_are_not_object_ids_stop_the_run_before_the_graph_deployment(az: Az) -> None:
    good = "5f0e8d0c-1b2a-4c3d-9e8f-7a6b5c4d3e2f, 2A7B1C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"
    assert run_hook("preprovision", {"ENTRA_APP_OWNER_IDS": good}).returncode == 0
    cases = [("me@contoso.com", "'me@contoso.com'"), (f"{IDENTITY},", "''"), (f"{IDENTITY};x", f"'{IDENTITY};x'")]
    for bad, named in cases:
        done = run_hook("preprovision", {"ENTRA_APP_OWNER_IDS": bad})
        assert done.returncode == 1 and "ENTRA_APP_OWNER_IDS must be object IDs" in done.stderr, bad
        assert named in done.stderr and "az ad sp show --id" in done.stderr
    assert az.calls() == []
