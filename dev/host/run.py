"""`make run`: the connector on http://localhost:7071/api/... on its embedded defaults.

Settings come from the environment, then `local.settings.json` ("Values"), then these defaults:
SQLite store and file secret store under `.local/`; when no SERVICENOW_INSTANCE is configured, the
ServiceNow simulator on a loopback port, its state kept in the same folder, and a second simulated instance to try
two connections; when no GRAPH_URL is configured, the Microsoft Graph simulator with its managed-identity endpoint
(so azure-identity's DefaultAzureCredential gets its tokens as in Azure), one Secure Score refresh right after start
so the recommendations are there at once, and the Entra ID simulator (over TLS) for other tenants: the reader app,
its consent pages and its tokens.

`HOSTS=2` starts a second host (its own process) on one Azurite, to show scale-out (dev/host/processes.py).
Every port is taken, then the data folder, before anything is written: a run that cannot start changes nothing.
`dev/host/run.py --reset` (`make reset`) empties the data folder's store, secrets and simulator state together.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import secrets
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOCAL_CLIENT = "local-connector"
SECOND_CLIENT = "local-connector-2"
PORTS = {"PORT": 7071, "SIMULATOR_PORT": 7072, "GRAPH_SIMULATOR_PORT": 7073, "SECOND_SIMULATOR_PORT": 7074,
         "ENTRA_SIMULATOR_PORT": 7075, "MORE_HOSTS_PORT": 7076}  # fmt: skip
MORE_HOST = "--more-host"  # how the first host of HOSTS starts the others
OTHER_PORTS = ("PORT=8071 SIMULATOR_PORT=8072 GRAPH_SIMULATOR_PORT=8073 SECOND_SIMULATOR_PORT=8074 "
               "ENTRA_SIMULATOR_PORT=8075")  # fmt: skip


class CannotStart(Exception):
    """Said to the person at the terminal in one message, without a traceback."""


@dataclass
class Bound:
    """The servers `make run` listens with, bound but not serving yet."""

    host: Any  # dev.host.server.LocalHost
    servicenow: Any = None  # (ServiceNowSimulator, server, url)
    graph: Any = None  # (GraphSimulator, server, url)
    second: Any = None  # (ServiceNowSimulator, server, url): another instance, for a second connection
    entra: Any = None  # (EntraSimulator, server, url, the CA's certificate)
    serving: bool = False

    def servers(self) -> list[ThreadingHTTPServer]:
        parts = (self.servicenow, self.graph, self.second, self.entra)
        return [part[1] for part in parts if part is not None]

    def start(self) -> None:
        from dev.wire.transport import start

        for server in self.servers():
            start(server)
        self.host.start()
        self.serving = True

    def close(self) -> None:
        self.host.stop()
        for server in self.servers():
            if self.serving:
                server.shutdown()
            server.server_close()


def load_local_settings(path: Path) -> None:
    if not path.exists():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    for name, value in values.items():
        if isinstance(value, str) and value and name not in os.environ:
            os.environ[name] = value


def _port(name: str) -> int:
    get = os.environ.get  # each by its name, as docs/settings.md lists them
    given = {"PORT": get("PORT"), "SIMULATOR_PORT": get("SIMULATOR_PORT"), "MORE_HOSTS_PORT": get("MORE_HOSTS_PORT"),
             "GRAPH_SIMULATOR_PORT": get("GRAPH_SIMULATOR_PORT"), "SECOND_SIMULATOR_PORT": get("SECOND_SIMULATOR_PORT"),
             "ENTRA_SIMULATOR_PORT": get("ENTRA_SIMULATOR_PORT")}  # fmt: skip
    raw = given[name] or str(PORTS[name])
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 65536):
        raise CannotStart(f"{name}={raw} is not a port number (1-65535).")
    return int(raw)


def _listen(name: str, bind: Any) -> Any:
    """Bind one port; a busy or forbidden port becomes a message naming it and the settings that move it."""
    port = _port(name)
    try:
        return bind(port)
    except OSError as exc:
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be opened ({exc.strerror})"
        raise CannotStart(
            f"Port {port} ({name}) {reason}, so `make run` did not start and changed nothing.\n"
            f"Stop what uses it, or choose other ports, e.g.: {OTHER_PORTS} make run"
        ) from None


def _bind(simulate_servicenow: bool, simulate_graph: bool, *, run_timers: bool = True) -> Bound:
    from dev.host.functions import load_app
    from dev.host.server import LocalHost
    from dev.wire.transport import listen

    functions = load_app().get_functions()
    opened: list[ThreadingHTTPServer] = []
    bound = Bound(None)
    try:
        if simulate_servicenow:
            from dev.servicenow import ServiceNowSimulator

            for name, attribute in (("SIMULATOR_PORT", "servicenow"), ("SECOND_SIMULATOR_PORT", "second")):
                simulator = ServiceNowSimulator()
                server, url = _listen(name, functools.partial(listen, simulator))
                opened.append(server)
                setattr(bound, attribute, (simulator, server, url))
        if simulate_graph:
            from dev.entra import EntraSimulator
            from dev.entra.tls import issue
            from dev.graph import GraphSimulator

            graph_simulator = GraphSimulator()
            server, url = _listen("GRAPH_SIMULATOR_PORT", lambda port: listen(graph_simulator, port))
            opened.append(server)
            bound.graph = (graph_simulator, server, url)
            entra, (context, ca_pem) = EntraSimulator(graph_simulator.identity), issue()
            server, url = _listen("ENTRA_SIMULATOR_PORT", lambda port: listen(entra, port, tls=context))
            opened.append(server)
            bound.entra = (entra, server, url, ca_pem)
        bound.host = _listen("PORT", lambda port: LocalHost(functions, "127.0.0.1", port, ipv6=True,
                                                            run_timers=run_timers, **_host_options()))  # fmt: skip
    except BaseException:
        for server in opened:
            server.server_close()
        raise
    return bound


def _host_options() -> dict[str, Any]:
    key = os.environ.get("LOCAL_FUNCTION_KEY") or None  # unset: no key checks, like Core Tools
    options: dict[str, Any] = {}
    visibility = os.environ.get("LOCAL_QUEUE_VISIBILITY") or ""  # seconds a queue message taken stays hidden
    if visibility:
        if not (visibility.isascii() and visibility.isdigit() and 1 <= int(visibility) <= 600):
            raise CannotStart(f"LOCAL_QUEUE_VISIBILITY={visibility} is not a number of seconds (1-600).")
        options["processing_visibility"] = float(visibility)
    user = None
    local_user = os.environ.get("LOCAL_USER", "admin@contoso.com")
    if local_user:  # LOCAL_USER="" turns the sign-in emulation off
        from dev.host.easyauth import LocalUser

        user = LocalUser.parse(local_user, os.environ.get("LOCAL_USER_ROLES", "Connector.Admin Tickets.Create"))
    return {"function_key": key, "user": user, **options}


def _in_use(data_dir: Path, holder: str, what: str) -> CannotStart:
    return CannotStart(
        f"Another `make run` ({holder or 'another process'}) is using the data folder {data_dir.resolve()} "
        f"(LOCAL_DATA_DIR), so {what} and changed nothing: two runs on one folder would overwrite each other's "
        "tokens and tickets.\n"
        f"Stop the other one, or give this one its own folder and ports, e.g.: LOCAL_DATA_DIR=.local-2 "
        f"{OTHER_PORTS} make run"
    )


def _instance(part: Any, data_dir: Path, file: str, client_id: str, port: int) -> tuple[Any, bool, str]:
    """Restore a simulated instance's state, register the local OAuth client (its secret kept across restarts, so
    the stored tokens stay valid; the one callback serves every connection, docs/design.md#connections-and-routes):
    (kept, found, secret)."""
    from dev.servicenow.persist import keep

    simulator = part[0]
    try:
        kept, found = keep(simulator, data_dir, file)
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, another version, a field missing
        raise CannotStart(
            f"The ServiceNow simulator's state in {data_dir / file} cannot be read ({type(exc).__name__}: "
            f"{str(exc)[:200]}). `make reset` starts the store and the simulator afresh together."
        ) from None
    known = simulator.clients.get(client_id)
    client_secret = known.client_secret if known is not None else secrets.token_urlsafe(24)
    simulator.register_client(client_id, client_secret, [os.environ["OAUTH_REDIRECT_URI"]])
    simulator.portal_port = port
    kept.save()
    return kept, found, client_secret


def _servicenow_simulator(bound: Bound, data_dir: Path, port: int) -> list[str]:
    """The first simulated instance, where the connector's `default` connection points."""
    from dev.servicenow.persist import STATE_FILE

    simulator, _, url = bound.servicenow
    kept, found, client_secret = _instance(bound.servicenow, data_dir, STATE_FILE, LOCAL_CLIENT, port)
    os.environ.update(
        SERVICENOW_INSTANCE=url, SERVICENOW_CLIENT_ID=LOCAL_CLIENT, SERVICENOW_CLIENT_SECRET=client_secret
    )
    notes = [f"No SERVICENOW_INSTANCE is configured: using the ServiceNow simulator at {url} (its groups and "
             f"companies, which routes can name: {url}/sim)."]  # fmt: skip
    records = len(simulator.tables.get("incident", {}))
    if found:
        notes.append(f"  Its state is kept in {kept.path} ({records} records); `make reset` starts afresh.")
    elif (data_dir / "connector.db").exists():
        notes.append(
            f"  Warning: {data_dir} holds tickets from an earlier run, but no simulator state: those tickets point "
            "at records this simulator does not have. `make reset` starts both afresh."
        )
    return notes


