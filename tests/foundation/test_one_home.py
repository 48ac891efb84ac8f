"""Each rule has one home and a name (ENGINEERING.md, "Shape of the code"): a second copy of the
retention, of an API limit or of a service's port fails here, and so does a state the state
machine refuses a cancel in without a refusal reason. Text checks, no I/O beyond reading files."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from callback_admin_api import rules
from callback_admin_api.views import REFUSAL_REASONS, BulkReason
from callback_shared.infra import service_ports
from callback_shared.models import RETENTION
from callback_shared.settings import CancellationReportSettings
from callback_shared.states import CANCELLABLE_STATES, CallbackState

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "shared" / "src" / "callback_shared" / "models.py"
SETTINGS = REPO / "shared" / "src" / "callback_shared" / "settings.py"
RULES = REPO / "services" / "admin-api" / "src" / "callback_admin_api" / "rules.py"
CHART = REPO / "deploy" / "helm"
CHART_VALUES = CHART / "callback-platform" / "values.yaml"
COMPOSE = REPO / "docker-compose.yml"


def sources() -> list[Path]:
    """The Python of shared/ and of every service."""
    return sorted([*REPO.glob("shared/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")])


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
        # Python reads the settings classes' defaults
        assert occurrences(literal, sources()) == {home(SETTINGS): 1}, service
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
