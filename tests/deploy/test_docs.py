"""The operations docs follow the code: the generated references (settings, metrics, the AsyncAPI
document of the topics) match it, every setting of every service is documented with a meaning,
and so are the topics and the compose file's variables."""

import re
from pathlib import Path

import pytest
from callback_shared.settings import PlatformSettings

from tests.deploy import reference
from tests.deploy.conftest import REPO, SERVICES, env_names, settings_class

CONFIGURATION = (REPO / "docs" / "configuration.md").read_text()
OPERATIONS = (REPO / "docs" / "operations.md").read_text()


@pytest.mark.parametrize("path", list(reference.BLOCKS), ids=lambda p: p.name)
def test_generated_reference_matches_the_code(path: Path) -> None:
    tag, generate = reference.BLOCKS[path]
    name = f"{path.relative_to(REPO)}" + (f" ({tag})" if tag else "")
    assert reference.current_block(path, tag) == generate(), (
        f"{name} is missing or stale: run `make docs`"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_of_every_service_is_documented(service: str) -> None:
    undocumented = {
        name for name in env_names(settings_class(service)) if f"`{name}`" not in CONFIGURATION
    }
    assert not undocumented, f"{service}: {sorted(undocumented)} missing from docs/configuration.md"


def test_every_setting_has_a_meaning() -> None:
    assert reference.settings_without_meaning() == [], (
        "give these settings a Field(description=...) in their settings class"
    )


def test_every_topic_is_documented_with_its_default_name() -> None:
    for name, field in PlatformSettings.model_fields.items():
        if name.startswith("topic_") and isinstance(field.default, str):
            assert f"`{name.upper()}`" in OPERATIONS and f"`{field.default}`" in OPERATIONS, name


def test_every_compose_variable_is_documented() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    variables = set(re.findall(r"\$\{(\w+)", compose))
    assert variables, "docker-compose.yml interpolates no variable?"
    undocumented = {v for v in variables if f"`{v}`" not in CONFIGURATION}
    assert not undocumented, f"docs/configuration.md lacks {sorted(undocumented)}"


def test_readme_points_at_the_docs_and_relative_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    deploying = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    assert "docs/operations.md" in deploying and "docs/configuration.md" in deploying
    for page in [REPO / "README.md", REPO / "deploy" / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links {target}"
