"""Helpers for the templates tests: the templates API called as the worker calls it, and what Graph was sent."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Harness

DLP = ["DLPEnabled", "InformationProtectionPolicies", "mip_DLP_policies"]  # the catalogue's data loss prevention


def body(response: Any) -> Any:
    return json.loads(response.get_body() or b"null")


def template(**overrides: Any) -> dict[str, Any]:
    return {"name": "Mail filter", "controls": DLP, "state": "ThirdParty", "comment": "Covered by the mail filter",
            "tenants": ["home"], **overrides}  # fmt: skip


def create(harness: Harness, payload: Any, headers: dict[str, str] | None = None) -> Any:
    return harness.call("create_template", "POST", "/templates", body=json.dumps(payload).encode(), headers=headers)


def created(harness: Harness, payload: Any) -> dict[str, Any]:
    response = create(harness, payload)
    assert response.status_code == 201, response.get_body()
    return dict(body(response))


def get(harness: Harness, template_id: str) -> Any:
    return harness.call("get_template", path=f"/templates/{template_id}", route_params={"id": template_id})


def put(harness: Harness, template_id: str, payload: Any, if_match: str | None = "current") -> Any:
    headers = {}
    if if_match == "current":
        headers["If-Match"] = get(harness, template_id).headers["ETag"]
    elif if_match is not None:
        headers["If-Match"] = if_match
    return harness.call("put_template", "PUT", f"/templates/{template_id}", body=json.dumps(payload).encode(),
                        headers=headers, route_params={"id": template_id})  # fmt: skip


def delete(harness: Harness, template_id: str, if_match: str | None = "current") -> Any:
    headers = {}
    if if_match == "current":
        headers["If-Match"] = get(harness, template_id).headers["ETag"]
    elif if_match is not None:
        headers["If-Match"] = if_match
    return harness.call("delete_template", "DELETE", f"/templates/{template_id}", headers=headers,
                        route_params={"id": template_id})  # fmt: skip


def preview(harness: Harness, template_id: str) -> dict[str, Any]:
    response = harness.call("preview_template", "POST", f"/templates/{template_id}/preview",
                            route_params={"id": template_id})  # fmt: skip
    assert response.status_code == 200, response.get_body()
    return dict(body(response))


def apply(harness: Harness, template_id: str, payload: Any = None) -> dict[str, Any]:
    raw = json.dumps(payload).encode() if payload is not None else b""
    response = harness.call("apply_template", "POST", f"/templates/{template_id}/apply", body=raw,
                            route_params={"id": template_id})  # fmt: skip
    assert response.status_code == 200, response.get_body()
    return dict(body(response))


def patches(harness: Harness, tenant: str | None = None) -> list[Any]:
    """The PATCHes Graph got (of one tenant's, by id, when given)."""
    requests = harness.graph.tenant(tenant).requests if tenant else harness.graph.requests
    return [r for r in requests if r.method == "PATCH"]


def states(harness: Harness, controls: list[str], tenant: str | None = None) -> dict[str, str]:
    data = harness.graph.tenant(tenant) if tenant else harness.graph.home
    return {c: data.state_of(c)["state"] for c in controls}
