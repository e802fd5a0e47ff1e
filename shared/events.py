"""Push: a ServiceNow business rule's change notice, signed with HMAC-SHA256 over "{timestamp}.{body}".

The key is the Key Vault secret `servicenow-webhook-secret` (base64, as ServiceNow's
`CertificateEncryption.generateMac` takes it); the signature is base64. A notice older or newer than
five minutes is refused, so a captured notice cannot be replayed later; within the window a replay only
re-applies the same state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from shared.problems import FieldError, NotConfigured, Unauthorized, ValidationFailed
from shared.secrets import WEBHOOK_SECRET
from shared.services import Services
from shared.sync import StatusSync
from shared.tickets import SERVICENOW_TIME, SYS_ID

MAX_SKEW_SECONDS = 300
MAX_NOTICE = 16 * 1024
TIMESTAMP_HEADER = "x-servicenow-timestamp"
SIGNATURE_HEADER = "x-servicenow-signature"


def sign(secret_b64: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret_b64, validate=True)
    return base64.b64encode(hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name) or headers.get(name.title()) or ""


def verify(services: Services, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The notice's JSON, once its signature and timestamp check out."""
    if len(body) > MAX_NOTICE:
        raise ValidationFailed([FieldError("body", f"must be at most {MAX_NOTICE} bytes")])
    secret = services.secrets.get(WEBHOOK_SECRET)
    if not secret:
        raise NotConfigured(
            "No webhook secret is configured, so change notices cannot be verified.",
            remediation=(
                f"Store a random base64 key (e.g. `openssl rand -base64 32`) as the secret '{WEBHOOK_SECRET}' "
                "and the same value in the business rule's system property (README: Push notices)."
            ),
        )
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    now = services.clock().timestamp()
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise Unauthorized("The notice's timestamp is missing or more than five minutes off.")
    try:
        expected = sign(secret, timestamp, body)
    except (binascii.Error, ValueError):
        raise NotConfigured(f"The secret '{WEBHOOK_SECRET}' is not valid base64.") from None
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise Unauthorized("The notice's signature does not match.")
    try:
        notice = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        notice = None
    if not isinstance(notice, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    errors = []
    if not SYS_ID.fullmatch(str(notice.get("sys_id", ""))):
        errors.append(FieldError("sys_id", "must be a 32-character sys_id"))
    if not isinstance(notice.get("state"), str) or len(notice["state"]) > 40:
        errors.append(FieldError("state", "must be the record's state value"))
    if not SERVICENOW_TIME.fullmatch(str(notice.get("sys_updated_on", ""))):
        errors.append(FieldError("sys_updated_on", "must be 'YYYY-MM-DD HH:MM:SS' (UTC)"))
    if errors:
        raise ValidationFailed(errors)
    return notice


def apply_notice(services: Services, notice: dict[str, Any]) -> str:
    """`updated`, `unchanged` or `unknown` (a record the store does not track; the next sync adopts it)."""
    found = services.store.find_ticket_by_sys_id(notice["sys_id"])
    if found is None:
        return "unknown"
    row = {
        "sys_id": notice["sys_id"],
        "number": str(notice.get("number") or "")[:40],
        services.settings.field_map.target("state"): notice["state"],
        "sys_updated_on": notice["sys_updated_on"],
    }
    return "updated" if StatusSync(services).apply_record(found[0].id, row) else "unchanged"
