"""A real OpenID Connect provider for tests: ``oidc_provider.mjs`` (node ``oidc-provider``) as a
process, its signing keys made here, and the Authorization Code + PKCE flow a browser would run,
done with an HTTP client (the login form of the provider's development interactions).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
from callback_dev.infra import free_port
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.console.openapi_doc import CONSOLE

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "callback-console"
AUDIENCE = "urn:callback:admin-api"


def signing_key() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    """A new RSA key and its private JWK (with a ``kid`` of its own)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    jwk.update(kid=uuid.uuid4().hex[:16], alg="RS256", use="sig")
    return key, jwk


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class OidcProvider:
    """``oidc_provider.mjs`` on a port of its own; ``restart`` keeps the port (the issuer)."""

    workdir: Path
    users: dict[str, dict[str, Any]]
    redirect_uris: list[str]
    port: int = field(default_factory=free_port)
    audience: str = AUDIENCE
    client_id: str = CLIENT_ID
    key: rsa.RSAPrivateKey | None = None
    kid: str = ""
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"oidc-provider-{self.port}-{self.starts}.log"

    def start(self, rotate: bool = False) -> None:
        """Start with the current signing key (a new one the first time or when ``rotate``)."""
        node = shutil.which("node")
        assert node, "node is needed for the OIDC provider"
        assert (CONSOLE / "node_modules" / "oidc-provider").is_dir(), (
            "install the console's npm dependencies: cd services/admin-console && npm ci"
        )
        if self.key is None or rotate:
            self.key, jwk = signing_key()
            self.kid = jwk["kid"]
            (self.workdir / "oidc-keys.json").write_text(json.dumps({"keys": [jwk]}))
        users = self.workdir / "oidc-users.json"
        users.write_text(json.dumps(self.users))
        self.starts += 1
        command = [
            node,
            str(SCRIPT),
            f"--port={self.port}",
            f"--client-id={self.client_id}",
            f"--audience={self.audience}",
            f"--keys={self.workdir / 'oidc-keys.json'}",
            f"--users={users}",
            *(f"--redirect-uri={uri}" for uri in self.redirect_uris),
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "listening" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the OIDC provider did not start:\n{self.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self, rotate: bool) -> None:
        self.stop()
        self.start(rotate=rotate)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""

    def requests(self, path: str) -> int:
        """How many requests to ``path`` the provider has served since it last started."""
        return sum(1 for line in self.output().splitlines() if line == f"GET {path}")

    def sign(self, **claims: Any) -> str:
        """A token signed with the provider's own key (to prove what validation refuses)."""
        assert self.key is not None
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def sign_in(self, user: str, resource: str | None = None, scope: str = "openid") -> str:
        """The access token a browser gets for ``user``: the code flow with PKCE, as the console
        runs it (authorization request, the provider's login form, code exchange)."""
        verifier = _b64(secrets.token_bytes(32))
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        state = _b64(secrets.token_bytes(16))
        redirect_uri = self.redirect_uris[0]
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": _b64(secrets.token_bytes(16)),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        with httpx.Client(base_url=self.issuer, timeout=10) as http:
            discovery = http.get("/.well-known/openid-configuration").json()
            answer = http.get(discovery["authorization_endpoint"], params=params)
            while answer.status_code in (302, 303) and not answer.headers["location"].startswith(
                redirect_uri
            ):
                answer = http.get(urljoin(str(answer.url), answer.headers["location"]))
            form = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
            assert form, f"no login form: {answer.status_code} {answer.text[:500]}"
            answer = http.post(
                urljoin(str(answer.url), form.group(1)),
                data={"prompt": "login", "login": user, "password": "any"},
            )
            while not answer.headers.get("location", "").startswith(redirect_uri):
                assert answer.status_code in (302, 303), answer.text[:500]
                answer = http.get(urljoin(str(answer.url), answer.headers["location"]))
            query = parse_qs(urlsplit(answer.headers["location"]).query)
            assert query.get("state") == [state], query.get("error_description")
            exchange = {
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect_uri,
                "client_id": self.client_id,
                "code_verifier": verifier,
            }
            if resource is not None:
                exchange["resource"] = resource
            tokens = http.post(discovery["token_endpoint"], data=exchange)
            assert tokens.status_code == 200, tokens.text
            access_token: str = tokens.json()["access_token"]
            return access_token
