"""azd hooks (azure.yaml): what `azd provision` / `azd up` needs before and after the Bicep, through the Azure CLI.

preprovision  - An environment an earlier version provisioned, whose registrations' client IDs it wrote back into the
                "use this registration" settings (READ_BACK_OUTPUTS): stop, and say how to decide, once.
                ENTRA_APP_OWNER_IDS that are not object IDs: stop before the Graph deployment refuses them.
                STATIC_EGRESS_ENABLED=true: register the Microsoft.App resource provider, which Flex Consumption's
                VNet integration needs and which ARM does not register (learn `azure-functions/flex-consumption-plan`,
                Considerations; the portal and the CLI register it, a template deployment does not).
postprovision - GRANT_GRAPH_PERMISSION=true: grant the function app's managed identity the Microsoft Graph
                application permission SecurityEvents.ReadWrite.All, if it does not hold it yet. Done here, not in the
                Bicep: a grant to an identity created seconds earlier in the same deployment fails intermittently on
                Entra ID replication ("Not a valid reference update"; microsoftgraph/msgraph-bicep-types#193, open),
                and a failed Bicep grant fails the whole deployment. Here the grant is checked first and retried while
                the new identity replicates, and a lasting failure says exactly what to run.

Standard library only (azd runs this with the deployer's Python); every `az` call has a timeout.
azd runs infra/hooks/preprovision.py and postprovision.py (azure.yaml); by hand:
python3 infra/hooks/azd_hooks.py preprovision|postprovision
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's well-known application id
SECURITY_EVENTS_READWRITE_ALL = "d903a879-88e0-4c09-b0c9-82f6a1333f84"  # application permission (app role) id
PERMISSION = "SecurityEvents.ReadWrite.All"
PUBLIC_GRAPH = "https://graph.microsoft.com"
# Seconds to wait before each new attempt while a new identity replicates (about 6 minutes in all).
REPLICATION_WAITS = (10, 20, 30, 60, 60, 60, 60, 60)
_DENIED = ("authorization_requestdenied", "insufficient privileges", "forbidden")
_ALREADY = ("permission being assigned already exists",)
WINDOWS = os.name == "nt"  # the printed commands are PowerShell there
# A failing hook stops `azd up` before it deploys (azure.yaml sets no `continueOnError`, which defaults to false:
# azd's azure.yaml schema, schemas/v1.0/azure.yaml.json): the infrastructure is there, the app's code is not.
NOT_DEPLOYED = (
    "If this ran within `azd up`, the app's code is not deployed yet: once the permission is granted (or to deploy "
    "without it for now), run `azd deploy`."
)


class HookFailed(Exception):
    """What went wrong and what to do, for the admin; the hook exits 1 with it."""


class _Refused(HookFailed):
    """Entra ID refused the deployer: retrying or running the hook again cannot help, a directory admin can."""


def _true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def az(*args: str, timeout: float = 120) -> str:
    """One Azure CLI command's stdout; HookFailed with its error text when it fails or is missing."""
    executable = shutil.which("az")
    if executable is None:
        raise HookFailed("The Azure CLI (az) is not installed or not on PATH: install it (admin guide section 1).")
    try:
        done = subprocess.run(  # noqa: S603 - the az found on PATH, with arguments this module builds
            [executable, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise HookFailed(f"`az {' '.join(args[:3])} ...` did not finish within {int(timeout)} seconds.") from None
    if done.returncode != 0:
        raise HookFailed(done.stderr.strip()[-2000:] or f"`az {' '.join(args[:3])} ...` failed")
    return done.stdout.strip()


def _signed_in_hint(error: HookFailed) -> HookFailed:
    text = str(error)
    if "az login" in text or "not logged in" in text.lower():
        return HookFailed(f"{text}\nSign the Azure CLI in (`az login`; in the pipeline, the azure/login step), then "
                          "run `azd provision` again.")  # fmt: skip
    return error


# Until issue 28 main.bicep output the registrations' client IDs under the names main.parameters.json reads as "use
# this registration, create none"; azd writes outputs into the environment's .env, so every later run skipped the
# registrations: no reader app for environments older than it, and after `azd down` / `azd up` federated credentials
# that still trust the deleted managed identity. The outputs are now these; an old name without its new one in an
# environment that was provisioned before (AZURE_FUNCTION_NAME, an output of every version) is one of those.
READ_BACK_OUTPUTS = {
    "ENTRA_APP_CLIENT_ID": "SIGN_IN_APP_CLIENT_ID",
    "READER_APP_CLIENT_ID": "TENANT_READER_APP_CLIENT_ID",
}
PROVISIONED = "AZURE_FUNCTION_NAME"
_GUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _outputs_read_back(env: Mapping[str, str]) -> HookFailed | None:
    """Which given registrations may be outputs an older version wrote back, and how to decide: only the admin
    knows whether they set a client ID themselves, so the hook asks instead of guessing either way."""
    if not env.get(PROVISIONED, "").strip():
        return None
    doubtful = [(name, env[name].strip(), output) for name, output in READ_BACK_OUTPUTS.items()
                if env.get(name, "").strip() and output not in env]  # fmt: skip
    if not doubtful:
        return None
    steps = "".join(
        f'\n- {name}={value}: if azd wrote it (you never set it), clear it: azd env set {name} ""\n'
        f"  If it is a registration you created yourself, keep it and say so: azd env set {output} {value}"
        for name, value, output in doubtful
    )
    return HookFailed(
        "This azd environment was provisioned by an earlier version of the connector, which wrote the client IDs of "
        'the app registrations it created into the settings that mean "use this registration, create none" '
        "(issue 28). Left so, no run updates those registrations: after `azd down` and `azd up` their federated "
        "credentials still trust the deleted managed identity, so sign-in and other tenants' tokens fail, and an "
        "environment older than the reader app never gets one. Decide once for each:" + steps + "\nThen run "
        "`azd up` again: a cleared one is updated in place (its uniqueName is the same), not created twice."
    )


def preprovision(env: Mapping[str, str], say: Callable[[str], None] = print) -> None:
    read_back = _outputs_read_back(env)
    if read_back is not None:
        raise read_back
    owners = env.get("ENTRA_APP_OWNER_IDS", "").strip()
    not_ids = [repr(o.strip()) for o in owners.split(",") if not _GUID.fullmatch(o.strip())] if owners else []
    if not_ids:  # main.bicep splits the value at commas: an empty or malformed item would fail the Graph deployment
        raise HookFailed(
            f"ENTRA_APP_OWNER_IDS must be object IDs separated by commas; not one: {', '.join(not_ids)}. A service "
            "principal's: az ad sp show --id <its app id> --query id -o tsv; a person's: az ad user show --id "
            "<user principal name> --query id -o tsv."
        )
    graph = env.get("GRAPH_URL", "").strip().rstrip("/") or PUBLIC_GRAPH
    if graph != PUBLIC_GRAPH and not env.get("ENTRA_APP_CLIENT_ID", "").strip():
        say(f"Note: GRAPH_URL is {graph}, a sovereign cloud. The Microsoft Graph Bicep extension that creates the "
            "sign-in app registration is documented for the public cloud only (learn: graph/templates limitations). "
            "If the 'entra' deployment fails, create the registration by hand and set ENTRA_APP_CLIENT_ID "
            "(admin guide section 1a, sovereign clouds).")  # fmt: skip
    if not _true(env, "STATIC_EGRESS_ENABLED"):
        return
    subscription = env.get("AZURE_SUBSCRIPTION_ID", "").strip()
    scope = ["--subscription", subscription] if subscription else []
    try:
        state = az("provider", "show", "--namespace", "Microsoft.App", *scope, "--query", "registrationState",
                   "-o", "tsv")  # fmt: skip
        if state == "Registered":
            say("Microsoft.App is registered (Flex Consumption VNet integration, STATIC_EGRESS_ENABLED=true).")
            return
        say(f"Registering the Microsoft.App resource provider ({state or 'not registered'}): Flex Consumption's VNet "
            "integration needs it (STATIC_EGRESS_ENABLED=true). This takes a minute or two.")  # fmt: skip
        az("provider", "register", "--namespace", "Microsoft.App", *scope, "--wait", timeout=900)
    except HookFailed as error:
        register = f"az provider register --namespace Microsoft.App {' '.join(scope)} --wait".replace("  ", " ")
        raise HookFailed(
            f"{_signed_in_hint(error)}\nSTATIC_EGRESS_ENABLED=true needs the Microsoft.App resource provider "
            f"registered in the subscription. Register it once (Contributor or Owner on the subscription): {register}"
        ) from None
    say("Microsoft.App is registered.")


def grant_command(principal_id: str, graph: str, windows: bool = WINDOWS) -> str:
    """The grant for a directory admin to run by hand: bash or zsh, or on Windows PowerShell (Windows PowerShell 5.1
    or PowerShell 7), not bash syntax a Windows admin cannot paste. There the body goes through a file: PowerShell 7.3
    and older drop the inner double quotes of a native command's argument, and az.cmd's cmd.exe reads `\\"` as a quote
    (learn cli/azure/use-azure-cli-successfully-quoting; `az rest --body @file` reads a file)."""
    uri = f"{graph}/v1.0/servicePrincipals/{principal_id}/appRoleAssignments"
    if windows:
        return (
            f"$graph = az ad sp show --id {GRAPH_APP_ID} --query id -o tsv\n"
            f"@{{principalId='{principal_id}'; resourceId=$graph; appRoleId='{SECURITY_EVENTS_READWRITE_ALL}'}} "
            "| ConvertTo-Json | Set-Content -Encoding ascii grant.json\n"
            f"az rest --method POST --uri {uri} --headers Content-Type=application/json --body '@grant.json'"
        )
    return (
        f"graph=$(az ad sp show --id {GRAPH_APP_ID} --query id -o tsv); "
        f"az rest --method POST --uri {uri} "
        f'--body "{{\\"principalId\\":\\"{principal_id}\\",\\"resourceId\\":\\"$graph\\",'
        f'\\"appRoleId\\":\\"{SECURITY_EVENTS_READWRITE_ALL}\\"}}"'
    )


def _rest(method: str, url: str, graph: str, body: dict[str, str] | None = None) -> dict[str, object]:
    args = ["rest", "--method", method, "--uri", url, "--resource", graph]
    if body is not None:
        args += ["--headers", "Content-Type=application/json", "--body", json.dumps(body)]
    out = az(*args)
    parsed = json.loads(out) if out else {}
    return parsed if isinstance(parsed, dict) else {}


def postprovision(
    env: Mapping[str, str], say: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep,
    waits: Sequence[float] = REPLICATION_WAITS, windows: bool = WINDOWS,
) -> None:  # fmt: skip
    if not _true(env, "GRANT_GRAPH_PERMISSION"):
        return
    principal_id = env.get("MANAGED_IDENTITY_PRINCIPAL_ID", "").strip()
    graph = env.get("GRAPH_URL", "").strip().rstrip("/") or PUBLIC_GRAPH
    if not principal_id:
        raise HookFailed("MANAGED_IDENTITY_PRINCIPAL_ID is not in the azd environment: run `azd provision` first.")
    command = _indented(grant_command(principal_id, graph, windows))
    try:
        resource_id = _graph_service_principal(graph)
        if not resource_id:
            raise HookFailed(f"Microsoft Graph's service principal was not found at {graph}.")
        body = {"principalId": principal_id, "resourceId": resource_id, "appRoleId": SECURITY_EVENTS_READWRITE_ALL}
        for attempt, wait in enumerate([0.0, *waits]):
            if wait:
                say(f"The new managed identity is not replicated in Entra ID yet; trying again in {int(wait)} s.")
                sleep(wait)
            try:
                if _granted(principal_id, resource_id, graph):
                    say(f"The managed identity holds {PERMISSION} (Microsoft Graph).")
                    return
                _rest("POST", f"{graph}/v1.0/servicePrincipals/{principal_id}/appRoleAssignments", graph, body)
            except HookFailed as error:
                text = str(error).lower()
                if any(marker in text for marker in _ALREADY):
                    say(f"The managed identity holds {PERMISSION} (Microsoft Graph).")
                    return
                if any(marker in text for marker in _DENIED):
                    raise _Refused(
                        f"{error}\nGranting {PERMISSION} needs the Entra role Privileged Role Administrator (or "
                        "Global Administrator). Have a directory admin run, once:\n" + command
                    ) from None
                if attempt == len(waits):
                    raise
                continue
            say(
                f"Granted {PERMISSION} (Microsoft Graph) to the managed identity. Its tokens are cached "
                "for up to 24 hours, so Secure Score reads may wait that long (the secure_score check says)."
            )
            return
    except _Refused as refused:
        raise HookFailed(f"{refused}\n{NOT_DEPLOYED}") from None
    except HookFailed as error:
        raise HookFailed(
            f"{_signed_in_hint(error)}\nThe Graph permission is not granted yet. Run `azd hooks run postprovision` "
            f"(or `azd provision`) again in a few minutes, or have a directory admin run, once:\n{command}\n"
            f"{NOT_DEPLOYED}"
        ) from None


def _graph_service_principal(graph: str) -> str:
    """The object id of Microsoft Graph's service principal in this tenant, through a `$filter` (learn
    graph/api/serviceprincipal-list). Not the alternate key `servicePrincipals(appId='...')`: on Windows `az` is the
    batch file az.cmd, and an unquoted `)` in an argument ends its IF block, so the CLI never runs ("... was
    unexpected at this time."; Azure/azure-cli#14783, #33979). subprocess quotes this argument (it has spaces), and
    inside quotes cmd leaves `&`, `'` and `$` alone (tests/fakes/windows_cmd.py models it)."""
    listed = _rest("GET", f"{graph}/v1.0/servicePrincipals?$filter=appId eq '{GRAPH_APP_ID}'&$select=id", graph)
    found = listed.get("value")
    first = found[0] if isinstance(found, list) and found else None
    return str(first.get("id") or "") if isinstance(first, dict) else ""


def _indented(command: str) -> str:
    return "\n".join(f"  {line}" for line in command.splitlines())


def _granted(principal_id: str, resource_id: str, graph: str) -> bool:
    listed = _rest("GET", f"{graph}/v1.0/servicePrincipals/{principal_id}/appRoleAssignments", graph)
    assignments = listed.get("value")
    wanted = {"appRoleId": SECURITY_EVENTS_READWRITE_ALL, "resourceId": resource_id}
    return isinstance(assignments, list) and any(
        isinstance(a, dict) and all(a.get(k) == v for k, v in wanted.items()) for a in assignments
    )


HOOKS: dict[str, Callable[[Mapping[str, str]], None]] = {"preprovision": preprovision, "postprovision": postprovision}


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[1] not in HOOKS:
        print(f"usage: {argv[0]} {'|'.join(HOOKS)}", file=sys.stderr)
        return 2
    try:
        HOOKS[argv[1]](os.environ)
    except HookFailed as error:
        print(f"{argv[1]} hook: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
