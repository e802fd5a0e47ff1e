"""A stand-in for the Azure CLI (`az`) the azd hooks call, at the process boundary: the commands they use, with the
answers (and error texts) the real CLI gives. Its world is a JSON file ($FAKE_AZ_WORLD); each call is appended to
$FAKE_AZ_LOG.

- `az provider show|register --namespace X` (register with --wait returns once registered). Not signed in, az says
  "Please run 'az login' to setup account." and exits 1.
- `az rest` against Microsoft Graph: Graph's service principal by appId (the `$filter=appId eq '...'` list, learn
  graph/api/serviceprincipal-list, and the `(appId='...')` alternate key), a service principal's appRoleAssignments
  (GET, POST). A managed identity created seconds ago is not replicated yet: reads answer Request_ResourceNotFound
  and a grant answers "Not a valid reference update" (microsoftgraph/msgraph-bicep-types#193) until it is. az rest
  prints Graph's error as `<Reason>({json})` on stderr and exits 1. `--body @file` reads the body from a file.
- `az ad sp show --id <appId> --query id -o tsv`: Graph's service principal id (the printed grant commands use it).
- FAKE_AZ_WINDOWS=1: the arguments first go through Windows's `az.cmd` as cmd.exe parses them
  (tests/fakes/windows_cmd.py); a line cmd refuses never reaches the CLI, as on Windows.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from tests.fakes.windows_cmd import BatchError, through_az_cmd

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _fail(reason: str, code: str, message: str) -> int:
    print(f'{reason}({{"error":{{"code":"{code}","message":"{message}"}}}})', file=sys.stderr)
    return 1


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1] if name in args else ""


def main(args: list[str]) -> int:
    if os.environ.get("FAKE_AZ_WINDOWS") == "1":
        try:
            args = through_az_cmd(args)
        except BatchError as refused:
            print(refused.message, file=sys.stderr)
            return refused.code
    world_path = Path(os.environ["FAKE_AZ_WORLD"])
    world: dict[str, Any] = json.loads(world_path.read_text())
    with open(os.environ["FAKE_AZ_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(args) + "\n")
    try:
        return _answer(args, world)
    finally:
        world_path.write_text(json.dumps(world))


def _answer(args: list[str], world: dict[str, Any]) -> int:
    if not world.get("signed_in", True):
        print("ERROR: Please run 'az login' to setup account.", file=sys.stderr)
        return 1
    if args[:2] == ["provider", "show"]:
        print(world["providers"].get(_option(args, "--namespace"), "NotRegistered"))
        return 0
    if args[:2] == ["provider", "register"]:
        if world.get("register_denied"):
            print("ERROR: (AuthorizationFailed) The client does not have authorization to perform action "
                  "'Microsoft.App/register/action'.", file=sys.stderr)  # fmt: skip
            return 1
        world["providers"][_option(args, "--namespace")] = "Registered"
        return 0
    if args[:3] == ["ad", "sp", "show"]:
        if _option(args, "--id") != GRAPH_APP_ID or _option(args, "--query") != "id":
            return _fail("Not Found", "Request_ResourceNotFound", "the fake knows Graph's service principal only")
        print(world["graph_sp"])
        return 0
    if args[0] == "rest":
        body = _option(args, "--body")
        if body.startswith("@"):
            body = Path(body[1:]).read_text(encoding="utf-8-sig")
        return _graph(_option(args, "--method"), _option(args, "--uri"), body, world)
    print(f"ERROR: the fake az does not know `az {' '.join(args[:2])}`", file=sys.stderr)
    return 2


def _graph(method: str, uri: str, body: str, world: dict[str, Any]) -> int:
    if uri.endswith(f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')?$select=id"):
        print(json.dumps({"id": world["graph_sp"]}))
        return 0
    listed = re.search(r"/v1\.0/servicePrincipals\?\$filter=appId eq '([^']*)'&\$select=id$", uri)
    if listed is not None and method == "GET":
        print(json.dumps({"value": [{"id": world["graph_sp"]}] if listed[1] == GRAPH_APP_ID else []}))
        return 0
    match = re.search(r"/v1\.0/servicePrincipals/([^/]+)/appRoleAssignments$", uri)
    if match is None:
        return _fail("Bad Request", "Request_BadRequest", "Unsupported request")
    principal = match[1]
    replicated = world["replication_reads"] <= 0
    world["replication_reads"] -= 1
    if principal != world["identity"]:
        return _fail("Not Found", "Request_ResourceNotFound", f"Resource '{principal}' does not exist.")
    if method == "GET":
        if not replicated:
            return _fail("Not Found", "Request_ResourceNotFound",
                         f"Resource '{principal}' does not exist or one of its queried reference-property objects "
                         "are not present.")  # fmt: skip
        print(json.dumps({"value": [] if world.get("stale_list") else world["assignments"]}))  # a lagging replica
        return 0
    if world.get("denied"):
        return _fail("Forbidden", "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    if not replicated:
        return _fail("Bad Request", "Request_BadRequest", "Not a valid reference update.")
    grant = json.loads(body)
    held = {(a["appRoleId"], a["resourceId"]) for a in world["assignments"]}
    if (grant["appRoleId"], grant["resourceId"]) in held:
        return _fail("Bad Request", "Request_BadRequest", "Permission being assigned already exists on the object")
    world["assignments"].append({"id": "assignment-1", **grant})
    print(json.dumps(world["assignments"][-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
