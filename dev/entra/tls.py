"""TLS for the Entra simulator: azure-identity refuses an authority that is not https, so the simulator is served
with a certificate for 127.0.0.1 and localhost from a certificate authority the project makes (trustme) for each
run. Clients trust it through the CA file (`connection_verify=`, `verify=`), or, for a whole process, through a
bundle of the usual public CAs plus this one named by `REQUESTS_CA_BUNDLE` (requests, so azure-identity) and
`SSL_CERT_FILE` (httpx): the bundle keeps every real service trusted as before.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

CA_FILE = "entra-simulator-ca.pem"
BUNDLE_FILE = "entra-simulator-ca-bundle.pem"


def issue() -> tuple[ssl.SSLContext, bytes]:
    """A new CA and a server certificate for 127.0.0.1 and localhost: the server's TLS context and the CA's
    certificate (PEM), nothing written yet."""
    import trustme  # a test tool (requirements-dev.txt): dev/ runs only where it is installed

    ca = trustme.CA(organization_name="ServiceNow connector, local Entra ID simulator")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    pem: bytes = ca.cert_pem.bytes()
    return context, pem


def write_ca(pem: bytes, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CA_FILE
    path.write_bytes(pem)
    return path


def make_certs(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """`issue`, with the CA's certificate written to `directory` (what a client must trust): the server's TLS
    context and the CA file."""
    context, pem = issue()
    return context, write_ca(pem, directory)


def ca_bundle(ca_path: Path, directory: Path) -> Path:
    """A CA bundle for a whole process: the CAs it trusted already (`REQUESTS_CA_BUNDLE` or `SSL_CERT_FILE` when
    set, else certifi's, which both requests and httpx use by default) and the simulator's CA."""
    import certifi

    current = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or certifi.where()
    if Path(current).resolve() == (directory / BUNDLE_FILE).resolve():  # a restart in the same process
        current = certifi.where()
    path = directory / BUNDLE_FILE
    path.write_text(Path(current).read_text(encoding="utf-8").rstrip("\n") + "\n" + ca_path.read_text(encoding="utf-8"),
                    encoding="utf-8")  # fmt: skip
    return path