def _second_servicenow(bound: Bound, data_dir: Path, port: int, auth: str) -> list[str]:
    """The second simulated instance: nothing points at it until an admin adds it as a connection."""
    from dev.servicenow.persist import SECOND_STATE_FILE

    _, _, url = bound.second
    _, _, client_secret = _instance(bound.second, data_dir, SECOND_STATE_FILE, SECOND_CLIENT, port)
    # Its own numbers (INC0050001 on), as two real instances' differ: on the page a number names one record.
    bound.second[0]._number = max(bound.second[0]._number, 50000)
    body = json.dumps({"id": "second", "instance": url, "clientId": SECOND_CLIENT, "clientSecret": client_secret})
    return [
        f"A second simulated ServiceNow instance runs at {url} (client id {SECOND_CLIENT}, client secret "
        f"{client_secret}), to try two connections:",
        f"  curl -X POST http://localhost:{port}/api/connections -H 'Content-Type: application/json' -d '{body}'{auth}",
        f"  then connect it at http://localhost:{port}/api/connect?connection=second.",
    ]


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    load_local_settings(ROOT / "local.settings.json")
    os.environ.setdefault("LOCAL_DATA_DIR", ".local")
    data_dir = Path(os.environ["LOCAL_DATA_DIR"])
    try:
        if argv[1:] == ["--reset"]:
            return _reset(data_dir)
        return _run(data_dir, more_host=argv[1:] == [MORE_HOST])
    except CannotStart as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        return 1


