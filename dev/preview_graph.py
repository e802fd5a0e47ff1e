"""The Microsoft Graph changes a deployment makes, as Markdown for the preview job's summary (deploy.yml).

`azd provision --preview` shows ARM what-if, and what-if does not support Microsoft Graph resources
(Azure/bicep#17743; the Graph Bicep docs' limitations): app registrations, app roles, federated credentials and
app-role grants would reach production unreviewed. This lists them from the Bicep itself (every `Microsoft.Graph/*`
resource the files under infra/ declare, with the properties they set and the module condition that deploys them),
plus the Graph permission the postprovision hook grants, and says which of them this run's settings deploy.

Usage: python3 dev/preview_graph.py [infra folder]   (reads the settings that decide the module conditions, e.g.
ENTRA_APP_CLIENT_ID and READER_APP_CLIENT_ID, and GRANT_GRAPH_PERMISSION)
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_RESOURCE = re.compile(
    r"^resource\s+(\w+)\s+'(Microsoft\.Graph/[^'@]+)@[^']*'\s+(existing\s+)?=\s*(?:if\s*\((.*)\)\s*)?\{", re.MULTILINE
)
_MODULE = re.compile(r"^module\s+(\w+)\s+'([^']+)'\s*=\s*(?:if\s*\((.*)\)\s*)?\{", re.MULTILINE)
KINDS = {"Microsoft.Graph/applications": "App registration", "Microsoft.Graph/servicePrincipals": "Service principal",
         "Microsoft.Graph/applications/federatedIdentityCredentials": "Federated identity credential",
         "Microsoft.Graph/appRoleAssignedTo": "App role grant", "Microsoft.Graph/groups": "Group",
         "Microsoft.Graph/oauth2PermissionGrants": "Delegated permission grant"}  # fmt: skip
# The properties listed for each resource, in this order (app roles and redirect URIs follow).
SHOWN = ["uniqueName", "displayName", "name", "signInAudience", "appId", "appRoleAssignmentRequired", "identifierUris",
         "issuer", "subject", "audiences", "principalId", "resourceId", "appRoleId"]  # fmt: skip
WHAT_IF = (
    "What-if, which the preview above comes from, does not show changes to Microsoft Graph resources "
    "(Azure/bicep#17743), so this deployment's Entra ID changes are listed here from the Bicep. Review them before "
    "approving: they decide who can sign in, with which roles, and what the app's identities may do."
)


class _Reader:
    """Bicep object and array literals as Python values; anything else (an expression) stays its source text."""

    def __init__(self, text: str, at: int) -> None:
        self.text = text
        self.at = at

    def _skip(self) -> None:
        while self.at < len(self.text):
            if self.text.startswith("//", self.at):
                self.at = self.text.find("\n", self.at) % (len(self.text) + 1)
            elif self.text[self.at] in " \t\r\n,":
                self.at += 1
            else:
                return

    def value(self) -> Any:
        self._skip()
        head = self.text[self.at]
        if head == "{":
            return self._object()
        if head == "[":
            return self._array()
        return self._expression()

    def _object(self) -> dict[str, Any]:
        self.at += 1
        found: dict[str, Any] = {}
        while True:
            self._skip()
            if self.text[self.at] == "}":
                self.at += 1
                return found
            match = re.compile(r"'?([\w$.-]+)'?\s*:").match(self.text, self.at)
            if match is None:
                raise ValueError(f"unexpected Bicep at {self.text[self.at : self.at + 40]!r}")
            self.at = match.end()
            found[match[1]] = self.value()

    def _array(self) -> list[Any]:
        self.at += 1
        items: list[Any] = []
        while True:
            self._skip()
            if self.text[self.at] == "]":
                self.at += 1
                return items
            items.append(self.value())

    def _expression(self) -> str:
        """Up to the end of the line, a comma or a closing bracket, outside strings and brackets."""
        start, depth, quoted = self.at, 0, False
        while self.at < len(self.text):
            char = self.text[self.at]
            if quoted:
                if char == "\\":
                    self.at += 1
                elif char == "'":
                    quoted = False
                elif self.text.startswith("${", self.at):
                    self.at = self.text.index("}", self.at)
            elif char == "'":
                quoted = True
            elif char in "([{":
                depth += 1
            elif char in ")]}" and depth:
                depth -= 1
            elif depth == 0 and (char in ")]},\n" or self.text.startswith("//", self.at)):
                break
            self.at += 1
        return self.text[start : self.at].strip()


def _text(value: Any) -> str:
    """A Bicep string literal as its text; any other expression as itself, in code style."""
    if isinstance(value, str) and re.fullmatch(r"'(?:[^'\\]|\\.)*'", value):
        return value[1:-1].replace("\\'", "'")
    return str(value)


def _body(text: str, start: int) -> dict[str, Any]:
    """The object literal of the declaration starting at `start`."""
    return _Reader(text, text.index("{", start)).value()  # type: ignore[no-any-return]


def _resolve(value: Any, names: Mapping[str, Any]) -> Any:
    """A property that names a variable or a module parameter, shown as what it stands for (one level)."""
    if isinstance(value, list):
        return [_resolve(v, names) for v in value]
    if isinstance(value, dict):
        return {key: _resolve(v, names) for key, v in value.items()}
    return names.get(value, value) if isinstance(value, str) else value


def graph_resources(infra: Path) -> list[dict[str, Any]]:
    """Every Microsoft.Graph resource declared (not `existing`) under `infra`, with the module condition that
    deploys its file (from main.bicep) and the module parameters its properties name."""
    modules: dict[str, tuple[str, dict[str, Any]]] = {}
    main = (infra / "main.bicep").read_text()
    for match in _MODULE.finditer(main):
        params = _body(main, match.start()).get("params", {})
        modules[match[2]] = (match[3] or "", params if isinstance(params, dict) else {})
    found = []
    for path in sorted(infra.rglob("*.bicep")):
        text = path.read_text()
        condition, params = modules.get(path.relative_to(infra).as_posix(), ("", {}))
        variables = re.findall(r"^var (\w+) = ([^{\[\n][^\n]*?)\s*$", text, re.MULTILINE)
        names = {**{name: re.sub(r"\s+//.*$", "", value) for name, value in variables}, **params}
        for match in _RESOURCE.finditer(text):
            if match[3]:
                continue
            shown = {key: _resolve(value, names) for key, value in _body(text, match.start()).items()}
            found.append({"file": path.relative_to(infra).as_posix(), "name": match[1], "type": match[2],
                          "condition": condition, "properties": shown})  # fmt: skip
    return found


def _lines(resource: dict[str, Any]) -> list[str]:
    props = resource["properties"]
    kind = KINDS.get(resource["type"], resource["type"])
    lines = [f"- **{kind}** `{resource['name']}` ({resource['type']}, infra/{resource['file']})"]
    for key in SHOWN:
        if key in props:
            value = props[key]
            shown = ", ".join(_text(v) for v in value) if isinstance(value, list) else _text(value)
            lines.append(f"  - {key}: `{shown}`")
    owners = props.get("owners")
    if isinstance(owners, dict):  # who may update the registration (and add credentials to it) from now on
        lines.append(
            f"  - owners ({_text(owners.get('relationshipSemantics'))}): `{_text(owners.get('relationships'))}`"
        )
    for role in props.get("appRoles") or []:
        if isinstance(role, dict):
            members = ", ".join(_text(m) for m in role.get("allowedMemberTypes") or [])
            lines.append(f"  - app role `{_text(role.get('value'))}` for {members}: {_text(role.get('description'))}")
    permission, role_id = _hook_grant()
    for required in props.get("requiredResourceAccess") or []:
        for access in required.get("resourceAccess") or [] if isinstance(required, dict) else []:
            role = _text(access.get("id"))
            named = f"**{permission}** (app role `{role}`)" if role == role_id else f"app role `{role}`"
            lines.append(
                f"  - requires {named} of `{_text(required.get('resourceAppId'))}` "
                f"({'application' if _text(access.get('type')) == 'Role' else 'delegated'} permission)"
            )
    web = props.get("web") if isinstance(props.get("web"), dict) else {}
    if web.get("redirectUris"):
        lines.append(f"  - redirect URIs: `{', '.join(_text(u) for u in web['redirectUris'])}`")
    return lines


def _hook_grant() -> tuple[str, str]:
    """The Graph application permission the postprovision hook grants: its name and app role id."""
    source = (ROOT / "infra" / "hooks" / "azd_hooks.py").read_text()
    constants = {t.id: n.value.value for n in ast.parse(source).body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}  # fmt: skip
    return str(constants["PERMISSION"]), str(constants["SECURITY_EVENTS_READWRITE_ALL"])


def _on_this_run(condition: str, infra: Path, env: Mapping[str, str]) -> str:
    """For a module condition of `empty(parameter)` terms joined by `&&` (a registration given instead), whether
    this run's settings deploy it: each parameter's azd setting comes from main.parameters.json."""
    terms = [term.strip() for term in condition.split("&&")]
    parameters = [re.fullmatch(r"empty\((\w+)\)", term) for term in terms]
    if not all(parameters):
        return ""
    values = json.loads((infra / "main.parameters.json").read_text())["parameters"]
    for match in parameters:
        assert match is not None
        setting = re.search(r"\$\{(\w+)", str(values.get(match[1], {}).get("value", "")))
        if setting and env.get(setting[1], "").strip():
            return f": not on this run, {setting[1]} is set"
    return ": on this run"


def summary(infra: Path, env: Mapping[str, str]) -> str:
    resources = graph_resources(infra)
    grant = env.get("GRANT_GRAPH_PERMISSION", "").strip().lower() == "true"
    out = ["### Microsoft Graph (Entra ID) changes: not in the preview above", "", WHAT_IF, ""]
    for condition in dict.fromkeys(r["condition"] for r in resources):
        deployed = "always" if not condition else f"when `{condition}`" + _on_this_run(condition, infra, env)
        out.append(f"Declared in the Bicep, deployed {deployed}:")
        out.extend(line for r in resources if r["condition"] == condition for line in _lines(r))
        out.append("")
    if any(isinstance(r["properties"].get("owners"), dict) for r in resources):
        named = env.get("ENTRA_APP_OWNER_IDS", "").strip()
        out.append(
            "Owners (`appOwners`, infra/main.bicep) may update these registrations and add credentials to them: "
            f"the principal that deploys, and ENTRA_APP_OWNER_IDS: {f'`{named}`' if named else 'none set'}."
        )
        out.append("")
    permission, role_id = _hook_grant()
    out.append(f"After provisioning, the postprovision hook (infra/hooks/azd_hooks.py) grants the function app's "
               f"managed identity the Microsoft Graph application permission **{permission}** (app role `{role_id}`) "
               f"when GRANT_GRAPH_PERMISSION=true: {'on this run' if grant else 'not on this run'}.")  # fmt: skip
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "infra", os.environ), end="")
