"""The deployment files' tests: pinned offline tools (deploy/tools.sh) and the settings model.

The required settings and their names are derived from each service's settings class
(``callback_dev.services.SETTINGS_CLASSES``) at test time,
so a setting added to a service's class is checked against the compose file, the chart and the
docs without touching these tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from callback_dev.services import SETTINGS_CLASSES
from callback_shared.settings import PlatformSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "callback-platform"
PRODUCTION_VALUES = REPO / "deploy" / "helm" / "values-production.yaml"
MANIFESTS_SCRIPT = Path(__file__).with_name("manifests.py")
#: every service's image, the service its SERVICE build argument
DOCKERFILE = REPO / "Dockerfile"

#: the services, as their directories under services/ (admin-api, scheduler, ...)
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))


def settings_class(service: str) -> type[PlatformSettings]:
    """``admin-api`` -> ``AdminApiSettings`` (``callback_admin_api.settings``): one settings
    class per service, in that service's package."""
    cls = SETTINGS_CLASSES.get(service)
    assert cls is not None, f"callback_dev.services has no settings class for services/{service}"
    package = "callback_" + service.replace("-", "_")
    assert cls.__module__ == f"{package}.settings", f"{cls.__name__} is not in {package}"
    assert issubclass(cls, PlatformSettings)
    return cls


def env_names(cls: type[PlatformSettings]) -> set[str]:
    """Every environment variable the class reads (field names upper-cased)."""
    prefix = cls.model_config.get("env_prefix", "")
    return {(prefix + name).upper() for name in cls.model_fields}


def required_env_names(cls: type[PlatformSettings]) -> set[str]:
    """The variables without a default: a service does not start without them."""
    prefix = cls.model_config.get("env_prefix", "")
    return {(prefix + name).upper() for name, f in cls.model_fields.items() if f.is_required()}


def console_script(service: str) -> str:
    """The service's entry point ``callback-<service>``, as its pyproject.toml declares it."""
    project = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    name = f"callback-{service}"
    assert name in project["project"]["scripts"], f"services/{service} has no {name} script"
    return name


@dataclass(frozen=True)
class Tools:
    """The pinned checkers installed by deploy/tools.sh."""

    helm: Path
    compose_check: Path
    python: Path
    hadolint: Path

    def run(
        self, *cmd: str | Path, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kwargs
        )
        if check:
            assert result.returncode == 0, f"{cmd[0]} failed:\n{result.stdout}{result.stderr}"
        return result

    def yaml_documents(self, path: Path) -> list[dict[str, Any]]:
        out = self.run(self.python, MANIFESTS_SCRIPT, "parse", path).stdout
        docs: list[dict[str, Any]] = json.loads(out)
        return docs

    def validate(self, path: Path, versions: list[str]) -> list[dict[str, Any]]:
        out = self.run(self.python, MANIFESTS_SCRIPT, "validate", path, *versions).stdout
        results: list[dict[str, Any]] = json.loads(out)
        return results


@pytest.fixture(scope="session")
def tools() -> Tools:
    root = Path(os.environ.get("DEPLOY_TOOLS_DIR") or REPO / ".cache" / "deploy-tools")
    found = Tools(
        helm=root / "bin" / "helm",
        compose_check=root / "bin" / "compose-check",
        python=root / "venv" / "bin" / "python",
        hadolint=root / "venv" / "bin" / "hadolint",
    )
    missing = [str(p) for p in vars(found).values() if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            "deploy tools missing: " + ", ".join(missing) + "; install them with "
            "`make deploy-tools` (bash deploy/tools.sh: needs go and uv)",
            pytrace=False,
        )
    return found
