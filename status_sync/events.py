"""Push: a ServiceNow business rule's change notice, signed with HMAC-SHA256 over "{timestamp}.{body}".

Each connection has its own key (base64, as ServiceNow's `CertificateEncryption.generateMac` takes it): the default
connection's is the Key Vault secret `servicenow-webhook-secret`, as before connections; an added connection's is
minted when it is added (`servicenow-webhook-secret-{id}`), and its notices name it (`?connection={id}`). A notice is
checked with the key of the connection it names, and acts only on that connection's tickets, so one instance's admin
(who holds that instance's key) can never move another customer's ticket. The signature is base64. A notice older or
newer than five minutes is refused. A notice is a hint, not the truth (docs/design.md#robustness): it names a `sys_id`,
the connector reads that record from ServiceNow (one GET, only the fields it needs) and applies what
ServiceNow says, so order, replays, equal timestamps or a forged time cannot move a ticket backwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

from shared.connections import DEFAULT
from shared.edge import Inbound
from shared.problems import FieldError, NotConfigured, NotFound, Unauthorized, ValidationFailed
from shared.records import apply_record, mark_missing, record_fields
from shared.servicenow import table_result
from shared.services import Services
from shared.text import ascii_int
from shared.tickets import SYS_ID
from templates.api import risk_acceptor

MAX_SKEW_SECONDS = 300
MAX_NOTICE = 16 * 1024
TIMESTAMP_HEADER = "X-ServiceNow-Timestamp"
SIGNATURE_HEADER = "X-ServiceNow-Signature"


def sign(secret_b64: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret_b64, validate=True)
    return base64.b64encode(hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()).decode()


def verify(services: Services, inbound: Inbound) -> tuple[Services, str]:
    """The services of the connection the notice names (the default one when it names none) and the `sys_id` the
    notice names, once its signature (with that connection's own key) and timestamp check out."""
    try:
        connection = services.connection_named(inbound.params.get("connection") or DEFAULT)
    except (NotFound, ValidationFailed):  # anonymous: which ids exist is not said; the key alone would not do either
        raise Unauthorized(
            "The notice names no ServiceNow connection the connector has, so it cannot be verified."
        ) from None
    services = services.for_connection(connection)
    name = connection.push_secret_name
    secret = services.secrets.get(name)
    if not secret:
        raise NotConfigured(
            f"ServiceNow connection '{connection.id}' has no push-notice key, so its change notices cannot be "
            "verified.",
            remediation=(
                f"Store a random base64 key (e.g. `openssl rand -base64 32`) as the secret '{name}' and the same "
                "value in that instance's business rule's system property (docs/status-sync.md: Push notices)."
            ),
        )
    timestamp = inbound.header(TIMESTAMP_HEADER) or ""
    signature = inbound.header(SIGNATURE_HEADER) or ""
    seconds = ascii_int(timestamp, max_digits=12)
    if seconds is None or abs(services.clock().timestamp() - seconds) > MAX_SKEW_SECONDS:
        raise Unauthorized("The notice's timestamp is missing, not a number of seconds, or more than five minutes off.")
    try:
        expected = sign(secret, timestamp.strip(" \t"), inbound.raw)
    except (binascii.Error, ValueError):
        raise NotConfigured(f"The secret '{name}' is not valid base64.") from None
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode()):
        raise Unauthorized(f"The notice's signature does not match ServiceNow connection '{connection.id}''s key.")
    notice = inbound.json
    if not isinstance(notice, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    sys_id = notice.get("sys_id")
    if not isinstance(sys_id, str) or not SYS_ID.fullmatch(sys_id):
        raise ValidationFailed([FieldError("sys_id", "must be a 32-character sys_id")])
    return services, sys_id


def apply_notice(services: Services, sys_id: str) -> str:
    """`updated`, `unchanged` or `unknown` (a record of this connection the store does not track; the next sync
    looks at it). `services` are the connection's the notice was signed for: a ticket on any other connection (or
    on an earlier connection of the same id) is unknown to it."""
    found = services.store.find_ticket_by_sys_id(sys_id)
    if found is None or not services.connection.serves(found[0]):
        return "unknown"
    ticket = found[0]
    try:
        record = _read(services, ticket.table, sys_id)
    except NotFound:  # deleted, or hidden by ACLs: what the sweep would conclude
        return "updated" if mark_missing(services, ticket.id) else "unchanged"
    return "updated" if apply_record(services, ticket.id, record, risk_acceptor(services.store)) else "unchanged"


def _read(services: Services, table: str, sys_id: str) -> dict[str, Any]:
    response = services.servicenow.table_request(
        services.tokens,
        "GET",
        table,
        sys_id=sys_id,  # validated as 32 hex: the URL path carries nothing else
        params={"sysparm_fields": record_fields(services), "sysparm_exclude_reference_link": "true"},
    )
    return table_result(response)
