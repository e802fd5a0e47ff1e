"""Azurite's Table service (and, for the fan-out, its Queue service) on free loopback ports, for the tests, the
benchmarks and the local host (installed by `npm ci --prefix tools`, which `make test` and `make bench` run).

Azurite serves the Queue service as the Storage account does, so queue triggers run against a real queue, not a fake:
https://learn.microsoft.com/azure/storage/common/storage-use-azurite"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "tools" / "node_modules" / ".bin" / "azurite-table"
ALL_SERVICES = ROOT / "tools" / "node_modules" / ".bin" / "azurite"  # Blob, Queue and Table in one process
# Azurite's published development account: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteUnavailable(RuntimeError):
    """Azurite is not installed or did not start; the message says which."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Azurite:
    """One Azurite Table service on a loopback port that a test can stop and start again on the same port; with
    `queues`, Azurite's Queue service beside it in the same process (and its Blob service, which Azurite's all-in-one
    command always starts; nothing uses it).

    In memory (the default) it loses everything when it stops, as Azurite documents for `--inMemoryPersistence`
    ("If the Azurite process is terminated, all data is lost"); with `on_disk` it keeps its tables in `workdir`
    and loads them again on start, so a stop is an outage, not a loss (a SIGKILL may still lose its newest writes:
    Azurite saves its database files on a timer and on a clean exit).
    """

    def __init__(self, workdir: Path, *, on_disk: bool = False, queues: bool = False) -> None:
        binary = ALL_SERVICES if queues else BINARY
        if not binary.exists() or shutil.which("node") is None:
            raise AzuriteUnavailable(f"{binary} is missing (npm ci --prefix tools)")
        self.binary = binary
        self.workdir = workdir
        self.on_disk = on_disk
        self.port = free_port()
        self.queue_port = free_port() if queues else None
        self.blob_port = free_port() if queues else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        queue = f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/devstoreaccount1;" if self.queue_port else ""
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={ACCOUNT_KEY};TableEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;{queue}"
        )

    def start(self) -> None:
        storage = ["--location", str(self.workdir)] if self.on_disk else ["--inMemoryPersistence"]
        others = []
        if self.queue_port is not None:
            others = ["--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
                      "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port)]  # fmt: skip
        self.process = subprocess.Popen(
            [str(self.binary), "--tableHost", "127.0.0.1", "--tablePort", str(self.port), *others, *storage,
             "--skipApiVersionCheck", "--disableProductStyleUrl", "--disableTelemetry", "--silent"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for port in (self.port, self.queue_port):
            if port is not None:
                _wait_for(self.process, port)

    def stop(self) -> None:
        """A clean stop: Azurite closes (and, on disk, saves its tables) on SIGINT, as Ctrl-C does; connections
        are refused until `start`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused Azurite handles no signal until it runs again
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Azurite hangs (SIGSTOP): connections open, nothing answers, until `resume`."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextmanager
def azurite_tables(workdir: Path, *, queues: bool = False) -> Iterator[str]:
    """Start Azurite (in memory; with `queues`, its Queue service too) and yield its connection string; stop it on
    exit."""
    with Azurite(workdir, queues=queues) as azurite:
        yield azurite.connection_string


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
