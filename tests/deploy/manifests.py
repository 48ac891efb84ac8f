"""Runs in the deploy-tools venv (deploy/tools.sh), not the project's: parses YAML manifests and
validates each object against the Kubernetes OpenAPI JSON schemas that kubernetes-validate
bundles (offline). Prints JSON on stdout.

    python manifests.py parse FILE                  -> [object, ...]
    python manifests.py validate FILE VERSION...    -> [{kind, name, version, status, error}, ...]

status: "valid", "invalid" (with the schema error), or "no-schema" (a kind the Kubernetes API
does not define, such as a CRD's ServiceMonitor). Validation is strict: an unknown field is an
error.
"""

import json
import sys
from typing import Any

import yaml
from kubernetes_validate import utils


def load(path: str) -> list[Any]:
    with open(path) as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def validate(doc: dict[str, Any], version: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "kind": doc.get("kind"),
        "name": doc.get("metadata", {}).get("name"),
        "version": version,
        "status": "valid",
        "error": None,
    }
    try:
        utils.validate(doc, version, strict=True)
    except utils.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        result.update(status="invalid", error=f"{path}: {exc.message}")
    except utils.SchemaNotFoundError as exc:
        result.update(status="no-schema", error=exc.message)
    return result


def main(argv: list[str]) -> None:
    command, path, *versions = argv
    docs = load(path)
    if command == "parse":
        out = docs
    elif command == "validate":
        out = [validate(doc, version) for version in versions for doc in docs]
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
