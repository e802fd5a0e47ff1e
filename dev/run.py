"""`make run`: the connector on http://localhost:7071/api/... on its embedded defaults.

Settings come from the environment, then `local.settings.json` ("Values"), then these defaults:
SQLite store and file secret store under `.local/`, and, when no SERVICENOW_INSTANCE is configured,
the ServiceNow simulator on a loopback port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_local_settings(path: Path) -> None:
    if not path.exists():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    for name, value in values.items():
        if isinstance(value, str) and value and name not in os.environ:
            os.environ[name] = value


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    load_local_settings(ROOT / "local.settings.json")
    port = int(os.environ.get("PORT", "7071"))
    os.environ.setdefault("LOCAL_DATA_DIR", ".local")
    os.environ.setdefault("TICKET_STORE", "sqlite")
    os.environ.setdefault("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")  # the timer's %STATUS_SYNC_SCHEDULE%
    os.environ.setdefault("OAUTH_REDIRECT_URI", f"http://localhost:{port}/api/oauth/callback")

    notes = []
    if not os.environ.get("SERVICENOW_INSTANCE"):
        from dev.simulator import ServiceNowSimulator, serve
        from shared.secrets import TOKEN_BUNDLE, FileSecretStore

        simulator = ServiceNowSimulator()
        _, sim_url = serve(simulator, int(os.environ.get("SIMULATOR_PORT", "7072")))
        client_secret = secrets.token_urlsafe(24)
        simulator.register_client("local-connector", client_secret, [os.environ["OAUTH_REDIRECT_URI"]])
        os.environ.update(
            SERVICENOW_INSTANCE=sim_url, SERVICENOW_CLIENT_ID="local-connector", SERVICENOW_CLIENT_SECRET=client_secret
        )
        # The simulator keeps its tokens in memory only, so tokens from an earlier run mean nothing to it.
        FileSecretStore(Path(os.environ["LOCAL_DATA_DIR"]) / "secrets.json").delete(TOKEN_BUNDLE)
        notes.append(f"No SERVICENOW_INSTANCE is configured: using the ServiceNow simulator at {sim_url}.")

    from dev.host import LocalHost, load_app

    key = os.environ.get("LOCAL_FUNCTION_KEY") or None  # unset: no key checks, like Core Tools
    host = LocalHost(load_app().get_functions(), "127.0.0.1", port, function_key=key)
    host.start()
    routes = "\n".join(f"  {'/'.join(sorted(f.methods)):6} {host.url}{f.route}" for f in host.http)
    timers = "\n".join(f"  {t.name}: {t.schedule}" for t in host.timers) or "  (none)"
    print(
        "\n".join(
            [
                *notes,
                f"Connector running at {host.url}/api/",
                routes,
                "Timers:",
                timers,
                f"Connect: open {host.url}/api/connect in a browser. Ctrl-C stops.",
            ]
        ),
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
