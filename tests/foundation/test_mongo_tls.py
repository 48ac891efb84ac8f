"""MongoDB over TLS, with an own CA and a client certificate (mutual TLS), from a service process;
and a server certificate that the configured CA does not vouch for stops a service at start with
one line.

The local MongoDB-protocol server speaks no TLS, so the test puts a TLS-terminating proxy in
front of it (certificates generated here; the proxy asks for and verifies the client's
certificate). The service's driver makes real TLS connections with the settings a production
deployment uses (``MONGODB_URL`` with ``tls=true``, ``MONGODB_TLS_CA_FILE``,
``MONGODB_TLS_CERTIFICATE_KEY_FILE``); behind the proxy, bytes go to the server unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from callback_dev.infra import Infrastructure
from cryptography.hazmat.primitives import serialization

from tests.admin_api.support import SECRET, Tokens, immediate
from tests.foundation.certs import issue_server_cert, make_ca, pem_key
from tests.support import isolated_env, start_service

pytestmark = pytest.mark.e2e


@dataclass
class TlsProxy:
    """Accepts TLS (client certificate required), forwards the plain bytes to ``upstream``."""

    upstream: tuple[str, int]
    context: ssl.SSLContext
    port: int = 0
    clients: list[str] = field(default_factory=list)  # the verified client certificates' CNs

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        self.clients.append(dict(x[0] for x in peer.get("subject", ())).get("commonName", ""))
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, ssl.SSLError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    client: Path  # key and certificate in one PEM file
    server_context: ssl.SSLContext


def make_pki(work: Path) -> Pki:
    ca_key, ca_cert = make_ca("callback mongo CA")
    server_key, server_cert = issue_server_cert(ca_key, ca_cert)
    client_key, client_cert = issue_server_cert(ca_key, ca_cert)  # CN localhost, client auth
    _, other_ca = make_ca("callback mongo CA")
    pem = serialization.Encoding.PEM
    (work / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (work / "other-ca.pem").write_bytes(other_ca.public_bytes(pem))
    (work / "client.pem").write_bytes(pem_key(client_key) + client_cert.public_bytes(pem))
    (work / "server.pem").write_bytes(pem_key(server_key) + server_cert.public_bytes(pem))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(work / "ca.pem"))
    context.load_cert_chain(work / "server.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return Pki(work / "ca.pem", work / "other-ca.pem", work / "client.pem", context)


@contextlib.asynccontextmanager
async def tls_proxy(infra: Infrastructure, pki: Pki) -> AsyncIterator[TlsProxy]:
    target = urlparse(infra.mongodb_url)
    proxy = TlsProxy((target.hostname or "127.0.0.1", target.port or 27017), pki.server_context)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0, ssl=pki.server_context)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy


def tls_env(infra: Infrastructure, proxy: TlsProxy, ca: Path, client: Path) -> dict[str, str]:
    return {
        **isolated_env(infra),
        "MONGODB_URL": f"mongodb://127.0.0.1:{proxy.port}/?tls=true&directConnection=true",
        "MONGODB_TLS_CA_FILE": str(ca),
        "MONGODB_TLS_CERTIFICATE_KEY_FILE": str(client),
    }


async def test_a_service_works_over_mutual_tls(infra: Infrastructure, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    async with tls_proxy(infra, pki) as proxy:
        env = {**tls_env(infra, proxy, pki.ca, pki.client), "JWT_SECRET": SECRET}
        api = start_service("admin-api", env, tmp_path)
        try:
            await asyncio.to_thread(api.wait_ready, 90)
            async with httpx.AsyncClient(base_url=f"{api.url}/api/v1", timeout=10) as http:
                headers = Tokens().supervisor()
                created = await http.post("/callbacks", json=immediate("secure"), headers=headers)
                assert created.status_code == 201, created.text
                read = await http.get(f"/callbacks/{created.json()['id']}", headers=headers)
                assert read.status_code == 200, read.text
        finally:
            code = await asyncio.to_thread(api.terminate)
        assert code == 0, api.output()
    assert proxy.clients, "no connection went through the TLS proxy"
    assert set(proxy.clients) == {"localhost"}, "every connection showed the client certificate"


async def test_an_untrusted_server_certificate_stops_the_service_with_one_line(
    infra: Infrastructure, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    async with tls_proxy(infra, pki) as proxy:
        process = start_service(
            "scheduler", tls_env(infra, proxy, pki.other_ca, pki.client), tmp_path
        )
        started = time.monotonic()
        code = await asyncio.to_thread(process.proc.wait, 60)
    assert code == 2, process.output()
    assert time.monotonic() - started < 40
    lines = process.log.read_text(errors="replace").splitlines()
    errors = [json.loads(line) for line in lines if '"level": "error"' in line]
    assert len(errors) == 1, process.output()
    assert errors[0]["event"] == (
        f"cannot start: MongoDB 127.0.0.1:{proxy.port}: server certificate not trusted "
        "(check MONGODB_TLS_CA_FILE)"
    ), errors[0]
