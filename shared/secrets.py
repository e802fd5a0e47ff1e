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


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...


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


class KeyVaultSecretStore:
    """Key Vault through azure-keyvault-secrets and `DefaultAzureCredential` (the app's managed identity).

    `delete` writes a tombstone instead of deleting: with soft delete and purge protection on, a deleted
    name cannot be set again until its retention ends, which would block reconnecting after a disconnect.
    """

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
