"""A local HTTPS fake of the Key Vault secrets REST API, with the bearer challenge, plus the App Service
managed-identity token endpoint, so the real SDK and `DefaultAzureCredential` run unchanged against it.

Deletion answers as Key Vault does with soft delete (on in every vault since 2025, learn
`azure/key-vault/general/soft-delete-overview`):
- `DELETE /secrets/{name}`: 200 with the DeletedSecretBundle (`recoveryId`, `deletedDate`, `scheduledPurgeDate`,
  `attributes.recoveryLevel` and `recoverableDays`) and every version goes with it
  (learn `rest/api/keyvault/secrets/delete-secret/delete-secret`); 404 `SecretNotFound` when there is none;
- `GET /deletedsecrets/{name}`: 404 while the deletion is still under way, then 200 with the bundle
  (learn `rest/api/keyvault/secrets/get-deleted-secret/get-deleted-secret`; azure-keyvault-secrets' delete poller
  waits for it);
- `DELETE /deletedsecrets/{name}`: 204 (learn `rest/api/keyvault/secrets/purge-deleted-secret/purge-deleted-secret`),
  or, in a vault with purge protection, 403 `Forbidden` "Operation "purge" is not allowed because purge protection
  is enabled for this vault..." (Key Vault's own words, as reported in Azure/AzureTRE#1951);
- a secret soft-deleted and not purged keeps its name: `GET /secrets/{name}` is 404 and `PUT` is 409 `Conflict`
  "... is currently in a deleted but recoverable state, and its name cannot be reused" (learn
  `azure/key-vault/general/common-error-codes`; Azure/azure-rest-api-specs#9222).
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
_SECRET_PATH = re.compile(r"^/secrets/([0-9a-zA-Z-]{1,127})(?:/([0-9a-f]{32})?)?/?$")
_DELETED_PATH = re.compile(r"^/deletedsecrets/([0-9a-zA-Z-]{1,127})/?$")
DAY = 86400


@dataclass
class VaultState:
    secrets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    issued_tokens: set[str] = field(default_factory=set)
    identity_header: str = field(default_factory=lambda: secrets.token_hex(16))
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, authorized
    token_requests: int = 0
    forbidden: bool = False  # answer 403 as Key Vault does when the identity lacks a data-plane role
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> its DeletedSecretBundle and versions
    purge_protection: bool = False  # the deployment's vault has it (infra/main.bicep)
    retention_days: int = 90
    deleting_polls: int = 0  # GETs of a deleted secret answered 404 (deletion under way) before it shows
    lock: threading.Lock = field(default_factory=threading.Lock)


class _VaultHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        auth = self.headers.get("Authorization", "")
        authorized = auth.startswith("Bearer ") and auth[7:] in state.issued_tokens
        with state.lock:
            state.requests.append((self.command, parts.path, authorized))
        if "api-version" not in parse_qs(parts.query):
            return self._json(400, {"error": {"code": "MissingApiVersionParameter", "message": "api-version"}})
        if not authorized:
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net"'
            )
            return self._json(
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                {"WWW-Authenticate": challenge},
            )
        if state.forbidden:
            return self._json(
                403,
                {"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.",
                           "innererror": {"code": "ForbiddenByRbac"}}},
            )  # fmt: skip
        base = f"https://{self.headers.get('Host')}"
        deleted = _DELETED_PATH.match(parts.path)
        if deleted:
            return self._deleted(deleted.group(1))
        match = _SECRET_PATH.match(parts.path)
        if not match:
            return self._json(404, {"error": {"code": "NotFound", "message": "no such path"}})
        name, version = match.group(1), match.group(2)
        with state.lock:
            if name.lower() in {n.lower() for n in state.deleted}:  # names are case-insensitive in Key Vault
                if self.command == "PUT":
                    return self._json(409, {"error": {"code": "Conflict", "message": (
                        f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be "
                        "reused; in this state, the secret can only be recovered or purged."),
                        "innererror": {"code": "ObjectIsDeletedButRecoverable"}}})  # fmt: skip
                return self._not_found(name)
            if self.command == "DELETE" and version is None:
                versions = state.secrets.pop(name, None)
                if not versions:
                    return self._not_found(name)
                now = int(time.time())
                protected = state.purge_protection
                level = ("Recoverable" if protected else "Recoverable+Purgeable") if state.retention_days == 90 else (
                    "CustomizedRecoverable" if protected else "CustomizedRecoverable+Purgeable")  # fmt: skip
                bundle = {**{k: v for k, v in versions[-1].items() if k != "value"},
                          "recoveryId": f"{base}/deletedsecrets/{name}", "deletedDate": now,
                          "scheduledPurgeDate": now + state.retention_days * DAY}  # fmt: skip
                bundle["attributes"] = {**bundle["attributes"], "recoveryLevel": level,
                                        "recoverableDays": state.retention_days}  # fmt: skip
                state.deleted[name] = {"bundle": bundle, "versions": versions, "polls": state.deleting_polls}
                return self._json(200, bundle)
            if self.command == "PUT":
                payload = json.loads(body or b"{}")
                now = int(time.time())
                bundle = {
                    "value": payload.get("value", ""),
                    "id": f"{base}/secrets/{name}/{secrets.token_hex(16)}",
                    "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable"},
                }
                if payload.get("contentType"):
                    bundle["contentType"] = payload["contentType"]
                state.secrets.setdefault(name, []).append(bundle)
                return self._json(200, bundle)
            versions = state.secrets.get(name, [])
            if self.command == "GET":
                found = [b for b in versions if b["id"].endswith("/" + version)] if version else versions[-1:]
                if not found:
                    return self._not_found(name)
                return self._json(200, found[0])
        self._json(405, {"error": {"code": "MethodNotAllowed", "message": self.command}})

    def _not_found(self, name: str) -> None:
        self._json(
            404,
            {
                "error": {
                    "code": "SecretNotFound",
                    "message": f"A secret with (name/id) {name} was not found in this key vault.",
                }
            },
        )

    def _deleted(self, name: str) -> None:
        """`/deletedsecrets/{name}`: read (GET) or purge (DELETE) a soft-deleted secret."""
        state = self.server.state
        with state.lock:
            held = state.deleted.get(name)
            if held is None or (self.command == "GET" and held["polls"] > 0):
                if held is not None:
                    held["polls"] -= 1  # the deletion is still under way
                return self._json(404, {"error": {"code": "SecretNotFound",
                                                  "message": f"Deleted Secret not found: {name}"}})  # fmt: skip
            if self.command == "GET":
                return self._json(200, held["bundle"])
            if self.command != "DELETE":
                return self._json(405, {"error": {"code": "MethodNotAllowed", "message": self.command}})
            if state.purge_protection:
                return self._json(403, {"error": {"code": "Forbidden", "message": (
                    'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault '
                    "service will automatically purge it after the retention period has passed.\r\nVault: fake;"
                    "location=local")}})  # fmt: skip
            del state.deleted[name]
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_DELETE = do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:
        return


class _IdentityHandler(BaseHTTPRequestHandler):
    """The App Service managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER)."""

    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        if self.headers.get("X-IDENTITY-HEADER") != state.identity_header:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        token = secrets.token_urlsafe(32)
        with state.lock:
            state.issued_tokens.add(token)
            state.token_requests += 1
        resource = parse_qs(urlsplit(self.path).query).get("resource", [""])[0]
        data = json.dumps(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": "00000000-0000-0000-0000-000000000001",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], state: VaultState) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.state = state


class FakeKeyVault:
    def __init__(self, server_context: ssl.SSLContext) -> None:
        self.state = VaultState()
        self._vault = _Server(_VaultHandler, self.state)
        self._vault.socket = server_context.wrap_socket(self._vault.socket, server_side=True)
        self._identity = _Server(_IdentityHandler, self.state)
        self.url = f"https://localhost:{self._vault.server_address[1]}"
        self.identity_endpoint = f"http://127.0.0.1:{self._identity.server_address[1]}/msi/token"

    def start(self) -> FakeKeyVault:
        for server in (self._vault, self._identity):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self._vault, self._identity):
            server.shutdown()
            server.server_close()
