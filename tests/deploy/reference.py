"""The generated parts of the operations docs, from the code itself:

- docs/configuration.md: every setting of every service (each service's settings class, e.g.
  ``callback_scheduler.settings``; the common base in ``callback_shared.settings``), with
  its default, type and meaning;
- docs/operations.md: every Prometheus metric the packages define, with its type and labels;
- docs/asyncapi.json (the whole file): the AsyncAPI 3.0 document of the Kafka topics
  (``callback_dev.asyncapi``).

``make docs`` (``python -m tests.deploy.reference --write``) rewrites the blocks between the
``<!-- BEGIN GENERATED ... -->`` / ``<!-- END GENERATED ... -->`` markers, and the wholly generated
files; tests/deploy/test_docs.py fails while a block or file differs from what the code says (or
is missing).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import annotated_types
from callback_dev.asyncapi import asyncapi_document
from callback_dev.services import SETTINGS_CLASSES
from callback_shared.settings import PlatformSettings
from prometheus_client.metrics import MetricWrapperBase
from pydantic.fields import FieldInfo

REPO = Path(__file__).resolve().parents[2]
CONFIGURATION = REPO / "docs" / "configuration.md"
OPERATIONS = REPO / "docs" / "operations.md"
ASYNCAPI = REPO / "docs" / "asyncapi.json"
CHART = REPO / "deploy" / "helm" / "callback-platform" / "Chart.yaml"

#: meanings of settings whose field has no description
MEANINGS = {
    "log_level": "Least severe log level written.",
}


# --- settings ---------------------------------------------------------------------------------


def service_classes() -> list[tuple[str, type[PlatformSettings]]]:
    """(service directory name, settings class) of every service, in services/ order."""
    found = []
    for directory in sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml")):
        found.append((directory, SETTINGS_CLASSES[directory]))
    return found


def meaning(cls: type[PlatformSettings], name: str) -> str | None:
    """The field's description, else the nearest base class's, else :data:`MEANINGS`."""
    for klass in cls.__mro__:
        fields: dict[str, FieldInfo] = getattr(klass, "model_fields", {})
        if name in fields and fields[name].description:
            return fields[name].description
    return MEANINGS.get(name)


BOUNDS = [
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
]


def type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        return " or ".join(type_name(a) for a in members) + (", optional" if optional else "")
    name = getattr(annotation, "__name__", str(annotation))
    return "secret str" if name == "SecretStr" else name


def type_of(field: FieldInfo) -> str:
    text = type_name(field.annotation)
    bounds = []
    for constraint in field.metadata:
        for kind, attribute, symbol in BOUNDS:
            if isinstance(constraint, kind):
                bounds.append(f"{symbol} {getattr(constraint, attribute)}")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def default_of(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"`{value}`"


def row(cls: type[PlatformSettings], name: str) -> str:
    field = cls.model_fields[name]
    text = (meaning(cls, name) or "").replace("|", "\\|").replace("\n", " ")
    return f"| `{name.upper()}` | {default_of(field)} | {type_of(field)} | {text} |"


HEADER = "| variable | default | type | meaning |\n|---|---|---|---|"


def configuration_reference() -> str:
    base = PlatformSettings.model_fields
    parts = ["### Every service (`PlatformSettings`)", "", HEADER]
    parts += [row(PlatformSettings, name) for name in base]
    for service, cls in service_classes():
        own = [
            name
            for name, field in cls.model_fields.items()
            if name not in base or field.get_default() != base[name].get_default()
        ]
        parts += ["", f"### {service} (`{cls.__name__}`)", ""]
        parts += (
            [HEADER, *(row(cls, name) for name in own)] if own else ["Only the settings above."]
        )
    return "\n".join(parts)


def settings_without_meaning() -> list[str]:
    classes: list[type[PlatformSettings]] = [
        PlatformSettings,
        *(cls for _, cls in service_classes()),
    ]
    return sorted(
        {name.upper() for cls in classes for name in cls.model_fields if not meaning(cls, name)}
    )


# --- metrics ----------------------------------------------------------------------------------


def _modules(package: str) -> Iterator[types.ModuleType]:
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        yield importlib.import_module(info.name)


def metrics() -> list[tuple[str, str, str, str, str]]:
    """(exposed name, type, labels, help, where) of every metric the packages define."""
    packages = [("callback_shared", "every service")] + [
        ("callback_" + service.replace("-", "_"), service) for service, _ in service_classes()
    ]
    seen: set[int] = set()
    found = []
    for package, where in packages:
        for module in _modules(package):
            for value in vars(module).values():
                if not isinstance(value, MetricWrapperBase) or id(value) in seen:
                    continue
                seen.add(id(value))
                (described,) = value.describe()
                kind = described.type
                name = described.name + ("_total" if kind == "counter" else "")
                labels = ", ".join(f"`{label}`" for label in value._labelnames)
                found.append((name, kind, labels, described.documentation, where))
    return sorted(found, key=lambda m: (m[4] != "every service", m[4], m[0]))


def metrics_reference() -> str:
    lines = ["| metric | type | labels | meaning | exported by |", "|---|---|---|---|---|"]
    for name, kind, labels, documentation, where in metrics():
        lines.append(f"| `{name}` | {kind} | {labels or '—'} | {documentation} | {where} |")
    return "\n".join(lines)


# --- AsyncAPI ---------------------------------------------------------------------------------


def release_version() -> str:
    """The chart's ``appVersion``: what a release is (the images' default tag,
    ``deploy/helm/callback-platform/templates/_helpers.tpl``), so the version of the topics'
    document."""
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?\s*$', CHART.read_text(), re.MULTILINE)
    assert match, f"{CHART.relative_to(REPO)} has no appVersion"
    return match.group(1)


def asyncapi() -> dict[str, Any]:
    return asyncapi_document(version=release_version())


def asyncapi_json() -> str:
    return json.dumps(asyncapi(), indent=2, ensure_ascii=False) + "\n"


# --- the blocks -------------------------------------------------------------------------------

#: path -> (tag of its generated block, generator); tag ``None``: the whole file is generated
BLOCKS: dict[Path, tuple[str | None, Callable[[], str]]] = {
    CONFIGURATION: ("settings", configuration_reference),
    OPERATIONS: ("metrics", metrics_reference),
    ASYNCAPI: (None, asyncapi_json),
}


def block_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN GENERATED {tag}[^>]*-->\n)(.*?)(<!-- END GENERATED {tag} -->)", re.DOTALL
    )


def current_block(path: Path, tag: str | None) -> str | None:
    """The generated block as it is now (the whole file for tag ``None``), None if missing."""
    if tag is None:
        return path.read_text(encoding="utf-8") if path.exists() else None
    match = block_pattern(tag).search(path.read_text())
    return match.group(2).removesuffix("\n") if match else None


def write_block(path: Path, tag: str | None, content: str) -> None:
    if tag is None:
        path.write_text(content, encoding="utf-8")
        return
    text = path.read_text()
    pattern = block_pattern(tag)
    assert pattern.search(text), f"{path}: no GENERATED {tag} markers"
    path.write_text(pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(3), text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    args = parser.parse_args(argv)
    stale = []
    for path, (tag, generate) in BLOCKS.items():
        content = generate()
        if current_block(path, tag) != content:
            name = str(path.relative_to(REPO)) + (f" ({tag})" if tag else "")
            if args.write:
                write_block(path, tag, content)
                print(f"updated {name}")
            else:
                stale.append(name)
    if stale:
        print("stale: " + ", ".join(stale) + "; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
