"""Every command a newcomer is given works as printed (issue 29, items 1 and 10): the `curl` lines `make run`
prints, run by a shell exactly as printed, on the ports and folder it uses; the README's, on the ports `make run`
was given (its 7071-7075 and `.local/` read as this run's); the admin guide's section 12, with the local values
the guide names for `APP_URL` and `TOKEN`. And the local API token that makes them work is no weaker against
another site than the browser's session.

curl is told to write each answer's status after its body through a `.curlrc` (CURL_HOME), so the lines
themselves run unchanged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.process.test_make_run import NAMES, READ, MakeRun

DEFAULT_PORTS = dict(zip(NAMES, (7071, 7072, 7073, 7074, 7075), strict=True))
STATUS = re.compile(r"\nHTTP (\d{3})\s*$")


def _shell(line: str, home: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """One command as a person pastes it into sh, in the project's folder: (HTTP status, body)."""
    (home / ".curlrc").write_text('silent\nshow-error\nmax-time = 30\nwrite-out = "\\nHTTP %{http_code}\\n"\n')
    done = subprocess.run(["sh", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CURL_HOME": str(home), **(env or {})})  # fmt: skip
    found = STATUS.search(done.stdout)
    assert found, f"{line}\n{done.stdout}\n{done.stderr}"
    return int(found[1]), done.stdout[: found.start()]


def _printed(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("  curl ")]


def _readme_lines(run: MakeRun) -> list[str]:
    """The README's commands (inline and in ```sh blocks, continuation lines joined), read as this run's ports and
    data folder: what they mean for someone who started `make run` with those."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", readme, flags=re.S)).replace("\\\n", " ")
    found = [line.strip() for line in blocks.splitlines() if line.strip().startswith("curl ")]
    found += re.findall(r"`(curl [^`]+)`", readme)
    mine = dict(zip(NAMES, run.ports, strict=True))
    lines = []
    for line in found:
        for name, port in DEFAULT_PORTS.items():
            line = line.replace(f":{port}", f":{mine[name]}")
        lines.append(line.replace(".local/", f"{run.data}/"))
    return lines


def test_every_curl_line_make_run_and_the_readme_print_works_as_printed(tmp_path: Path):
    run = MakeRun(tmp_path / "local")
    try:
        banner = run.wait_for(READ)
        printed = _printed(banner)
        assert any("/admin/functions/status_sync" in line for line in printed), banner  # item 10: printed
        assert any("/api/tenants" in line and "POST" in line for line in printed), banner
        assert any("/api/connections" in line for line in printed), banner
        for line in printed:
            assert (f"localhost:{run.port}" in line and ":7071" not in line) or run.port == 7071, line
            status, body = _shell(line, tmp_path)
            assert status in (200, 201, 202), f"{line}\n-> {status} {body}"
        # Both add Fabrikam: as a newcomer who tries one after the other would, remove it in between.
        added = httpx.get(f"{run.url}/api/tenants", headers=_bearer(run), timeout=10).json()["tenants"]
        for tenant in (t for t in added if not t["home"]):
            gone = httpx.delete(f"{run.url}/api/tenants/{tenant['id']}", headers=_bearer(run), timeout=10)
            assert gone.status_code == 200, gone.text
        readme = _readme_lines(run)
        assert len(readme) >= 2 and any("status_sync" in line for line in readme), readme
        for line in readme:
            status, body = _shell(line, tmp_path)
            assert status in (200, 201, 202), f"{line}\n-> {status} {body}"
        tenants = httpx.get(f"{run.url}/api/tenants", headers=_bearer(run), timeout=10).json()["tenants"]
        assert [t["domain"] for t in tenants if not t["home"]] == ["fabrikam.example"], tenants
        assert "second" in {c["id"] for c in httpx.get(f"{run.url}/api/connections", headers=_bearer(run),
                                                         timeout=10).json()["connections"]}  # fmt: skip
    finally:
        run.stop()
    assert "Traceback" not in run.text


def test_the_admin_guides_routes_commands_run_locally_with_the_values_it_names(tmp_path: Path):
    """Sections 11 and 12 say: locally, APP_URL=http://localhost:7071 and TOKEN=$(cat .local/local-api-token)."""
    guide = (ROOT / "docs" / "admin-guide.md").read_text(encoding="utf-8")
    assert "APP_URL=http://localhost:7071" in guide and "TOKEN=$(cat .local/local-api-token)" in guide
    section = guide[guide.index("## 12. Routes") :]
    commands = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert commands
    lines = [c.split("  #")[0].strip() for c in commands[1].replace("\\\n", " ").splitlines() if c.strip()]
    example = re.search(r"### 12\.3.*?```json\n(.*?)```", section, flags=re.S)
    assert example
    run = MakeRun(tmp_path / "local")
    try:
        run.wait_for(READ)
        folder = tmp_path / "work"
        folder.mkdir()
        (folder / "routes.json").write_text(example[1])
        local = {"APP_URL": run.url, "TOKEN": (run.data / "local-api-token").read_text().strip()}
        status, body = _shell(lines[0], tmp_path, local)  # GET: the version in the ETag
        assert status == 200, body
        version = re.search(r'(?im)^etag: "([0-9a-f]+)"', body)
        assert version, body
        for line in lines[1:]:
            line = line.replace("@routes.json", f"@{folder / 'routes.json'}").replace("<version>", version[1])
            status, body = _shell(line, tmp_path, local)
            assert status == 200, f"{line}\n-> {status} {body}"
        saved = httpx.get(f"{run.url}/api/routes", headers=_bearer(run), timeout=10).json()
        assert saved["routes"][0]["name"] == "Identity, 8 points or more: due in 14 days"
    finally:
        run.stop()


def _bearer(run: MakeRun) -> dict[str, str]:
    return {"Authorization": f"Bearer {(run.data / 'local-api-token').read_text().strip()}"}


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory):
    run = MakeRun(tmp_path_factory.mktemp("token") / "local")
    try:
        run.wait_for("Ctrl-C stops.")
        yield run
    finally:
        run.stop()


def test_the_local_api_token_is_the_owners_alone_and_kept_across_restarts(started: MakeRun):
    path = started.data / "local-api-token"
    assert path.stat().st_mode & 0o077 == 0
    assert len(path.read_text().strip()) >= 43  # 256 random bits
    assert "local-api-token" in started.text and path.read_text().strip() not in started.text  # named, not shown


def test_the_token_is_no_weaker_than_the_session_against_another_site(started: MakeRun):
    url, good = started.url, _bearer(started)
    body = json.dumps({"tenant": "northwind.example"})
    with httpx.Client(timeout=10) as client:
        # Without it, or with another, an API call is refused as before; a page is sent to sign in.
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": good["Authorization"][:-1]}):
            refused = client.post(f"{url}/api/tenants", content=body,
                                  headers={**headers, "Content-Type": "application/json"})  # fmt: skip
            assert refused.status_code == 401, refused.text
        assert client.get(f"{url}/api/tenants", headers={"Accept": "text/html"}).status_code == 302
        # A page of another site cannot send the header without a preflight, and the app allows none.
        preflight = client.request("OPTIONS", f"{url}/api/tenants", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})  # fmt: skip
        assert not any(k.lower().startswith("access-control-allow") for k in preflight.headers), preflight.headers
        # Even with the token (a page cannot have it), a cross-site Origin is refused as it is for a session.
        cross = client.post(
            f"{url}/api/tenants",
            content=body,
            headers={**good, "Content-Type": "application/json", "Origin": "https://evil.example"},
        )
        assert cross.status_code == 403, cross.text
        # A form post (no JSON) is refused whatever it carries.
        form = client.post(f"{url}/api/tenants", content="tenant=x", headers={**good,
                           "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert form.status_code == 415, form.text
        # The token signs in as the emulated user, with its roles: the principal a client sent is never taken.
        me = client.get(f"{url}/api/me", headers={**good, "X-MS-CLIENT-PRINCIPAL": "e30="}).json()
        assert me == {"user": "admin@contoso.com", "roles": ["Connector.Admin", "Tickets.Create"]}
