"""Each rule has one home and a name (ENGINEERING.md, "Shape of the code"): a second copy of the
retention, of an API limit or of a service's port fails here, and so does a field of the callback
record spelt as a literal outside its home (``callback_shared/record.py``), and a state the state
machine refuses a cancel in without a refusal reason; shared/ importing a service, or an image
that would install the development package, fails too. Text checks, no I/O beyond reading
files."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from collections.abc import Iterable
from pathlib import Path

from callback_admin_api import rules
from callback_admin_api.views import REFUSAL_REASONS, BulkReason
from callback_dev.infra import service_ports
from callback_dev.services import SETTINGS_CLASSES
from callback_shared.models import RETENTION
from callback_shared.record import (
    CallbackDocument,
    CancelRequestDocument,
    CancelRequestF,
    F,
    OutboxEntryDocument,
    OutboxF,
    TimelineEntryDocument,
    TimelineF,
)
from callback_shared.settings import CancellationReportSettings
from callback_shared.states import CANCELLABLE_STATES, CallbackState

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "shared" / "src" / "callback_shared" / "models.py"
RULES = REPO / "services" / "admin-api" / "src" / "callback_admin_api" / "rules.py"
CHART = REPO / "deploy" / "helm"
CHART_VALUES = CHART / "callback-platform" / "values.yaml"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"


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


def test_the_retention_is_written_once() -> None:
    copies = r"days\s*=\s*14\b|\b14\s*\*\s*86_?400\b|\b1_?209_?600\b"
    assert occurrences(copies, sources()) == {home(MODELS): 1}
    # the report's retention (the exporter's TTL, admin-api's report window) defaults to it
    default = CancellationReportSettings.model_fields["exporter_report_retention_days"].default
    assert default == RETENTION.days


def test_the_api_limits_are_written_once_with_a_name() -> None:
    assert set(occurrences(r"\b250\b", sources())) == {home(RULES)}
    named = re.findall(r"^([A-Z_]+) = 250$", RULES.read_text(), re.MULTILINE)
    assert sorted(named) == ["MAX_BULK_ITEMS", "MAX_PAGE_SIZE", "SEARCH_LIMIT"]
    assert all(getattr(rules, name) == 250 for name in named)


def test_every_state_is_cancellable_or_has_a_refusal_reason() -> None:
    for state in CallbackState:
        assert (state in CANCELLABLE_STATES) != (state in REFUSAL_REASONS), state
    # no reason left over from a state that has since become cancellable
    states = {state.value for state in CallbackState}
    named_after_a_state = {reason for reason in BulkReason if reason.value in states}
    assert named_after_a_state == set(REFUSAL_REASONS.values())


def test_each_service_port_is_written_once_per_artifact() -> None:
    ports = service_ports()
    assert len(set(ports.values())) == len(ports), "two services share a port"
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
        # the images: none (each service listens on its settings' default, which the health
        # check reads through callback_shared.healthcheck)
        assert not occurrences(literal, [DOCKERFILE]), service
        # the chart: services.<name>.port; the templates and values-production.yaml read it
        assert occurrences(literal, chart) == {home(CHART_VALUES): 1}, service
        # compose: the service's HTTP_PORT (an anchor where another key needs it)
        assert len(re.findall(literal, compose)) == 1, service
    assert not occurrences(r"(?<!\d)808\d(?!\d)", [REPO / "Makefile"])


def test_the_readme_shows_each_service_on_its_port() -> None:
    shown = re.findall(r"^\| ([a-z-]+) \| (\d+) \|", (REPO / "README.md").read_text(), re.M)
    ports = service_ports()
    for service, port in shown:
        assert ports.get(service) == int(port), service


# --- shape of the code: shared/ is contracts, services stand apart, the dev package stays out ----


def imported_packages(package: Path) -> set[str]:
    """The top-level names of every ``callback_*`` package the Python under ``package`` imports."""
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found.update(n.split(".")[0] for n in names if n.startswith("callback_"))
    return found


def test_shared_imports_no_service_and_a_service_no_other() -> None:
    assert imported_packages(REPO / "shared" / "src") == {"callback_shared"}
    for source in sorted(REPO.glob("services/*/src/callback_*")):
        assert imported_packages(source) <= {"callback_shared", source.name}, source.name


def test_no_service_image_installs_the_development_package() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    dependencies = {
        package["name"]: {d["name"] for d in package.get("dependencies", [])}
        for package in lock["package"]
    }
    # the one Dockerfile, continuation lines joined, as built for each service (SERVICE)
    template = DOCKERFILE.read_text().replace("\\\n", " ")
    assert "dev/src" not in template, "the Dockerfile copies the development package's code"
    for service in sorted(p.parent.name for p in REPO.glob("services/*/pyproject.toml")):
        package = f"callback-{service}"
        text = re.sub(r"\$\{SERVICE(:\?[^}]*)?\}", service, template)
        syncs = [shlex.split(options) for options in re.findall(r"uv sync ([^\n]*)", text)]
        assert syncs, service
        for options in syncs:
            # the service's own dependencies only: no development group, no other member
            assert "--no-dev" in options, (service, options)
            assert options[options.index("--package") + 1] == package, (service, options)
        # what --package installs: the service's dependency closure in the lock
        closure, todo = set(), [package]
        while todo:
            name = todo.pop()
            if name not in closure:
                closure.add(name)
                todo.extend(dependencies.get(name, ()))
        assert "callback-dev" not in closure, package


# --- the callback record's fields: declared once, named by constants --------------------------

RECORD = REPO / "shared" / "src" / "callback_shared" / "record.py"


def keys(shape: type) -> set[str]:
    return set(shape.__required_keys__ | shape.__optional_keys__)  # type: ignore[attr-defined]


def constants(namespace: type) -> dict[str, str]:
    return {name: value for name, value in vars(namespace).items() if name.isupper()}


def test_the_field_constants_are_the_declared_fields() -> None:
    for shape, namespace in [
        (CallbackDocument, F),
        (TimelineEntryDocument, TimelineF),
        (CancelRequestDocument, CancelRequestF),
        (OutboxEntryDocument, OutboxF),
    ]:
        named = constants(namespace)
        assert sorted(named.values()) == sorted(keys(shape)), namespace.__name__
        # one constant per field, named after it
        assert all(name == value.lstrip("_").upper() for name, value in named.items())


#: Where a callback field's name may be written as a literal: in another document that has a
#: field of that name (the bulk cancel jobs, slots, request counters, the report's entries), or
#: with another meaning. Per file: name -> occurrences.
FIELD_NAMES_WITH_ANOTHER_MEANING: dict[str, dict[str, int]] = {
    # the report's TTL index
    "shared/src/callback_shared/mongo.py": {"expire_at": 1},
    # the slots', counters' and bulk cancel jobs' indexes
    "services/admin-api/src/callback_admin_api/collections.py": {
        "service_name": 1, "expire_at": 4, "state": 1, "updated_at": 1,
    },
    # bulk cancel jobs, slots, request counters, open counts
    "services/admin-api/src/callback_admin_api/repository.py": {
        "state": 2, "updated_at": 2, "service_name": 2, "expire_at": 4,
    },
    # bulk cancel jobs
    "services/admin-api/src/callback_admin_api/bulk.py": {
        "state": 4, "updated_at": 5, "expire_at": 1,
    },
    # the report's entries
    "services/admin-api/src/callback_admin_api/report.py": {
        "service_name": 3, "customer_number": 2, "desired_time": 2, "expire_at": 2,
    },
    "services/exporter/src/callback_exporter/report.py": {
        "service_name": 1, "customer_number": 1, "desired_time": 1, "expire_at": 1,
    },
    # the create request's fields (InvalidField)
    "services/admin-api/src/callback_admin_api/commands.py": {
        "customer_number": 1, "desired_time": 6, "type": 1,
    },
    # the search box's columns
    "services/admin-api/src/callback_admin_api/listing.py": {"service_name": 1, "state": 1},
    # the lifecycle event's fields; the stream's JSON schema
    "services/admin-api/src/callback_admin_api/live.py": {
        "service_name": 1, "state": 1, "result": 1, "desired_time": 1, "type": 4,
    },
    # ASGI messages, problem details, a validation error's type
    "services/admin-api/src/callback_admin_api/limits.py": {"type": 7},
    "services/admin-api/src/callback_admin_api/problems.py": {"type": 1},
    # a routing event's diagnostic data
    "services/routing-sim/src/callback_routing_sim/simulation.py": {"priority": 1},
}  # fmt: skip


def field_literals(path: Path, fields: set[str]) -> dict[str, int]:
    """The string literals of ``path`` naming one of ``fields`` (``state``, ``$state``,
    ``cancel_request.status``, the start of ``f"diagnostic_data.{key}"``), docstrings aside."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = re.fullmatch(r"\$?([a-z_]+)(\..*)?", node.value)
            if named and named[1] in fields and id(node) not in docstrings:
                found[named[1]] = found.get(named[1], 0) + 1
    return found


def test_the_callback_fields_are_named_by_their_constants() -> None:
    fields = keys(CallbackDocument) - {F.ID}  # every collection's key
    found = {
        home(path): named
        for path in sorted([*REPO.glob("shared/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")])
        if path != RECORD and (named := field_literals(path, fields))
    }
    assert found == FIELD_NAMES_WITH_ANOTHER_MEANING
