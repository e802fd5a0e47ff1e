"""SecretStore: where the client secret and the token bundle live.

`FileSecretStore` keeps one JSON file (mode 0600, atomic replace) for local runs; `KeyVaultSecretStore`
uses Key Vault in Azure. Values are opaque strings; callers never log them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from shared.problems import NotConfigured

# Secret names (Key Vault), not secret values.
CLIENT_SECRET = "servicenow-client-secret"  # noqa: S105
TOKEN_BUNDLE = "servicenow-token"  # noqa: S105
WEBHOOK_SECRET = "servicenow-webhook-secret"  # noqa: S105


def replace_private_file(path: Path, text: str) -> None:
    """Write `text` to a temp file readable by its owner only, then move it over `path`: a reader sees the old
    content or the new, and a crash leaves the old, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class Erased:
    """What became of a secret the connector erased (a removed connection's): `purged` (gone, with every earlier
    version), `deleted` (soft-deleted: every version recoverable until `until` by someone allowed to recover
    secrets, then purged by the vault itself; `why` says why it was not purged now), or `absent` (there was none)."""

    name: str
    state: str
    until: datetime | None = None
    why: str | None = None


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def erase(self, name: str) -> Erased: ...


class FileSecretStore:
    """One JSON object in one file. Writes go to a temp file that replaces the old one, so a reader
    sees either the old or the new content; an flock serializes writers across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        with self._lock, open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write(self, data: dict[str, str]) -> None:
        replace_private_file(self.path, json.dumps(data))

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        with self._exclusive():
            data = self._read()
            data[name] = value
            self._write(data)

    def delete(self, name: str) -> None:
        with self._exclusive():
            data = self._read()
            if data.pop(name, None) is not None:
                self._write(data)

    def erase(self, name: str) -> Erased:
        """The file keeps no history: a deleted secret is gone (the file is replaced whole)."""
        with self._exclusive():
            data = self._read()
            if data.pop(name, None) is None:
                return Erased(name, "absent")
            self._write(data)
        return Erased(name, "purged")


class KeyVaultSecretStore:
    """Key Vault through azure-keyvault-secrets and `DefaultAzureCredential` (the app's managed identity).

    `delete` writes a tombstone instead of deleting: with soft delete and purge protection on, a deleted
    name cannot be set again until its retention ends, which would block reconnecting after a disconnect.
    `erase` really deletes (a removed connection's secrets): every version goes, soft-deleted, then purged where the
    vault allows it (https://learn.microsoft.com/en-us/rest/api/keyvault/secrets/delete-secret/delete-secret,
    https://learn.microsoft.com/en-us/rest/api/keyvault/secrets/purge-deleted-secret/purge-deleted-secret,
    https://learn.microsoft.com/en-us/azure/key-vault/general/soft-delete-overview).
    """

    DELETE_WAIT = 60.0  # seconds to wait for Key Vault to finish a deletion before purging

    TOMBSTONE = "-deleted-"

    def __init__(self, vault_url: str, credential: Any = None, **client_options: Any) -> None:
        self.vault_url = vault_url
        self._credential = credential
        self._client_options = client_options
        self._client: Any = None
        self._lock = threading.Lock()

    def _secrets(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from azure.keyvault.secrets import SecretClient  # lazy: cold start

                    credential = self._credential
                    if credential is None:
                        from azure.identity import DefaultAzureCredential

                        credential = DefaultAzureCredential(
                            managed_identity_client_id=os.environ.get("AZURE_CLIENT_ID") or None
                        )
                    self._client = SecretClient(self.vault_url, credential, **self._client_options)
        return self._client

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Key Vault's refusals become `not_configured` problems that say which role or network rule is missing."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

        try:
            yield
        except ClientAuthenticationError as exc:
            raise NotConfigured(
                f"The app's identity could not sign in to Key Vault ({type(exc).__name__}).",
                remediation="Check AZURE_CLIENT_ID names the app's user-assigned managed identity.",
            ) from None
        except ServiceRequestError:
            raise NotConfigured(
                f"Key Vault at {self.vault_url} could not be reached.",
                remediation="Check KEY_VAULT_URL and that the vault's firewall admits the app.",
            ) from None
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise NotConfigured(
                    f"Key Vault refused the app's identity ({exc.status_code}).",
                    remediation=f"Give the app's managed identity 'Key Vault Secrets Officer' on {self.vault_url}.",
                ) from None
            raise

    def get(self, name: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        with self._translated():
            try:
                value = self._secrets().get_secret(name).value
            except ResourceNotFoundError:
                return None
        return None if value in (None, self.TOMBSTONE) else str(value)

    def set(self, name: str, value: str) -> None:
        with self._translated():
            self._secrets().set_secret(name, value, content_type="application/json" if value[:1] == "{" else None)

    def delete(self, name: str) -> None:
        if self.get(name) is not None:
            with self._translated():
                self._secrets().set_secret(name, self.TOMBSTONE)

    def erase(self, name: str) -> Erased:
        """Delete every version of `name`, then purge it. With purge protection (the deployment's vault has it) the
        purge is refused (403) and the deleted secret stays recoverable until its scheduled purge date."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        with self._translated():
            client = self._secrets()
            try:
                poller = client.begin_delete_secret(name)
            except ResourceNotFoundError:
                try:  # deleted before (a removal that stopped half way and is done again)
                    deleted = client.get_deleted_secret(name)
                except ResourceNotFoundError:
                    return Erased(name, "absent")
            else:
                poller.wait(timeout=self.DELETE_WAIT)  # deletion completes in the background; a purge must wait
                deleted = poller.result()
        if deleted.recovery_id is None:  # a vault without soft delete: the deletion was final
            return Erased(name, "purged")
        until = deleted.scheduled_purge_date
        try:
            with self._translated_purge():
                self._secrets().purge_deleted_secret(name)
        except _PurgeRefused as refused:
            return Erased(name, "deleted", until, refused.why)
        except HttpResponseError:
            return Erased(name, "deleted", until, "Key Vault did not purge it (it failed, try again later)")
        return Erased(name, "purged")

    @contextlib.contextmanager
    def _translated_purge(self) -> Iterator[None]:
        from azure.core.exceptions import HttpResponseError

        try:
            yield
        except HttpResponseError as exc:
            message = str(getattr(exc, "message", "") or exc)
            if exc.status_code == 403 and "purge protection" in message.lower():
                raise _PurgeRefused("the vault has purge protection, so Key Vault purges it itself at the end of "
                                    "its retention") from None  # fmt: skip
            if exc.status_code == 403:
                raise _PurgeRefused("the app's identity may not purge secrets in this vault") from None
            raise


class _PurgeRefused(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
