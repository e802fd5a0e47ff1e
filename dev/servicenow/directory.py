"""The groups and companies a ServiceNow instance holds, for routes (docs/design.md#connections-and-routes):
`sys_user_group` (what an incident's `assignment_group` references) and `core_company` (its `company`), each with a few
records and, as on real instances where teams and customers grow over the years, two records that share a name. Groups
have an `active` flag, and a retired group often keeps its name (docs/design.md#servicenow-facts): "Cloud
Security" is an active group and a retired one, and "Network Operations" only a retired one. A record's display
value is its `name` (the tables' display field in the base system), so a name alone can be ambiguous: the
connector resolves names to sys_ids when routes are saved (docs/design.md#servicenow-facts).
"""

from __future__ import annotations

from typing import Any

GROUP_FIELDS = {"sys_id", "name", "description", "email", "active", "type", "manager", "sys_created_on",
                "sys_updated_on"}  # fmt: skip
COMPANY_FIELDS = {"sys_id", "name", "customer", "vendor", "city", "country", "phone", "sys_created_on",
                  "sys_updated_on"}  # fmt: skip
SERVICE_DESK = "d625dccec0a8016700a222a0f7900d06"
SERVICE_DESK_EMEA = "8a5055c9c61122780043563ef53438e3"  # a second group named "Service Desk"
IDENTITY_TEAM = "477a05d153013010b846ddeeff7b1225"
ENDPOINT_TEAM = "0a52d3dcd7011200f2d224837e6103f2"
CLOUD_TEAM = "019ad92ec7230010393d265c95c260dd"
CLOUD_TEAM_RETIRED = "5f3a1c9e7b2d4e6f8a0b1c2d3e4f5a6b"  # inactive, same name as CLOUD_TEAM
NETWORK_TEAM_RETIRED = "6a4b2d0f8c3e5f7a9b1c2d3e4f5a6b7c"  # inactive, its name nobody else's
CONTOSO = "81fca4cbac1d55eb355b4b6db0e3c80f"
CONTOSO_SUBSIDIARY = "187d13f03710200044e0bfc8bcbe5df3"  # a second company named "Contoso"
FABRIKAM = "d14b8c2a9f3e4b7c8a6d5e4f3a2b1c0d"
NORTHWIND = "e25c9d3b0a4f4c8d9b7e6f5a4b3c2d1e"

GROUPS = [
    (SERVICE_DESK, "Service Desk", "First line: every incident nobody else owns", "servicedesk@example.com"),
    (SERVICE_DESK_EMEA, "Service Desk", "First line for the EMEA region", "servicedesk.emea@example.com"),
    (IDENTITY_TEAM, "Identity and Access Management", "Entra ID, MFA and Conditional Access", "iam@example.com"),
    (ENDPOINT_TEAM, "Endpoint Security", "Defender for Endpoint and Intune", "endpoint@example.com"),
    (CLOUD_TEAM, "Cloud Security", "Defender for Cloud and Azure policy", "cloudsec@example.com"),
]  # fmt: skip
RETIRED_GROUPS = [
    (CLOUD_TEAM_RETIRED, "Cloud Security", "Retired in 2023: the team before the merger", "cloud.old@example.com"),
    (NETWORK_TEAM_RETIRED, "Network Operations", "Retired: now part of Cloud Security", "netops@example.com"),
]  # fmt: skip
COMPANIES = [
    (CONTOSO, "Contoso", "Seattle", "USA"),
    (CONTOSO_SUBSIDIARY, "Contoso", "Reading", "UK"),
    (FABRIKAM, "Fabrikam", "Amsterdam", "Netherlands"),
    (NORTHWIND, "Northwind Traders", "Lyon", "France"),
]


def records(stamp: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The two tables' records, every value a string as the Table API returns them."""
    groups = {
        sys_id: {"sys_id": sys_id, "name": name, "description": description, "email": email,
                 "active": "false" if (sys_id, name, description, email) in RETIRED_GROUPS else "true",
                 "type": "", "manager": "", "sys_created_on": stamp, "sys_updated_on": stamp}
        for sys_id, name, description, email in GROUPS + RETIRED_GROUPS
    }  # fmt: skip
    companies = {
        sys_id: {"sys_id": sys_id, "name": name, "customer": "true", "vendor": "false", "city": city,
                 "country": country, "phone": "", "sys_created_on": stamp, "sys_updated_on": stamp}
        for sys_id, name, city, country in COMPANIES
    }  # fmt: skip
    return {"sys_user_group": groups, "core_company": companies}
