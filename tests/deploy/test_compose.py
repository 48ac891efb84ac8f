"""docker-compose.yml, loaded the way `docker compose` loads it (compose-go: the Compose
Specification's schema, interpolation with defaults, merge keys) without a Docker engine: every
service's image or build, its settings against the settings model, healthchecks, start order."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from callback_admin_api.settings import AdminApiSettings
from callback_shared.settings import PlatformSettings

from tests.deploy.conftest import (
    DOCKERFILE,
    REPO,
    SERVICES,
    Tools,
    env_names,
    required_env_names,
    settings_class,
)

COMPOSE_FILE = REPO / "docker-compose.yml"
INFRASTRUCTURE = {"kafka", "mongodb"}
PINNED_TAG = re.compile(r"^[\w./-]+:\d+(\.\d+)+$")


def load(tools: Tools, path: Path, env: dict[str, str] | None = None) -> Any:
    """Resolved project; interpolated with no variable set but ``env`` (defaults apply)."""
    run = tools.run(tools.compose_check, path, env={"PATH": "/usr/bin:/bin", **(env or {})})
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def project(tools: Tools) -> Any:
    return load(tools, COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(project: Any) -> dict[str, Any]:
    return project["services"]  # type: ignore[no-any-return]


def test_the_loader_refuses_what_docker_compose_refuses(tools: Tools, tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("healthcheck:", "healthchek:", 1))
    run = tools.run(tools.compose_check, broken, check=False)
    assert run.returncode == 1
    assert "healthchek" in run.stderr


def test_services_are_the_platform_and_its_infrastructure(services: dict[str, Any]) -> None:
    assert set(services) == {*SERVICES, *INFRASTRUCTURE, "bootstrap"}


def test_infrastructure_images_are_official_and_pinned(services: dict[str, Any]) -> None:
    kafka, mongodb = services["kafka"], services["mongodb"]
    assert kafka["image"].startswith("apache/kafka:")
    assert mongodb["image"].startswith("mongo:")
    for name in INFRASTRUCTURE:
        assert PINNED_TAG.match(services[name]["image"]), services[name]["image"]
        assert "build" not in services[name]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert not any("ZOOKEEPER" in key for key in env)


def test_infrastructure_keeps_its_data_in_named_volumes(
    project: Any, services: dict[str, Any]
) -> None:
    mounts = {
        name: {(v["type"], v["source"], v["target"]) for v in services[name].get("volumes") or []}
        for name in INFRASTRUCTURE
    }
    log_dir = services["kafka"]["environment"]["KAFKA_LOG_DIRS"]
    assert ("volume", "kafka-data", log_dir) in mounts["kafka"]
    assert ("volume", "mongodb-data", "/data/db") in mounts["mongodb"]
    assert {"kafka-data", "mongodb-data"} <= set(project["volumes"])


def image_build(service: str) -> dict[str, Any]:
    """How ``service``'s image is built: the one Dockerfile, the service as its SERVICE build
    argument, the target with the admin console for admin-api."""
    return {
        "context": str(REPO),
        "dockerfile": DOCKERFILE.name,
        "args": {"SERVICE": service},
        "target": "admin-api" if service == "admin-api" else "service",
    }


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_is_built_from_the_one_dockerfile(
    services: dict[str, Any], service: str
) -> None:
    spec = services[service]
    assert spec["build"] == image_build(service)
    assert DOCKERFILE.is_file()
    assert spec["image"] == f"callback-platform/{service}:dev"
    assert "entrypoint" not in spec or spec["entrypoint"] is None  # the image's own


def test_image_names_and_tag_are_configurable(tools: Tools) -> None:
    services = load(
        tools, COMPOSE_FILE, {"CALLBACK_IMAGE_PREFIX": "reg.example/cb", "CALLBACK_TAG": "1.2.3"}
    )["services"]
    for service in SERVICES:
        assert services[service]["image"] == f"reg.example/cb/{service}:1.2.3"


def check_settings(cls: type[PlatformSettings], env: dict[str, str], what: str) -> None:
    unknown = set(env) - env_names(cls)
    assert not unknown, f"{what}: {sorted(unknown)} are not settings of {cls.__name__}"
    missing = required_env_names(cls) - set(env)
    assert not missing, f"{what}: required settings {sorted(missing)} are not set"
    values: dict[str, Any] = {name.lower(): value for name, value in env.items()}
    cls(**values)  # valid values


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_gets_valid_settings_of_its_own(
    services: dict[str, Any], service: str
) -> None:
    cls = settings_class(service)
    env = services[service]["environment"]
    check_settings(cls, env, service)
    assert env["HTTP_HOST"] == "0.0.0.0"
    assert int(env["HTTP_PORT"]) == cls.model_fields["http_port"].default
    kafka_internal = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")[0]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_internal.split("://")[1]
    assert env["MONGODB_URL"] == "mongodb://mongodb:27017"


def test_admin_api_can_verify_tokens(services: dict[str, Any]) -> None:
    env = services["admin-api"]["environment"]
    assert {"JWT_SECRET", "JWT_PUBLIC_KEY"} & set(env), "without a key every API request is refused"


def test_bootstrap_creates_topics_and_indexes_once_infrastructure_is_healthy(
    services: dict[str, Any],
) -> None:
    bootstrap = services["bootstrap"]
    assert bootstrap["entrypoint"] == ["callback-bootstrap"]
    assert bootstrap["build"] in [image_build(s) for s in SERVICES]
    assert bootstrap["restart"] == "no"
    assert bootstrap["healthcheck"] == {"disable": True}
    assert {name: d["condition"] for name, d in bootstrap["depends_on"].items()} == {
        "kafka": "service_healthy",
        "mongodb": "service_healthy",
    }
    check_settings(PlatformSettings, bootstrap["environment"], "bootstrap")
    # the same topics and partitions as the services
    for service in SERVICES:
        env = services[service]["environment"]
        for name in env_names(PlatformSettings) - {"HTTP_PORT"}:
            assert env.get(name) == bootstrap["environment"].get(name), (service, name)


@pytest.mark.parametrize("service", SERVICES)
def test_services_start_after_bootstrap_and_report_readiness(
    services: dict[str, Any], service: str
) -> None:
    spec = services[service]
    assert spec["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    check = spec["healthcheck"]
    # the image's health check module (the service's port from its settings), asking /readyz
    assert check["test"] == ["CMD", "python", "-m", "callback_shared.healthcheck", "/readyz"]
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)
    assert spec["restart"] == "unless-stopped"


def test_infrastructure_has_healthchecks(services: dict[str, Any]) -> None:
    for name in INFRASTRUCTURE:
        check = services[name]["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
        assert {"interval", "timeout", "retries"} <= set(check)
    assert "kafka-broker-api-versions.sh" in services["kafka"]["healthcheck"]["test"][1]
    assert "ping" in services["mongodb"]["healthcheck"]["test"][-1]


@pytest.mark.parametrize("service", [*SERVICES, "bootstrap"])
def test_service_containers_are_locked_down(services: dict[str, Any], service: str) -> None:
    spec = services[service]
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]


def test_admin_api_is_published_on_the_documented_port(services: dict[str, Any]) -> None:
    port = AdminApiSettings.model_fields["http_port"].default
    assert services["admin-api"]["ports"] == [
        {
            "mode": "ingress",
            "host_ip": "127.0.0.1",
            "target": port,
            "published": str(port),
            "protocol": "tcp",
        }
    ]
    published = [s for s in SERVICES if s != "admin-api" and services[s].get("ports")]
    assert not published, "only the admin API is published"
    operations = (REPO / "docs" / "operations.md").read_text()
    assert f"http://127.0.0.1:{port}" in operations
    assert "ADMIN_API_PORT" in operations
