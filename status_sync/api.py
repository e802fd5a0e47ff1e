"""The status sync's public face (the import-linter contract `public`, pyproject.toml;
docs/design.md#layout-and-ownership): one connection's run and every connection's, for the local host and the
benchmarks. No feature imports the status sync; it is the top of the house."""

from __future__ import annotations

from status_sync.every import sync_every_connection
from status_sync.sync import PAGE_SIZE, StatusSync

__all__ = ["PAGE_SIZE", "StatusSync", "sync_every_connection"]
