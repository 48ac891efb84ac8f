"""Each rule has one home and a name (ENGINEERING.md, "Shape of the code"): a second copy of the
retention, of an API limit or of a service's port fails here, and so does a state the state
machine refuses a cancel in without a refusal reason; shared/ importing a service, or an image
that would install the development package, fails too. Text checks, no I/O beyond reading
files."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from callback_admin_api import rules
from callback_admin_api.views import REFUSAL_REASONS, BulkReason
from callback_dev.infra import service_ports
from callback_dev.services import SETTINGS_CLASSES
from callback_shared.models import RETENTION
from callback_shared.settings import CancellationReportSettings
from callback_shared.states import CANCELLABLE_STATES, CallbackState

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "shared" / "src" / "callback_shared" / "models.py"
RULES = REPO / "services" / "admin-api" / "src" / "callback_admin_api" / "rules.py"
CHART = REPO / "deploy" / "helm"
CHART_VALUES = CHART / "callback-platform" / "values.yaml"
COMPOSE = REPO / "docker-compose.yml"


def sources() -> list[Path]:
    """The Python of shared/, of every service and of the development package."""
    return sorted(
        [
            *REPO.glob("shared/src/**/*.py"),
            *REPO.glob("services/*/src/**/*.py"),
            *REPO.glob("dev/src/**/*.py"),
        ]
    )


def occurrences(pattern: str, paths: Iterable[Path]) -> dict[str, int]:
    """Where ``pattern`` occurs (path relative to the repository -> how often)."""
    found = {}
    for path in paths:
        count = len(re.findall(pattern, path.read_text()))
        if count:
            found[str(path.relative_to(REPO))] = count
    return found


def home(path: Path) -> str:
    return str(path.relative_to(REPO))


def module_file(cls: type) -> str:
    """The source file (relative to the repository) of the module defining ``cls``."""
    found = [
        path
        for path in sources()
        if path.with_suffix("").parts[-len(cls.__module__.split(".")) :]
        == tuple(cls.__module__.split("."))
    ]
    assert len(found) == 1, cls.__module__
    return home(found[0])


def test_the_retention_is_written_once():
    copies = r"days\s*=\s*14\b|\b14\s*\*\s*86_?400\b|\b1_?209_?600\b"
    assert occurrences(copies, sources()) == {home(MODELS): 1}
    # the report's retention (the exporter's TTL, admin-api's report window) defaults to it
    default = CancellationReportSettings.model_fields["exporter_report_retention_days"].default
    assert default == RETENTION.days


def test_the_api_limits_are_written_once_with_a_name():
    assert set(occurrences(r"\b250\b", sources())) == {home(RULES)}
    named = re.findall(r"^([A-Z_]+) = 250$", RULES.read_text(), re.MULTILINE)
    assert sorted(named) == ["MAX_BULK_ITEMS", "MAX_PAGE_SIZE", "SEARCH_LIMIT"]
    assert all(getattr(rules, name) == 250 for name in named)


def test_every_state_is_cancellable_or_has_a_refusal_reason():
    for state in CallbackState:
        assert (state in CANCELLABLE_STATES) != (state in REFUSAL_REASONS), state
    # no reason left over from a state that has since become cancellable
    states = {state.value for state in CallbackState}
    named_after_a_state = {reason for reason in BulkReason if reason.value in states}
    assert named_after_a_state == set(REFUSAL_REASONS.values())


def test_each_service_port_is_written_once_per_artifact():
    ports = service_ports()
    assert len(set(ports.values())) == len(ports), "two services share a port"
    dockerfiles = sorted(REPO.glob("services/*/Dockerfile"))
    chart = sorted(path for path in CHART.rglob("*") if path.is_file())
    # admin-api's is also the default of ADMIN_API_PORT, the host's port
    compose = COMPOSE.read_text().replace(f"${{ADMIN_API_PORT:-{ports['admin-api']}}}", "")
    for service, port in ports.items():
        literal = rf"(?<!\d){port}(?!\d)"
        # Python reads the settings classes' defaults (admin-api's: PlatformSettings's)
        defined_in = next(
            cls
            for cls in SETTINGS_CLASSES[service].__mro__
            if "http_port" in vars(cls).get("__annotations__", {})
        )
        assert occurrences(literal, sources()) == {module_file(defined_in): 1}, service
        # an image: its ENV HTTP_PORT, which EXPOSE and HEALTHCHECK read
        assert occurrences(literal, dockerfiles) == {f"services/{service}/Dockerfile": 1}
        # the chart: services.<name>.port; the templates and values-production.yaml read it
        assert occurrences(literal, chart) == {home(CHART_VALUES): 1}, service
        # compose: the service's HTTP_PORT (an anchor where another key needs it)
        assert len(re.findall(literal, compose)) == 1, service
    assert not occurrences(r"(?<!\d)808\d(?!\d)", [REPO / "Makefile"])


def test_the_readme_shows_each_service_on_its_port():
    shown = re.findall(r"^\| ([a-z-]+) \| (\d+) \|", (REPO / "README.md").read_text(), re.M)
    ports = service_ports()
    for service, port in shown:
        assert ports.get(service) == int(port), service


# --- shape of the code: shared/ is contracts, services stand apart, the dev package stays out ----


def imported_packages(package: Path) -> set[str]:
    """The top-level names of every ``callback_*`` package the Python under ``package`` imports."""
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found.update(n.split(".")[0] for n in names if n.startswith("callback_"))
    return found


def test_shared_imports_no_service_and_a_service_no_other():
    assert imported_packages(REPO / "shared" / "src") == {"callback_shared"}
    for source in sorted(REPO.glob("services/*/src/callback_*")):
        assert imported_packages(source) <= {"callback_shared", source.name}, source.name


def test_no_service_image_installs_the_development_package():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    dependencies = {
        package["name"]: {d["name"] for d in package.get("dependencies", [])}
        for package in lock["package"]
    }
    for dockerfile in sorted(REPO.glob("services/*/Dockerfile")):
        package = f"callback-{dockerfile.parent.name}"
        text = dockerfile.read_text()
        syncs = re.findall(r"uv sync ([^\n]*)", text)
        assert syncs, dockerfile
        for options in syncs:
            # the service's own dependencies only: no development group, no other member
            assert "--no-dev" in options.split(), (dockerfile, options)
            assert f"--package {package}" in options, (dockerfile, options)
        assert "dev/src" not in text, f"{dockerfile}: copies the development package's code"
        # what --package installs: the service's dependency closure in the lock
        closure, todo = set(), [package]
        while todo:
            name = todo.pop()
            if name not in closure:
                closure.add(name)
                todo.extend(dependencies.get(name, ()))
        assert "callback-dev" not in closure, package
