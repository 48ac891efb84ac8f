"""A service container's health check: ``python -m callback_shared.healthcheck [PATH]`` asks the
service in the container for PATH (default ``/healthz``) on the port it listens on, and exits 0
(healthy) or 1 (unhealthy).

``CALLBACK_SERVICE`` names the service (the image sets it from the Dockerfile's SERVICE build
argument). The port is that service's settings' ``http_port``, read the way the service reads it
(HTTP_PORT if set, else the settings class's default), so no image writes a port of its own.
"""

from __future__ import annotations

import importlib
import os
import sys
import urllib.request

from pydantic import create_model
from pydantic_settings import BaseSettings

from callback_shared.settings import PlatformSettings

SERVICE_VARIABLE = "CALLBACK_SERVICE"
HEALTHY, UNHEALTHY = 0, 1  # Docker reserves exit code 2
#: below the HEALTHCHECK's --timeout, so a hung service reads as unhealthy, not as a timeout
TIMEOUT_SECONDS = 4.0


def settings_class(service: str) -> type[PlatformSettings]:
    """``state-tracker`` -> ``callback_state_tracker.settings.StateTrackerSettings``: the one
    settings class defined in the service's ``settings`` module."""
    module = importlib.import_module(f"callback_{service.replace('-', '_')}.settings")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, PlatformSettings)
        and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LookupError(f"{module.__name__} defines {len(found)} settings classes, not one")
    return found[0]


def http_port(cls: type[PlatformSettings]) -> int:
    """The port ``cls``'s service listens on, read as ``cls`` reads it, without reading (or
    needing) any other setting."""
    base = type(f"{cls.__name__}Base", (BaseSettings,), {"model_config": cls.model_config})
    only_the_port: type[BaseSettings] = create_model(
        f"{cls.__name__}Port", __base__=base, http_port=(int, cls.model_fields["http_port"])
    )
    port: int = only_the_port().model_dump()["http_port"]
    return port


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    path = arguments[0] if arguments else "/healthz"
    try:
        port = http_port(settings_class(os.environ[SERVICE_VARIABLE]))
        url = f"http://127.0.0.1:{port}{path}"
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS):
            pass
    except (ImportError, LookupError, OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return UNHEALTHY
    return HEALTHY


if __name__ == "__main__":
    sys.exit(main())
