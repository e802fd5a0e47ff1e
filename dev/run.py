"""`make run`: the connector on http://localhost:7071/api/... on its embedded defaults.

Settings come from the environment, then `local.settings.json` ("Values"), then these defaults:
SQLite store and file secret store under `.local/`; when no SERVICENOW_INSTANCE is configured, the
ServiceNow simulator on a loopback port; when no GRAPH_URL is configured, the Microsoft Graph simulator with
its managed-identity endpoint (so azure-identity's DefaultAzureCredential gets its tokens as in Azure), and
one Secure Score refresh right after start so the recommendations are there at once.
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
    os.environ.setdefault("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")  # the timer's %SECURE_SCORE_SCHEDULE%
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

    graph_simulated = not os.environ.get("GRAPH_URL")
    if graph_simulated:
        from dev.graph import GraphSimulator
        from dev.simulator import serve as serve_simulator

        graph = GraphSimulator()
        _, graph_url = serve_simulator(graph, int(os.environ.get("GRAPH_SIMULATOR_PORT", "7073")))
        for name in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT"):
            os.environ.pop(name, None)
        os.environ.update(GRAPH_URL=graph_url, IDENTITY_ENDPOINT=graph.identity.endpoint,
                          IDENTITY_HEADER=graph.identity.header, AZURE_CLIENT_ID=graph.identity.client_id)  # fmt: skip
        notes.append(
            f"No GRAPH_URL is configured: using the Microsoft Graph simulator at {graph_url} "
            f"(complete or regress a control at {graph_url}/sim)."
        )

    from dev.host import LocalHost, load_app

    key = os.environ.get("LOCAL_FUNCTION_KEY") or None  # unset: no key checks, like Core Tools
    user = None
    local_user = os.environ.get("LOCAL_USER", "admin@contoso.com")
    if local_user:  # LOCAL_USER="" turns the sign-in emulation off
        from dev.easyauth import LocalUser

        user = LocalUser.parse(local_user, os.environ.get("LOCAL_USER_ROLES", "Connector.Admin Tickets.Create"))
        os.environ["WEBSITE_AUTH_ENABLED"] = "True"  # what the platform sets when its sign-in is on
        notes.append(f"Signed in as {user.name} with roles {', '.join(user.roles) or '(none)'} (App Service "
                     "Authentication, emulated: LOCAL_USER, LOCAL_USER_ROLES).")  # fmt: skip
    host = LocalHost(load_app().get_functions(), "127.0.0.1", port, function_key=key, user=user)
    host.start()
    if graph_simulated:
        threading.Thread(target=_first_refresh, name="first-secure-score-refresh", daemon=True).start()
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
                f"Open {host.url}/api/portal in a browser (or {host.url}/api/connect to connect). Ctrl-C stops.",
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


def _first_refresh() -> None:
    """What the timer would do at its first occurrence, done at start so the page is not empty for hours."""
    from shared.securescore import SecureScoreSync
    from shared.services import get_services

    try:
        result = SecureScoreSync(get_services()).refresh()
        logging.getLogger("dev.run").info("Secure Score read: %d improvement actions", result.controls)
    except Exception as exc:
        logging.getLogger("dev.run").warning("The first Secure Score refresh failed (%s)", type(exc).__name__)


if __name__ == "__main__":
    sys.exit(main())
