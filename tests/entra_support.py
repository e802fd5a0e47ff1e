"""The Entra ID simulator served as the connector meets it (over TLS, its reader app trusting the session's managed
identity), and what a customer's admin does on its consent page. For the tests of the simulator and of the
connector's tenants."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx

from dev.entra import READER_APP_ID, EntraSimulator, make_certs
from dev.graph import GraphSimulator, ManagedIdentity
from dev.servicenow import serve

CONSENT_REDIRECT = "https://connector.example.net/api/tenants/consent"


@dataclass
class ServedEntra:
    simulator: EntraSimulator
    url: str  # the authority: https://127.0.0.1:{port}
    ca: Path  # the CA file a client must trust

    def client(self) -> httpx.Client:
        """A browser that trusts the simulator's CA and follows no redirect (the tests read each one)."""
        return httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca)), timeout=10)


@contextlib.contextmanager
def served_entra(
    identity: ManagedIdentity, folder: Path, graph: GraphSimulator | None = None, redirect: str = CONSENT_REDIRECT
) -> Iterator[ServedEntra]:
    """The simulator on loopback over TLS, with the reader app (`READER_APP_ID`, Graph's SecurityEvents.ReadWrite.All,
    the consent redirect `redirect`) whose federated credential names `identity`; `graph`, when given, trusts its
    tokens and is the resource the app's permission is on."""
    context, ca = make_certs(folder)
    entra = EntraSimulator(identity)
    entra.register_app(READER_APP_ID, [redirect], resource=graph.base_url if graph else "https://graph.microsoft.com")
    entra.trust_identity(READER_APP_ID, identity)
    if graph is not None:
        graph.trust(entra)
    server, url = serve(entra, tls=context)
    try:
        yield ServedEntra(entra, url, ca)
    finally:
        server.shutdown()
        server.server_close()


class ConsentPage(HTMLParser):
    """The consent page's forms: each one's action and hidden fields, and the ids of its buttons."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str], list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}, []))
        elif tag == "input" and values.get("type") == "hidden" and self.forms:
            self.forms[-1][1][values["name"]] = values.get("value", "")
        elif tag == "button" and self.forms and "id" in values:
            self.forms[-1][2].append(values["id"])

    def press(self, browser: httpx.Client, page_url: str, button: str, **extra: str) -> httpx.Response:
        """Submit the form holding the button with id `button`, as a browser does (its name=value included)."""
        action, fields, _ = next(form for form in self.forms if button in form[2])
        value = {"accept": "accept", "cancel": "cancel", "back": "back", "switch": "signin",
                 "other-tenant": "foreign"}[button]  # fmt: skip
        return browser.post(urljoin(page_url, action), data={**fields, "action": value, **extra})


def press(browser: httpx.Client, consent_url: str, button: str = "accept") -> httpx.Response:
    """Open the consent link and press `button` (`accept`, `cancel`, `back` or `other-tenant`): Entra's redirect (302)
    to the app."""
    page = browser.get(consent_url)
    assert page.status_code == 200, page.text
    answer = ConsentPage(page.text).press(browser, consent_url, button)
    assert answer.status_code == 302, answer.text
    return answer