def _reset(data_dir: Path) -> int:
    from dev.host.datadir import DataDirInUse, reset

    try:
        removed = reset(data_dir)
    except DataDirInUse as exc:
        raise _in_use(data_dir, exc.holder, "the reset did not happen") from None
    print(f"Removed from {data_dir}: {', '.join(removed) or 'nothing (it was empty)'}.")
    return 0


def _run(data_dir: Path, *, more_host: bool = False) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("azure").setLevel(logging.WARNING)  # azure-identity logs each token request at INFO
    port = _port("PORT")
    from dev.host.processes import Hosts

    hosts = Hosts(data_dir, 1 if more_host else os.environ.get("HOSTS") or "1", _port("MORE_HOSTS_PORT"), CannotStart)
    os.environ.setdefault("TICKET_STORE", "sqlite")
    os.environ.setdefault("STATUS_SYNC_SCHEDULE", "0 */5 * * * *")  # the timer's %STATUS_SYNC_SCHEDULE%
    os.environ.setdefault("SECURE_SCORE_SCHEDULE", "0 0 */4 * * *")  # the timer's %SECURE_SCORE_SCHEDULE%
    os.environ.setdefault("OAUTH_REDIRECT_URI", f"http://localhost:{port}/api/oauth/callback")

    bound = _bind(not os.environ.get("SERVICENOW_INSTANCE"), not os.environ.get("GRAPH_URL"), run_timers=not more_host)
    from dev.host.datadir import DataDirInUse, hold

    try:
        held = open(os.devnull) if more_host else hold(data_dir)  # noqa: SIM115 - the first host holds the folder
    except DataDirInUse as exc:
        bound.close()
        raise _in_use(data_dir, exc.holder, "this one did not start") from None
    try:
        hosts.share_storage()  # HOSTS: the store and the queues on one Azurite
        return _serve(bound, data_dir, port, hosts)
    finally:
        bound.close()
        hosts.close()  # the other hosts, then Azurite
        held.close()


