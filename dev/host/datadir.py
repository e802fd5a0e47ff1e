"""`LOCAL_DATA_DIR` belongs to one `make run` at a time, and `make reset` empties it.

Two runs on one folder would share the token bundle, the ticket store and the simulator's state while each
simulator holds its own copy in memory: tokens and numbers would clash silently. So a run holds an exclusive
`flock` on a lock file in the folder for as long as it lives (the kernel drops it when the process ends, however
it ends), and a second run is refused with a message naming the folder and the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from typing import TextIO

LOCK_FILE = "make-run.lock"
# What `make run` keeps in the folder: the secrets (token bundle), the ticket store, the simulators' state and the
# Entra simulator's CA.
DATA_FILES = (
    "secrets.json",
    "secrets.json.lock",
    "connector.db",
    "connector.db-wal",
    "connector.db-shm",
    "connector.db-journal",
    "servicenow-simulator.json",
    "servicenow-simulator-2.json",
    "entra-simulator.json",
    "entra-simulator-ca.pem",
    "entra-simulator-ca-bundle.pem",
    "local-api-token",
)
# `make run HOSTS=n`: the store Azurite keeps for the hosts, and the other hosts' logs.
DATA_FOLDERS = ("azurite",)
HOST_LOGS = "host-*.log"
API_TOKEN_FILE = "local-api-token"  # what curl sends as its bearer token (dev/host/easyauth.py)


class DataDirInUse(Exception):
    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is in use by {holder or 'another process'}")
        self.path = path
        self.holder = holder


def hold(data_dir: Path) -> TextIO:
    """Take the folder for this process; keep the returned file open while running. `DataDirInUse` if taken."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held open while running
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()[:40]
        handle.close()
        raise DataDirInUse(data_dir, f"process {holder}" if holder.isdigit() else "") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def reset(data_dir: Path) -> list[str]:
    """Remove what `make run` keeps (store, secrets, simulator state) together, under the lock; the names
    removed. Only these files: LOCAL_DATA_DIR may name a folder that holds other things too."""
    if not data_dir.is_dir():
        return []
    removed = []
    with hold(data_dir) as handle:
        for name in DATA_FILES:
            with contextlib.suppress(FileNotFoundError):
                (data_dir / name).unlink()
                removed.append(name)
        for folder in DATA_FOLDERS:
            if (data_dir / folder).is_dir():
                shutil.rmtree(data_dir / folder)
                removed.append(f"{folder}/")
        for log in sorted(data_dir.glob(HOST_LOGS)):
            log.unlink()
            removed.append(log.name)
        for leftover in data_dir.glob(".*.tmp"):  # an interrupted atomic write
            leftover.unlink()
        handle.truncate(0)
    return removed


def api_token(data_dir: Path) -> str:
    """The local API token in the folder (readable by its owner only), made once and kept across restarts, so a
    command printed by an earlier run still works; `make reset` makes a new one. Call it while holding the folder."""
    path = data_dir / API_TOKEN_FILE
    with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
        kept = path.read_text(encoding="ascii").strip()
        if 40 <= len(kept) <= 100 and kept.replace("-", "").replace("_", "").isalnum():
            return kept
    token = secrets.token_urlsafe(32)
    temporary = data_dir / f".{API_TOKEN_FILE}.tmp"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    os.replace(temporary, path)
    return token
