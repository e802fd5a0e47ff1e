"""Azurite's Table service on a free loopback port, for the tests and the benchmarks (installed by
`npm ci --prefix tools`, which `make test` and `make bench` run)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "tools" / "node_modules" / ".bin" / "azurite-table"
# Azurite's published development account: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteUnavailable(RuntimeError):
    """Azurite is not installed or did not start; the message says which."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def azurite_tables(workdir: Path) -> Iterator[str]:
    """Start Azurite (in memory) and yield its connection string; stop it on exit."""
    if not BINARY.exists() or shutil.which("node") is None:
        raise AzuriteUnavailable(f"{BINARY} is missing (npm ci --prefix tools)")
    port = free_port()
    process = subprocess.Popen(
        [str(BINARY), "--tableHost", "127.0.0.1", "--tablePort", str(port), "--inMemoryPersistence",
         "--skipApiVersionCheck", "--disableProductStyleUrl", "--silent"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(process, port)
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={ACCOUNT_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                err = process.stderr.read().decode()[-500:] if process.stderr else ""
                raise AzuriteUnavailable(f"it did not start: {err}") from None
            time.sleep(0.2)
