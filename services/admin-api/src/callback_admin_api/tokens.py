"""``callback-admin-token``: mint a development token for the admin API.

HS256 with ``--secret`` or the ``JWT_SECRET`` environment variable (as ``make up`` writes it to
``.run/env``), or RS256 with ``--private-key FILE``. Example (``ADMIN_API``: the admin API's
address, ``http://127.0.0.1:`` and its HTTP_PORT; README.md has more)::

    source .run/env
    TOKEN=$(uv run callback-admin-token --sub alice --role callback_supervisor --service billing)
    curl -H "Authorization: Bearer $TOKEN" "$ADMIN_API/api/v1/callbacks"
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from callback_shared.models import utcnow

from callback_admin_api.auth import ALL_SERVICES, Role


def mint_token(
    key: str,
    sub: str,
    roles: Iterable[str],
    services: Iterable[str] = (ALL_SERVICES,),
    *,
    ttl: timedelta = timedelta(hours=8),
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    now = utcnow()
    payload = {
        "sub": sub,
        "roles": list(roles),
        "services": list(services),
        "iat": now,
        "exp": now + ttl,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="callback-admin-token", description="Mint a development token for the admin API."
    )
    parser.add_argument("--sub", required=True, help="username recorded as the actor")
    parser.add_argument(
        "--role",
        action="append",
        choices=[role.value for role in Role],
        required=True,
        help="repeatable",
    )
    parser.add_argument(
        "--service",
        action="append",
        help="granted service (virtual queue), repeatable; default: * (every service)",
    )
    parser.add_argument("--minutes", type=float, default=480, help="lifetime (default 8 hours)")
    parser.add_argument("--secret", help="HS256 secret (default: $JWT_SECRET)")
    parser.add_argument("--private-key", type=Path, help="PEM private key: sign with RS256")
    args = parser.parse_args(argv)
    if args.private_key is not None:
        key, algorithm = args.private_key.read_text(), "RS256"
    else:
        key, algorithm = args.secret or os.environ.get("JWT_SECRET", ""), "HS256"
        if not key:
            parser.error("give --secret, --private-key, or set JWT_SECRET (source .run/env)")
    token = mint_token(
        key,
        args.sub,
        args.role,
        args.service or [ALL_SERVICES],
        ttl=timedelta(minutes=args.minutes),
        algorithm=algorithm,
    )
    sys.stdout.write(token + "\n")