def _api_token(bound: Bound, data_dir: Path) -> str:
    """The emulated sign-in takes the local API token from a terminal; the curl option that sends it, as printed
    (empty without the emulation, when every caller is a local user)."""
    auth = bound.host.auth
    if auth is None:
        return ""
    from dev.host.datadir import API_TOKEN_FILE, api_token

    auth.api_token = api_token(data_dir)
    return f' -H "Authorization: Bearer $(cat {shlex.quote(str(data_dir / API_TOKEN_FILE))})"'


def _serve(bound: Bound, data_dir: Path, port: int, hosts: Any) -> int:
    """Point the connector at the simulators, start everything, say what runs where, and wait for Ctrl-C."""
    auth = _api_token(bound, data_dir)
    notes = _servicenow_simulator(bound, data_dir, port) if bound.servicenow else []
    notes += _second_servicenow(bound, data_dir, port, auth) if bound.second else []
    if bound.graph is not None:
        graph, _, graph_url = bound.graph
        graph.portal_port = port
        for name in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT"):
            os.environ.pop(name, None)
        os.environ.update(GRAPH_URL=graph_url, IDENTITY_ENDPOINT=graph.identity.endpoint,
                          IDENTITY_HEADER=graph.identity.header, AZURE_CLIENT_ID=graph.identity.client_id)  # fmt: skip
        notes.append(
            f"No GRAPH_URL is configured: using the Microsoft Graph simulator at {graph_url} "
            f"(complete or regress a control at {graph_url}/sim)."
        )
        notes += _entra_simulator(bound, data_dir, port, auth)
    host = bound.host
    if host.auth is not None:
        user = host.auth.users[0]
        os.environ["WEBSITE_AUTH_ENABLED"] = "True"  # what the platform sets when its sign-in is on
        notes.append(f"Signed in as {user.name} with roles {', '.join(user.roles) or '(none)'} (App Service "
                     "Authentication, emulated: LOCAL_USER, LOCAL_USER_ROLES).")  # fmt: skip
    bound.start()
    notes += hosts.start_more(MORE_HOST)
    if bound.graph is not None:
        threading.Thread(target=_first_refresh, name="first-secure-score-refresh", daemon=True).start()
    routes = "\n".join(f"  {'/'.join(sorted(f.methods)):6} {host.url}{f.route}" for f in host.http)
    timers = "\n".join(f"  {t.name}: {t.schedule}" for t in host.timers) or "  (none)"
    print(
        "\n".join(
            [
                *notes,
                f"Connector running at {host.url}/api/ (127.0.0.1 and [::1] on port {port} lead there too)",
                routes,
                "Timers (each runs now with POST /admin/functions/<name>; the status sync every 5 minutes):",
                timers,
                f"  curl -X POST {host.url}/admin/functions/status_sync",
                *_terminal(host, auth),
                f"Open {host.url}/api/portal in a browser (or {host.url}/api/connect to connect). Ctrl-C stops.",
            ]
        ),
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    return 0


def _terminal(host: Any, auth: str) -> list[str]:
    """How a terminal calls the API: with the local API token, when the sign-in is emulated."""
    if not auth:
        return []
    return [
        "From a terminal, the API takes the local API token as a bearer token (as it takes a script's Entra ID token "
        "in Azure), e.g.:",
        f"  curl {host.url}/api/tenants{auth}",
    ]


def _entra_simulator(bound: Bound, data_dir: Path, port: int, auth: str) -> list[str]:
    from dev.entra import local

    entra, _, url, ca_pem = bound.entra
    try:
        return local.start(entra, url, bound.graph[0], ca_pem, data_dir, port, auth)
    except local.StateUnreadable as exc:
        raise CannotStart(
            f"The Entra ID simulator's state in {exc} cannot be read. `make reset` starts the store "
            "and the simulators afresh together."
        ) from None


def _first_refresh() -> None:
    """What the timer would do at its first occurrence, done at start so the page is not empty for hours."""
    from secure_score.api import SecureScoreRefresh
    from shared.services import get_services

    try:
        result = SecureScoreRefresh(get_services()).refresh()
        logging.getLogger("dev.run").info("Secure Score read: %d improvement actions", result.controls)
    except Exception as exc:
        logging.getLogger("dev.run").warning("The first Secure Score refresh failed (%s)", type(exc).__name__)


if __name__ == "__main__":
    code = main(sys.argv)  # servers closed and the data folder released by now
    sys.stdout.flush()
    sys.stderr.flush()
    # Without waiting for work still under way in pool threads (a Secure Score refresh, a sync): every state file
    # and the store are written atomically as they change, so stopping now loses nothing, and Ctrl-C is prompt.
    os._exit(code)
