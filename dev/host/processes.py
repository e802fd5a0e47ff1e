"""Local hosts (`dev/host/run.py`) in processes of their own, as Azure runs instances of one app: the fan-out's
benchmark (bench/fanout.py) and `make run HOSTS=n` start them on one Azurite, so each host's work has its own
interpreter (docs/architecture.md#fan-out-on-storage-queues).

A host's output goes to a file (read for the line saying it started), so a host that logs a great deal never
blocks on a full pipe, and every wait has a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTED = "Ctrl-C stops."  # run.py's last line once it serves
MAX_HOSTS = 8
AZURITE_FOLDER = "azurite"  # in the data folder (datadir.DATA_FOLDERS: `make reset` empties it)
# Settings a host must not take from the caller's shell: each host gets them from `env` (or its own defaults).
_OWN = ("SERVICENOW_", "OAUTH_", "GRAPH_", "IDENTITY_", "WEBSITE_", "LOCAL_", "ENTRA_", "READER_", "APP_URL", "PORT",
        "SIMULATOR_PORT", "GRAPH_SIMULATOR_PORT", "SECOND_SIMULATOR_PORT", "ENTRA_SIMULATOR_PORT", "HOSTS")  # fmt: skip


class HostDidNotStart(RuntimeError):
    """The host ended, or did not say it serves, in time; the message ends with its last output."""


class HostProcess:
    """`dev/host/run.py` with `env` over the caller's environment, its output in `log`."""

    def __init__(self, env: Mapping[str, str], log: Path, *args: str, whole_environment: bool = False) -> None:
        """`whole_environment`: the caller's settings as they are (a `make run` starting its other hosts)."""
        base = {k: v for k, v in os.environ.items() if whole_environment or not k.startswith(_OWN)}
        self.log = log
        self.port = int(env.get("PORT") or "7071")
        self._output = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "dev" / "host" / "run.py"), *args],
            env={**base, **env},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while STARTED not in self.text:
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = "ended" if self.process.poll() is not None else f"did not start within {timeout:.0f} s"
                raise HostDidNotStart(f"a local host {why}:\n{self.text[-2000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (run.py stops at once), then SIGKILL if it has not ended within `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._output.close()


class Hosts:
    """`make run HOSTS=n`: the hosts after the first (ports from `first_port`, MORE_HOSTS_PORT, each checked free
    now, so a busy one stops the run before anything is written) and the Azurite they share; `error` is what a
    refusal raises (run.py's CannotStart, said at the terminal). With one host, every step does nothing."""

    def __init__(self, data_dir: Path, hosts: str | int, first_port: int, error: type[Exception]) -> None:
        count = str(hosts)
        if not (count.isascii() and count.isdigit() and 1 <= int(count) <= MAX_HOSTS):
            raise error(f"HOSTS={count} is not a number of local hosts (1-{MAX_HOSTS}).")
        self.data_dir = data_dir
        self.ports = [first_port + n for n in range(int(count) - 1)]
        self._error = error
        self._stack = contextlib.ExitStack()
        for number, port in enumerate(self.ports, start=2):
            try:
                socket.create_server(("127.0.0.1", port)).close()
            except OSError:
                raise error(
                    f"Port {port} (host {number} of HOSTS={count}; MORE_HOSTS_PORT is the second host's) cannot be "
                    "opened, so `make run` did not start and changed nothing.\n"
                    "Stop what uses it, or choose another, e.g.: MORE_HOSTS_PORT=8076 make run HOSTS=2"
                ) from None

    def share_storage(self) -> None:
        """Azurite (tables and queues, kept in the data folder) for every host: the store, and the fan-out's queue."""
        if not self.ports:
            return
        from dev.host.azurite import Azurite, AzuriteUnavailable

        folder = self.data_dir / AZURITE_FOLDER
        folder.mkdir(exist_ok=True)
        try:
            azurite = self._stack.enter_context(Azurite(folder, on_disk=True, queues=True))
        except AzuriteUnavailable as exc:
            raise self._error(f"HOSTS needs Azurite, and {exc}. `make run HOSTS=2` installs it.") from None
        os.environ.update(TICKET_STORE="tables", AzureWebJobsStorage=azurite.connection_string)
        os.environ.setdefault("FANOUT_THRESHOLD", "1")  # every refresh goes on the queue, to show the hosts share it

    def start_more(self, flag: str) -> list[str]:
        """The other hosts (`run.py flag`), each a process with this one's settings (the simulators, the store) and
        its own port; what the banner says of them."""
        if not self.ports:
            return []
        started = []
        for number, port in enumerate(self.ports, start=2):
            log = self.data_dir / f"host-{number}.log"
            host = HostProcess({"PORT": str(port)}, log, flag, whole_environment=True)
            self._stack.callback(host.stop)
            started.append((number, port, host))
        for _, _, host in started:
            try:
                host.wait_started()
            except HostDidNotStart as exc:
                raise self._error(f"Another host (HOSTS) did not start: {exc}") from None
        lines = [f"Host {n} of {len(self.ports) + 1} running at http://localhost:{p}/api/ (its own process, no "
                 f"timers; its log: {host.log})" for n, p, host in started]  # fmt: skip
        lines.append(
            f"The hosts share one Azurite (the store and the queues, kept in {self.data_dir / AZURITE_FOLDER}): a "
            f"Secure Score refresh of at least {os.environ.get('FANOUT_THRESHOLD')} tenant(s) (FANOUT_THRESHOLD) goes "
            "on the queue secure-score-refresh, one message per tenant, and whichever host polls first refreshes each."
        )
        return lines

    def close(self) -> None:
        """The other hosts, then Azurite (in the reverse order of their start)."""
        self._stack.close()
